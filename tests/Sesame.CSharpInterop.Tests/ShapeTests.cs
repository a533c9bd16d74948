using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Sesame.CSharpInterop.Tests;

/// <summary>
/// Sessions that survive deploys, from C#: migrations over a JsonObject, reads that degrade gently, and an older app
/// meeting a newer session. Two apps of different versions share one store and one key ring, as a rolling deploy's do.
/// </summary>
public sealed class ShapeTests
{
    public sealed record Line(string Sku, int Qty);

    /// <summary>Version 1: the cart holds item names. Version 2: lines with quantities.</summary>
    private static void Version(SesameOptions options, int version)
    {
        options.ShapeVersion = version;
        options.AddMigration(0, _ => { });
        if (version >= 2)
        {
            options.AddMigration(1, session =>
            {
                var cart = session["cart"]!.AsObject();
                var lines = new JsonArray();
                foreach (var item in cart["items"]!.AsArray())
                {
                    lines.Add(new System.Text.Json.Nodes.JsonObject { ["sku"] = item!.GetValue<string>(), ["qty"] = 1 });
                }

                cart.Remove("items");
                cart["lines"] = lines;
            });
        }
    }

    private static Task<TestApp> StartAsync(
        SessionStore store, IDataProtectionProvider keys, int version, Action<WebApplication> endpoints, Action<SesameOptions>? configure = null) =>
        TestApp.StartAsync(
            app =>
            {
                app.MapGet("/fill", (SesameSession session) =>
                {
                    session.Set("cart.items", new[] { "apple", "pear" });
                    session.Set("visits", 1);
                    return "filled";
                });
                app.MapGet("/id", (SesameSession session) => session.Id ?? "");
                endpoints(app);
            },
            store,
            options =>
            {
                Version(options, version);
                configure?.Invoke(options);
            },
            services: services => services.AddSingleton(keys));

    /// <summary>Fills a cart of version 1; gives the session's id.</summary>
    private static async Task<string> FillAsync(HttpClient browser)
    {
        await browser.GetTextAsync("/fill");
        return await browser.GetTextAsync("/id");
    }

    [Fact]
    public async Task A_session_of_an_older_shape_is_read_migrated_and_stored_migrated_with_the_first_change()
    {
        using var store = new CountingStore();
        var keys = new EphemeralDataProtectionProvider();
        var jar = new CookieContainer();
        await using var old = await StartAsync(store, keys, 1, _ => { });
        await using var current = await StartAsync(store, keys, 2, app =>
        {
            app.MapGet("/lines", (SesameSession session) =>
                string.Join(",", session.Get<List<Line>>("cart.lines")!.Select(line => $"{line.Sku}x{line.Qty}")) + $" shape {session.ShapeVersion}");
            app.MapGet("/visit", (SesameSession session) => session.Increment("visits").ToString());
        });

        var id = await FillAsync(old.NewBrowser(jar));
        var onV2 = current.NewBrowser(jar);
        Assert.Equal("applex1,pearx1 shape 2", await onV2.GetTextAsync("/lines"));
        var untouched = await store.LoadAsync(id, TimeSpan.FromMinutes(1), CancellationToken.None);
        Assert.Equal(1, SessionMeta.shapeOf(untouched.Meta));

        Assert.Equal("2", await onV2.GetTextAsync("/visit"));
        var stored = await store.LoadAsync(id, TimeSpan.FromMinutes(1), CancellationToken.None);
        Assert.Equal(2, SessionMeta.shapeOf(stored.Meta));
        Assert.Equal("""{"cart":{"lines":[{"sku":"apple","qty":1},{"sku":"pear","qty":1}]},"visits":2}""", JsonModule.serialize(stored.Data));
    }

    [Fact]
    public async Task A_read_that_no_longer_fits_gets_the_fallback_the_call_or_the_path_chooses()
    {
        using var store = new CountingStore();
        var keys = new EphemeralDataProtectionProvider();
        var jar = new CookieContainer();
        await using var old = await StartAsync(store, keys, 1, _ => { });
        // Version 2's code deployed without its migration: the carts stored by version 1 do not fit List<Line>.
        await using var forgetful = await StartAsync(store, keys, 1, app =>
        {
            app.MapGet("/read", (SesameSession session) =>
            {
                string thrown;
                try
                {
                    session.Get<List<Line>>("cart.items");
                    thrown = "no exception";
                }
                catch (JsonException e)
                {
                    thrown = e.Message.StartsWith("The session value at 'cart.items' cannot be read as List`1", StringComparison.Ordinal) ? "throws" : e.Message;
                }

                var missing = session.Get<List<Line>>("cart.items", ReadFallback.Missing) is null;
                var found = session.TryGet<List<Line>>("cart.items", ReadFallback.Missing, out _);
                var orDefault = session.GetOrDefault("cart.items", new List<Line> { new("none", 0) });
                var removed = session.TryGet<int>("visits", out _); // the options remove what no longer fits under visits
                return $"{thrown} {missing} {found} {orDefault[0].Sku} {removed}";
            });
        }, options => options.ReadFallbacks.Add("visits", ReadFallback.Remove));

        var id = await FillAsync(old.NewBrowser(jar));
        // visits as text, so that reading it as an int fails too.
        await using (var writer = await StartAsync(store, keys, 1, app => app.MapGet("/text", (SesameSession s) => { s.Set("visits", "one"); return "ok"; })))
        {
            await writer.NewBrowser(jar).GetTextAsync("/text");
        }

        Assert.Equal("throws True False none False", await forgetful.NewBrowser(jar).GetTextAsync("/read"));
        var stored = await store.LoadAsync(id, TimeSpan.FromMinutes(1), CancellationToken.None);
        Assert.Equal("""{"cart":{"items":["apple","pear"]}}""", JsonModule.serialize(stored.Data));
    }

    [Fact]
    public async Task An_older_app_serves_a_newer_session_read_only()
    {
        using var store = new CountingStore();
        var keys = new EphemeralDataProtectionProvider();
        var jar = new CookieContainer();
        await using var old = await StartAsync(store, keys, 1, app =>
            app.MapGet("/change", (SesameSession session) =>
            {
                try
                {
                    session.Set("cart.items[2]", "plum");
                    return "changed";
                }
                catch (SessionShapeException e)
                {
                    return $"read-only {session.IsReadOnly}: version {e.SessionVersion} in an app of {e.AppVersion}, {session.Get<JsonNode>("cart")!.ToJsonString()}";
                }
            }));
        await using var current = await StartAsync(store, keys, 2, app =>
            app.MapGet("/visit", (SesameSession session) => session.Increment("visits").ToString()));

        var id = await FillAsync(old.NewBrowser(jar));
        await current.NewBrowser(jar).GetTextAsync("/visit");
        Assert.Equal(
            """read-only True: version 2 in an app of 1, {"lines":[{"sku":"apple","qty":1},{"sku":"pear","qty":1}]}""",
            await old.NewBrowser(jar).GetTextAsync("/change"));
        var stored = await store.LoadAsync(id, TimeSpan.FromMinutes(1), CancellationToken.None);
        Assert.Equal(2, SessionMeta.shapeOf(stored.Meta));
        Assert.DoesNotContain("plum", JsonModule.serialize(stored.Data));
    }
}
