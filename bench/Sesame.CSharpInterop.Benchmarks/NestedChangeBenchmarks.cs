using BenchmarkDotNet.Attributes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Sesame.CSharpInterop.Benchmarks;

/// <summary>
/// One nested change, node-sesame's <c>foo.bar.baz *= 2</c>, on a session loaded from the store, written
/// four ways: the dynamic facade, the typed facade, the F# <c>SessionHandle</c> directly (the baseline)
/// and the F# <c>Session</c> module functions as an F# handler would call them.
/// </summary>
/// <remarks>
/// The session is a real one: a TestHost request seeds it (one commit to the memory store, a protected
/// cookie), and a second request with that cookie loads it and stays open until the benchmark ends, so
/// every change below goes to the live handle of an open request. Each invocation makes
/// <see cref="Changes"/> changes, then resets <c>baz</c> to 1 and commits, which keeps the update log and
/// the number bounded; that shared cost is spread over the changes and is the same for every method.
/// </remarks>
[MemoryDiagnoser]
public class NestedChangeBenchmarks
{
    private const int Changes = 32;
    private const string Baz = "foo.bar.baz";

    private static readonly SessionPath BazPath = SessionPathModule.parse(Baz);
    private static readonly Json One = JsonModule.int64(1);

    private readonly TaskCompletionSource<SesameSession> opened = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private WebApplication app = null!;
    private Task<HttpResponseMessage> holding = null!;
    private SesameSession session = null!;
    private SessionHandle handle = null!;
    private dynamic proxy = null!;

    [GlobalSetup]
    public void Setup()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseTestServer();
        builder.Services.AddSesame().AddMemoryStore();
        app = builder.Build();
        app.UseSesame();
        app.MapPost("/seed", (SesameSession s) =>
        {
            s.Set("foo", new { bar = new { baz = 1 } });
            return "seeded";
        });
        app.MapGet("/hold", async (SesameSession s) =>
        {
            opened.SetResult(s);
            await release.Task;
            return "released";
        });
        app.StartAsync().GetAwaiter().GetResult();

        var client = app.GetTestClient();
        using var seeded = client.PostAsync("/seed", null).GetAwaiter().GetResult();
        seeded.EnsureSuccessStatusCode();
        var cookie = seeded.Headers.GetValues("Set-Cookie").Single().Split(';')[0];
        var hold = new HttpRequestMessage(HttpMethod.Get, "/hold");
        hold.Headers.Add("Cookie", cookie);
        holding = client.SendAsync(hold);

        session = opened.Task.GetAwaiter().GetResult();
        handle = session.Handle;
        proxy = session.Dynamic;
        if (session.IsNew || session.Get<long>(Baz) != 1)
        {
            throw new InvalidOperationException("The benchmark session was not loaded from the store.");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        release.SetResult();
        using var response = holding.GetAwaiter().GetResult();
        response.EnsureSuccessStatusCode();
        app.StopAsync().GetAwaiter().GetResult();
        ((IDisposable)app).Dispose();
    }

    [Benchmark(Description = "dynamic: s.foo.bar.baz *= 2", OperationsPerInvoke = Changes)]
    public void Dynamic()
    {
        var s = proxy;
        for (var i = 0; i < Changes; i++)
        {
            s.foo.bar.baz *= 2;
        }

        Reset();
    }

    [Benchmark(Description = "typed: Set(path, Get<long>(path) * 2)", OperationsPerInvoke = Changes)]
    public void Typed()
    {
        for (var i = 0; i < Changes; i++)
        {
            session.Set(Baz, session.Get<long>(Baz) * 2);
        }

        Reset();
    }

    [Benchmark(Baseline = true, Description = "F# SessionHandle: TryFind + Set", OperationsPerInvoke = Changes)]
    public void FSharpHandle()
    {
        for (var i = 0; i < Changes; i++)
        {
            ((Json.Number)handle.TryFind(BazPath).Value).Item.TryGetInt64(out var baz);
            handle.Set(BazPath, JsonModule.int64(baz * 2));
        }

        Reset();
    }

    [Benchmark(Description = "F# Session module: tryGet + set", OperationsPerInvoke = Changes)]
    public void FSharpModule()
    {
        for (var i = 0; i < Changes; i++)
        {
            SessionModule.set(Baz, SessionModule.tryGet<long>(Baz, handle).Value * 2, handle);
        }

        Reset();
    }

    /// <summary>The shared part alone: the reset and commit every invocation ends with, per change.</summary>
    [Benchmark(Description = "(shared reset + commit alone)", OperationsPerInvoke = Changes)]
    public void ResetOnly() => Reset();

    private void Reset()
    {
        handle.Set(BazPath, One);
        handle.CommitAsync(CancellationToken.None).GetAwaiter().GetResult();
    }
}
