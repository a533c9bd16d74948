using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Sesame.CSharpInterop.Tests;

/// <summary>Truly concurrent requests of one session over Kestrel, with a real HttpClient and cookie jar.</summary>
public sealed class ConcurrencyTests
{
    private const int Requests = 100;

    private static Task<TestApp> StartAsync(CountingStore store) =>
        TestApp.StartAsync(app =>
        {
            app.MapPost("/start", (SesameSession session) =>
            {
                session.Set("started", true);
                session.Set("keys", new Dictionary<string, int>());
                return "started";
            });
            app.MapPost("/set/{key}", async (string key, HttpContext context) =>
            {
                dynamic s = await context.GetDynamicSesameAsync();
                s.keys[key] = key.Length;
                return "set";
            });
            app.MapPost("/hit", (SesameSession session) => $"{session.Increment("hits")}");
            app.MapGet("/session", (SesameSession session) => session.ToJsonString());
            app.MapGet("/keys", (SesameSession session) => session.Get<Dictionary<string, int>>("keys")?.Count ?? 0);
        }, store, kestrel: true);

    [Fact]
    public async Task A_hundred_concurrent_requests_setting_different_keys_through_the_dynamic_facade_keep_all_hundred()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store);
        using var browser = app.NewBrowser();
        await browser.SendTextAsync(HttpMethod.Post, "/start");
        var commitsBefore = store.Commits;

        await Task.WhenAll(Enumerable.Range(0, Requests).Select(i => browser.SendTextAsync(HttpMethod.Post, $"/set/key{i}")));

        Assert.Equal(Requests, int.Parse(await browser.GetTextAsync("/keys")));
        Assert.Equal(commitsBefore + Requests, store.Commits);
        var session = await browser.GetTextAsync("/session");
        for (var i = 0; i < Requests; i++)
        {
            Assert.Contains($"\"key{i}\":{$"key{i}".Length}", session);
        }
    }

    [Fact]
    public async Task A_hundred_concurrent_increments_through_the_typed_facade_add_up_exactly()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store);
        using var browser = app.NewBrowser();
        await browser.SendTextAsync(HttpMethod.Post, "/start");

        await Task.WhenAll(Enumerable.Range(0, Requests).Select(_ => browser.SendTextAsync(HttpMethod.Post, "/hit")));

        Assert.Equal($"{{\"started\":true,\"keys\":{{}},\"hits\":{Requests}}}", await browser.GetTextAsync("/session"));
    }
}
