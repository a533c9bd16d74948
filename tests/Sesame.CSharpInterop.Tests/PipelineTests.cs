using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Sesame.Samples.Giraffe;

namespace Sesame.CSharpInterop.Tests;

/// <summary>Setting Sesame up from C#, choosing stores, and sharing one session with F# handlers.</summary>
public sealed class PipelineTests
{
    private static async Task<string> CountAsync(HttpContext context)
    {
        var session = await context.GetSesameAsync();
        return $"{session.Increment("times")} times!";
    }

    [Fact]
    public async Task F_sharp_handlers_and_C_sharp_endpoints_read_and_write_one_session()
    {
        await using var app = await TestApp.StartAsync(app =>
        {
            // node-sesame's handlers from the F# sample: Giraffe-shaped, written with the F# Session module.
            app.MapGet("/fs/count", App.counter.ToRequestDelegate());
            app.MapGet("/fs/nested", App.nested.ToRequestDelegate());
            app.MapGet("/fs/show", App.show.ToRequestDelegate());
            app.MapGet("/cs/count", async (HttpContext context) =>
            {
                dynamic s = await context.GetDynamicSesameAsync();
                s.times += 10;
                return $"{s.times}";
            });
            app.MapGet("/cs/nested", (SesameSession session) =>
            {
                dynamic s = session.Dynamic;
                s.foo.bar.baz *= 2;
                return $"{s.foo.bar.baz}";
            });
            app.MapGet("/cs/set", async (HttpContext context) =>
            {
                // The F# API is at hand too: the handle under the facade.
                var handle = await SessionModule.loadAsync(context);
                var times = SessionModule.tryGet<long>("times", handle).Value;
                var session = await context.GetSesameAsync();
                session.Set("fromCSharp", new { greeting = "hello", seenTimes = times });
                return "set";
            });
        }, new CountingStore());
        var browser = app.NewBrowser();

        Assert.Equal("1 times!", await browser.GetTextAsync("/fs/count"));
        Assert.Equal("11", await browser.GetTextAsync("/cs/count"));
        Assert.Equal("12 times!", await browser.GetTextAsync("/fs/count"));
        Assert.Equal("13 times! baz = 2", await browser.GetTextAsync("/fs/nested"));
        Assert.Equal("4", await browser.GetTextAsync("/cs/nested"));
        Assert.Equal("14 times! baz = 8", await browser.GetTextAsync("/fs/nested"));
        Assert.Equal("set", await browser.GetTextAsync("/cs/set"));
        Assert.Equal(
            """{"times":14,"foo":{"bar":{"baz":8}},"fromCSharp":{"greeting":"hello","seenTimes":14}}""",
            await browser.GetTextAsync("/fs/show"));
    }

    [Fact]
    public async Task A_request_gets_one_SesameSession_and_loads_the_store_once()
    {
        using var store = new CountingStore();
        var same = false;
        await using var app = await TestApp.StartAsync(app =>
        {
            app.MapGet("/count", (Func<HttpContext, Task<string>>)CountAsync);
            app.MapGet("/twice", async (HttpContext context, SesameSession bound) =>
            {
                var first = await context.GetSesameAsync();
                dynamic s = await context.GetDynamicSesameAsync();
                same = ReferenceEquals(first, bound) && ReferenceEquals(s, bound.Dynamic);
                return $"{s.times}";
            });
        }, store);
        var browser = app.NewBrowser();
        await browser.GetTextAsync("/count");
        var loadsBefore = store.Loads;

        Assert.Equal("1", await browser.GetTextAsync("/twice"));

        Assert.True(same);
        Assert.Equal(loadsBefore + 1, store.Loads);
    }

    [Fact]
    public async Task Without_UseSesame_asking_for_the_session_is_a_clear_error()
    {
        await using var app = await TestApp.StartAsync(
            app => app.MapGet("/", async (HttpContext context) =>
            {
                var error = await Assert.ThrowsAsync<InvalidOperationException>(() => context.GetSesameAsync());
                return error.Message;
            }),
            useSesame: false);

        Assert.Contains("app.UseSesame()", await app.NewBrowser().GetTextAsync("/"));
    }

    [Fact]
    public async Task AddMemoryStore_configures_the_memory_store_the_app_uses()
    {
        // At most two sessions: a third visitor's session pushes the store over its bound, and it evicts the
        // least recently used session of one request (the second visitor's), never the returning one.
        await using var app = await TestApp.StartAsync(
            app => app.MapGet("/", (Func<HttpContext, Task<string>>)CountAsync),
            configureStore: sesame => sesame.AddMemoryStore(memory => memory.MaxSessions = 2));
        var returning = app.NewBrowser();
        Assert.Equal("1 times!", await returning.GetTextAsync("/"));
        Assert.Equal("2 times!", await returning.GetTextAsync("/"));
        var second = app.NewBrowser();
        Assert.Equal("1 times!", await second.GetTextAsync("/"));

        Assert.Equal("1 times!", await app.NewBrowser().GetTextAsync("/"));

        Assert.IsType<MemoryStore>(app.Services.GetRequiredService<SessionStore>());
        Assert.Equal("3 times!", await returning.GetTextAsync("/"));
        // With the default bound (100,000) the second visitor would still have a session.
        Assert.Equal("1 times!", await second.GetTextAsync("/"));
    }

    [Fact]
    public async Task AddFileStore_keeps_sessions_across_a_restart_of_the_app()
    {
        var directory = Directory.CreateTempSubdirectory("sesame-csharp-");
        try
        {
            var file = System.IO.Path.Combine(directory.FullName, "sessions.db");
            var keys = directory.CreateSubdirectory("keys");
            var jar = new CookieContainer();

            async Task<string> CountInFreshAppAsync()
            {
                await using var app = await TestApp.StartAsync(
                    app => app.MapGet("/", (Func<HttpContext, Task<string>>)CountAsync),
                    configureStore: sesame => sesame.AddFileStore(file),
                    services: services => services.AddDataProtection().PersistKeysToFileSystem(keys));
                Assert.IsType<FileStore>(app.Services.GetRequiredService<SessionStore>());
                using var browser = app.NewBrowser(jar);
                return await browser.GetTextAsync("/");
            }

            Assert.Equal("1 times!", await CountInFreshAppAsync());
            Assert.Equal("2 times!", await CountInFreshAppAsync());
            Assert.True(new FileInfo(file).Length > 0);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }
}
