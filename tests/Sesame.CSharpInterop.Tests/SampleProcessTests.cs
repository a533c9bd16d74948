using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Sesame.CSharpInterop.Tests;

/// <summary>The C# sample as a real process: what an operator sees when it cannot start.</summary>
public sealed class SampleProcessTests
{
    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static Process Start(string args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "Sesame.Samples.CSharp.dll");
        var info = new ProcessStartInfo("dotnet", $"\"{dll}\" {args}")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        return Process.Start(info)!;
    }

    [Fact]
    public async Task A_second_sample_on_a_file_the_first_holds_says_the_file_is_in_use_and_exits_with_code_3()
    {
        var directory = Directory.CreateTempSubdirectory("sesame-csharp-sample-");
        var file = Path.Combine(directory.FullName, "sessions.db");
        using var first = Start($"--store file:{file} --urls http://127.0.0.1:{FreePort()}");
        try
        {
            // The first owns the file once it says it is listening.
            using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
            {
                string? line;
                do
                {
                    line = await first.StandardOutput.ReadLineAsync(timeout.Token);
                } while (line is not null && !line.Contains("listening"));
                Assert.NotNull(line);
            }

            using var second = Start($"--store file:{file} --urls http://127.0.0.1:{FreePort()}");
            var errors = second.StandardError.ReadToEndAsync();
            await second.StandardOutput.ReadToEndAsync();
            using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
            {
                await second.WaitForExitAsync(timeout.Token);
            }

            Assert.Equal(3, second.ExitCode);
            Assert.Contains("is in use", await errors);
            Assert.DoesNotContain("Unhandled exception", await errors);
        }
        finally
        {
            if (!first.HasExited)
            {
                first.Kill(entireProcessTree: true);
                await first.WaitForExitAsync();
            }
            directory.Delete(recursive: true);
        }
    }
}
