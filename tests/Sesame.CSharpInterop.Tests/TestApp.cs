using System.Collections.Concurrent;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Sesame.CSharpInterop.Tests;

/// <summary>
/// A real memory store wrapped to count what it is asked and keep the tree patches it commits. The sessions
/// really live in the memory store underneath; nothing is faked. (A store written in C#: a SessionStore subclass.)
/// </summary>
public sealed class CountingStore : SessionStore, IDisposable
{
    private readonly MemoryStore inner = new();
    private readonly ConcurrentQueue<Patch> patches = new();
    private int loads;
    private int commits;

    public int Loads => Volatile.Read(ref loads);

    public int Commits => Volatile.Read(ref commits);

    /// <summary>Every committed tree patch, in commit order.</summary>
    public IReadOnlyList<Patch> Patches => patches.ToArray();

    /// <summary>The updates of the last commit, as text ("set foo.bar.baz = 2").</summary>
    public IReadOnlyList<string> LastCommit => Patches[^1].Updates.Select(update => update.ToString()).ToArray();

    public override Task<StoredSession> LoadAsync(string id, TimeSpan idleTimeout, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref loads);
        return inner.LoadAsync(id, idleTimeout, cancellationToken);
    }

    /// <summary>How long each commit waits before it reaches the store: concurrent requests then load before others commit.</summary>
    public TimeSpan CommitDelay { get; set; }

    public override async Task<CommitResult> CommitAsync(string id, SessionChange change, CommitOptions options, CancellationToken cancellationToken)
    {
        if (CommitDelay > TimeSpan.Zero)
        {
            await Task.Delay(CommitDelay, cancellationToken);
        }

        Interlocked.Increment(ref commits);
        var result = await inner.CommitAsync(id, change, options, cancellationToken);
        patches.Enqueue(change.Data);
        return result;
    }

    public override Task<CommitResult> MoveAsync(string fromId, string toId, SessionChange change, CommitOptions options, CancellationToken cancellationToken) =>
        inner.MoveAsync(fromId, toId, change, options, cancellationToken);

    public override Task<bool> DeleteAsync(string id, CancellationToken cancellationToken) =>
        inner.DeleteAsync(id, cancellationToken);

    public override Task<SessionPage> ListAsync(SessionQuery query, CancellationToken cancellationToken) =>
        inner.ListAsync(query, cancellationToken);

    public void Dispose() => ((IDisposable)inner).Dispose();
}

/// <summary>Adds the cookies of one jar to requests and keeps the ones responses set, as a browser does (for TestServer's handler).</summary>
internal sealed class CookieJarHandler(CookieContainer jar) : DelegatingHandler
{
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var uri = request.RequestUri!;
        var header = jar.GetCookieHeader(uri);
        if (header.Length > 0)
        {
            request.Headers.Add("Cookie", header);
        }

        var response = await base.SendAsync(request, cancellationToken);
        if (response.Headers.TryGetValues("Set-Cookie", out var values))
        {
            foreach (var value in values)
            {
                jar.SetCookies(uri, value);
            }
        }

        return response;
    }
}

/// <summary>A minimal-API app with Sesame (AddSesame + UseSesame), in memory (TestServer) or on Kestrel on loopback.</summary>
public sealed class TestApp : IAsyncDisposable
{
    private readonly WebApplication app;

    private TestApp(WebApplication app) => this.app = app;

    public IServiceProvider Services => app.Services;

    public static async Task<TestApp> StartAsync(
        Action<WebApplication> endpoints,
        SessionStore? store = null,
        Action<SesameOptions>? configure = null,
        bool kestrel = false,
        bool useSesame = true,
        Action<IServiceCollection>? services = null,
        Action<SesameBuilder>? configureStore = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        if (kestrel)
        {
            builder.WebHost.UseKestrel().UseUrls("http://127.0.0.1:0");
        }
        else
        {
            builder.WebHost.UseTestServer();
        }

        var sesame = builder.Services.AddSesame(options => configure?.Invoke(options));
        if (store is not null)
        {
            sesame.AddStore(store);
        }

        configureStore?.Invoke(sesame);
        services?.Invoke(builder.Services);
        var app = builder.Build();
        if (useSesame)
        {
            app.UseSesame();
        }

        endpoints(app);
        await app.StartAsync();
        return new TestApp(app);
    }

    /// <summary>A client with a cookie jar (its own unless given one): one browser.</summary>
    public HttpClient NewBrowser(CookieContainer? jar = null)
    {
        jar ??= new CookieContainer();
        if (app.Services.GetService<Microsoft.AspNetCore.Hosting.Server.IServer>() is TestServer server)
        {
            return new HttpClient(new CookieJarHandler(jar) { InnerHandler = server.CreateHandler() }) { BaseAddress = server.BaseAddress };
        }

        return new HttpClient(new HttpClientHandler { CookieContainer = jar, UseCookies = true })
        {
            BaseAddress = new Uri(app.Urls.First()),
        };
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }
}

internal static class HttpClientExtensions
{
    /// <summary>The body of a request that must succeed.</summary>
    public static async Task<string> SendTextAsync(this HttpClient client, HttpMethod method, string url)
    {
        using var response = await client.SendAsync(new HttpRequestMessage(method, url));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{method} {url} answered {(int)response.StatusCode}: {body}");
        return body;
    }

    public static Task<string> GetTextAsync(this HttpClient client, string url) => client.SendTextAsync(HttpMethod.Get, url);
}
