using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.CSharp.RuntimeBinder;

namespace Sesame.CSharpInterop.Tests;

/// <summary>The dynamic facade: node-sesame's "just change the session", through the real pipeline.</summary>
public sealed class DynamicFacadeTests
{
    public sealed record Item(string Sku, int Qty);

    /// <summary>An app with /seed (stores foo.bar.baz = 1 and a sibling), /session (the JSON) and the caller's endpoints.</summary>
    private static Task<TestApp> StartAsync(CountingStore store, Action<WebApplication> endpoints) =>
        TestApp.StartAsync(app =>
        {
            app.MapPost("/seed", async (HttpContext context) =>
            {
                dynamic s = await context.GetDynamicSesameAsync();
                s.foo = new { bar = new { baz = 1 }, other = "x" };
                return "seeded";
            });
            app.MapGet("/session", (SesameSession session) => session.ToJsonString());
            endpoints(app);
        }, store);

    [Fact]
    public async Task A_deep_assignment_records_one_update_at_the_full_path_and_one_store_write()
    {
        using var store = new CountingStore();
        IReadOnlyList<Update> pending = [];
        await using var app = await StartAsync(store, app => app.MapPost("/double", (SesameSession session) =>
        {
            dynamic s = session.Dynamic;
            s.foo.bar.baz *= 2;
            pending = session.Handle.PendingUpdates;
            return "doubled";
        }));
        var browser = app.NewBrowser();
        await browser.SendTextAsync(HttpMethod.Post, "/seed");
        Assert.Equal(1, store.Commits);

        await browser.SendTextAsync(HttpMethod.Post, "/double");

        var update = Assert.Single(pending);
        var set = Assert.IsType<Update.Set>(update);
        Assert.Equal(SessionPathModule.parse("foo.bar.baz"), set.path);
        Assert.Equal(JsonModule.int64(2), set.value);
        Assert.Equal(2, store.Commits);
        Assert.Equal(["set foo.bar.baz = 2"], store.LastCommit);
        Assert.Equal("""{"foo":{"bar":{"baz":2},"other":"x"}}""", await browser.GetTextAsync("/session"));
    }

    [Fact]
    public async Task Many_changes_in_one_request_are_folded_into_one_store_write()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store, app => app.MapPost("/many", (SesameSession session) =>
        {
            dynamic s = session.Dynamic;
            s.a = 1;
            s.b = "two";
            s.foo.bar.baz *= 2;
            s.foo.bar.baz *= 2;
            s.foo.bar.baz *= 2;
            return "done";
        }));
        var browser = app.NewBrowser();
        await browser.SendTextAsync(HttpMethod.Post, "/seed");

        await browser.SendTextAsync(HttpMethod.Post, "/many");

        Assert.Equal(2, store.Commits);
        Assert.Equal(["set a = 1", "set b = \"two\"", "set foo.bar.baz = 8"], store.LastCommit);
    }

    [Fact]
    public async Task Reading_through_the_facades_never_writes()
    {
        using var store = new CountingStore();
        var seen = new List<string>();
        var pendingAfterReads = -1;
        await using var app = await StartAsync(store, app =>
        {
            app.MapGet("/read", (SesameSession session) =>
            {
                dynamic s = session.Dynamic;
                seen.Add($"{s.foo.bar.baz}");
                seen.Add($"{s.missing ?? "none"}");
                seen.Add($"{s.foo["other"]}");
                foreach (var member in s.foo)
                {
                    seen.Add((string)member.Key);
                }

                seen.Add(s.foo.ToString());
                seen.Add($"{session.Get<int>("foo.bar.baz")}");
                seen.Add($"{session.TryGet<string>("nothing.here", out var _)}");
                seen.Add(session.GetNode("foo")!.ToJsonString());
                seen.Add(session.ToJsonString());
                pendingAfterReads = session.Handle.PendingUpdates.Count;
                return "read";
            });
            app.MapGet("/peek", (SesameSession session) =>
            {
                dynamic s = session.Dynamic;
                return $"{s.times ?? 0} {session.Get<int>("times")} {session.GetNode("times") is null} {s}";
            });
        });
        var browser = app.NewBrowser();
        await browser.SendTextAsync(HttpMethod.Post, "/seed");

        using var response = await browser.GetAsync("/read");

        response.EnsureSuccessStatusCode();
        Assert.Equal(0, pendingAfterReads);
        Assert.Equal(1, store.Commits);
        Assert.False(response.Headers.Contains("Set-Cookie"));
        Assert.Equal(
            ["1", "none", "x", "bar", "other", """{"bar":{"baz":1},"other":"x"}""", "1", "False", """{"bar":{"baz":1},"other":"x"}""", """{"foo":{"bar":{"baz":1},"other":"x"}}"""],
            seen);

        // A visitor with no session who only reads gets no cookie and causes no write.
        using var stranger = await app.NewBrowser().GetAsync("/peek");
        Assert.Equal("0 0 True {}", await stranger.Content.ReadAsStringAsync());
        Assert.False(stranger.Headers.Contains("Set-Cookie"));
        Assert.Equal(1, store.Commits);
    }

    [Fact]
    public async Task Anonymous_objects_records_dictionaries_lists_and_JsonNode_round_trip()
    {
        using var store = new CountingStore();
        Item? record = null, recordByConversion = null;
        Dictionary<string, int>? dictionary = null;
        List<int>? list = null;
        JsonNode? node = null;
        string? name = null, secondTag = null;
        long listCount = 0, thirdItem = 0;
        decimal deepNumber = 0;
        await using var app = await StartAsync(store, app =>
        {
            app.MapPost("/store", (SesameSession session) =>
            {
                dynamic s = session.Dynamic;
                s.anon = new { Name = "Ada", Tags = new[] { "x", "y" } };
                s.record = new Item("apple", 2);
                s.dict = new Dictionary<string, int> { ["a"] = 1, ["b.c"] = 2 };
                s.list = new List<int> { 1, 2, 3 };
                s.node = JsonNode.Parse("""{"deep":{"n":1.50,"ok":true,"none":null}}""");
                return "stored";
            });
            app.MapGet("/load", (SesameSession session) =>
            {
                record = session.Get<Item>("record");
                dictionary = session.Get<Dictionary<string, int>>("dict");
                list = session.Get<List<int>>("list");
                node = session.GetNode("node");
                dynamic s = session.Dynamic;
                name = s.anon.name;
                secondTag = s.anon.tags[1];
                listCount = s.list.Count;
                thirdItem = s.list[2];
                deepNumber = s.node.deep.n;
                recordByConversion = s.record;
                return "loaded";
            });
        });
        var browser = app.NewBrowser();
        await browser.SendTextAsync(HttpMethod.Post, "/store");

        await browser.GetTextAsync("/load");

        Assert.Equal(
            """{"anon":{"name":"Ada","tags":["x","y"]},"record":{"sku":"apple","qty":2},"dict":{"a":1,"b.c":2},"list":[1,2,3],"node":{"deep":{"n":1.50,"ok":true,"none":null}}}""",
            await browser.GetTextAsync("/session"));
        Assert.Equal(new Item("apple", 2), record);
        Assert.Equal(new Item("apple", 2), recordByConversion);
        Assert.Equal(new Dictionary<string, int> { ["a"] = 1, ["b.c"] = 2 }, dictionary);
        Assert.Equal([1, 2, 3], list);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"deep":{"n":1.50,"ok":true,"none":null}}"""), node));
        Assert.Equal("Ada", name);
        Assert.Equal("y", secondTag);
        Assert.Equal(3, listCount);
        Assert.Equal(3, thirdItem);
        Assert.Equal("1.50", deepNumber.ToString(CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task Numbers_read_as_long_when_they_fit_else_decimal_when_exact_else_double()
    {
        using var store = new CountingStore();
        var values = new List<object?>();
        await using var app = await StartAsync(store, app => app.MapPost("/numbers", (SesameSession session) =>
        {
            session.Set("n", JsonNode.Parse("""{"small":42,"max":9223372036854775807,"big":9223372036854775808,"scaled":1.10,"tiny":1e-30,"flag":true,"text":"t","nothing":null}"""));
            dynamic s = session.Dynamic;
            s.price = 19.99m;
            s.ratio = 0.5;
            values.AddRange(new object?[] { s.n.small, s.n.max, s.n.big, s.n.scaled, s.n.tiny, s.n.flag, s.n.text, s.n.nothing, s.price, s.ratio });
            return session.GetNode("price")!.ToJsonString() + " " + session.GetNode("ratio")!.ToJsonString();
        }));

        var stored = await app.NewBrowser().SendTextAsync(HttpMethod.Post, "/numbers");

        Assert.Equal("19.99 0.5", stored);
        Assert.Equal(42L, Assert.IsType<long>(values[0]));
        Assert.Equal(long.MaxValue, Assert.IsType<long>(values[1]));
        Assert.Equal(9223372036854775808m, Assert.IsType<decimal>(values[2]));
        Assert.Equal("1.10", Assert.IsType<decimal>(values[3]).ToString(CultureInfo.InvariantCulture));
        Assert.Equal(1e-30, Assert.IsType<double>(values[4]));
        Assert.Equal(true, values[5]);
        Assert.Equal("t", values[6]);
        Assert.Null(values[7]);
        Assert.Equal(19.99m, Assert.IsType<decimal>(values[8]));
        Assert.Equal(0.5m, Assert.IsType<decimal>(values[9]));
    }

    [Fact]
    public async Task Remove_removes_members_and_array_items_and_a_member_named_Remove_is_still_data()
    {
        using var store = new CountingStore();
        var results = new List<object?>();
        IReadOnlyList<string> pending = [];
        await using var app = await StartAsync(store, app =>
        {
            app.MapPost("/fill", (SesameSession session) =>
            {
                dynamic s = session.Dynamic;
                s.a = 1;
                s.list = new[] { 1, 2, 3 };
                s.Remove = "data";
                return "filled";
            });
            app.MapPost("/remove", (SesameSession session) =>
            {
                dynamic s = session.Dynamic;
                results.Add(s.Remove("a"));
                results.Add(s.list.Remove(0));
                results.Add(s.Remove("absent"));
                results.Add(s.list.Remove(7));
                results.Add(s.Remove);
                pending = session.Handle.PendingUpdates.Select(update => update.ToString()).ToArray();
                return "removed";
            });
        });
        var browser = app.NewBrowser();
        await browser.SendTextAsync(HttpMethod.Post, "/fill");

        await browser.SendTextAsync(HttpMethod.Post, "/remove");

        Assert.Equal(new object?[] { true, true, false, false, "data" }, results);
        Assert.Equal(["remove a", "set list = [2,3]"], pending);
        Assert.Equal("""{"list":[2,3],"Remove":"data"}""", await browser.GetTextAsync("/session"));
    }

    [Fact]
    public async Task A_loop_that_removes_items_of_the_array_it_walks_throws_and_one_that_walks_from_the_last_index_removes_the_right_ones()
    {
        using var store = new CountingStore();
        Exception? thrown = null;
        await using var app = await StartAsync(store, app =>
        {
            app.MapPost("/fill", (SesameSession session) =>
            {
                session.Set("items", new[] { new Item("a", 0), new Item("b", 0), new Item("c", 1), new Item("d", 0) });
                return "filled";
            });
            app.MapPost("/forward", (SesameSession session) =>
            {
                dynamic s = session.Dynamic;
                var i = 0;
                thrown = Record.Exception(() =>
                {
                    foreach (var item in s.items)
                    {
                        if (((dynamic)item!).qty == 0) s.items.Remove(i);
                        else i++;
                    }
                });
                return "walked";
            });
            app.MapPost("/backward", (SesameSession session) =>
            {
                dynamic s = session.Dynamic;
                for (int i = s.items.Count - 1; i >= 0; i--)
                {
                    if (s.items[i].qty == 0) s.items.Remove(i);
                }

                return "walked";
            });
        });
        var browser = app.NewBrowser();
        await browser.SendTextAsync(HttpMethod.Post, "/fill");

        await browser.SendTextAsync(HttpMethod.Post, "/forward");

        var refused = Assert.IsType<InvalidOperationException>(thrown);
        Assert.Contains("'items' was changed while it was enumerated", refused.Message);
        await browser.SendTextAsync(HttpMethod.Post, "/backward");
        Assert.Equal("""{"items":[{"sku":"c","qty":1}]}""", await browser.GetTextAsync("/session"));
    }

    [Fact]
    public async Task A_loop_that_changes_every_item_through_proxies_costs_what_each_change_does_not_a_copy_of_the_session_each()
    {
        using var store = new CountingStore();
        const int count = 8000;
        long allocated = 0;
        await using var app = await StartAsync(store, app =>
        {
            app.MapPost("/fill", (SesameSession session) =>
            {
                session.Set("items", Enumerable.Range(0, count).Select(i => new Item($"sku{i}", 1)).ToArray());
                session.Set("prefs", new Dictionary<string, int>());
                session.Set("log", Array.Empty<int>());
                return "filled";
            });
            app.MapPost("/zero", (SesameSession session) =>
            {
                dynamic s = session.Dynamic;
                dynamic prefs = s.prefs;
                // Counted as the bytes this thread allocates while the loops record their changes (no timing): a proxy
                // that made the changed tree again for each check copied all the items at every step, n² work.
                var before = GC.GetAllocatedBytesForCurrentThread();
                foreach (var item in s.items)
                {
                    ((dynamic)item!).qty = 0;
                }

                for (var i = 0; i < count; i++)
                {
                    prefs["k" + i] = i;
                }

                // Each item changed, then read back; and appends through the root's proxy, which reads the root.
                long total = 0;
                foreach (var item in s.items)
                {
                    var line = (dynamic)item!;
                    line.qty = 5;
                    total += line.qty;
                }

                for (var i = 0; i < count; i++)
                {
                    s.log.Add(i);
                }

                allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                return $"{total}";
            });
        });
        var browser = app.NewBrowser();
        await browser.SendTextAsync(HttpMethod.Post, "/fill");

        Assert.Equal($"{5 * count}", await browser.SendTextAsync(HttpMethod.Post, "/zero"));

        Assert.InRange(allocated, 0, 64L << 20);
        var session = System.Text.Json.JsonDocument.Parse(await browser.GetTextAsync("/session")).RootElement;
        Assert.All(session.GetProperty("items").EnumerateArray(), item => Assert.Equal(5, item.GetProperty("qty").GetInt32()));
        Assert.Equal(count, session.GetProperty("prefs").EnumerateObject().Count());
        Assert.Equal(Enumerable.Range(0, count), session.GetProperty("log").EnumerateArray().Select(item => item.GetInt32()));
    }

    [Fact]
    public async Task A_change_through_a_proxy_whose_value_was_removed_throws_and_makes_nothing_again()
    {
        using var store = new CountingStore();
        var thrown = new List<Exception?>();
        await using var app = await StartAsync(store, app =>
        {
            app.MapPost("/fill", (SesameSession session) =>
            {
                session.Set("cart", new { total = 1, lines = new[] { new Item("a", 1), new Item("b", 2) } });
                return "filled";
            });
            app.MapPost("/stale", (SesameSession session) =>
            {
                dynamic s = session.Dynamic;
                var lastLine = s.cart.lines[1];
                s.cart.lines.Remove(0);
                // The line now past the end: assigning through its proxy would append a stray item.
                thrown.Add(Record.Exception(() => { lastLine.qty = 77; }));
                var cart = s.cart;
                s.Remove("cart");
                thrown.Add(Record.Exception(() => { cart.total = 3; }));
                thrown.Add(Record.Exception(() => { cart["total"] = 3; }));
                thrown.Add(Record.Exception(() => cart.Increment("total")));
                return "done";
            });
        });
        var browser = app.NewBrowser();
        await browser.SendTextAsync(HttpMethod.Post, "/fill");

        await browser.SendTextAsync(HttpMethod.Post, "/stale");

        Assert.Equal(4, thrown.Count);
        Assert.All(thrown, e => Assert.Contains("no longer in the session", Assert.IsType<InvalidOperationException>(e).Message));
        Assert.Equal("{}", await browser.GetTextAsync("/session"));
    }

    [Fact]
    public async Task Array_items_removed_by_many_threads_of_one_request_are_each_removed_once()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store, app =>
        {
            app.MapPost("/round", async (SesameSession session) =>
            {
                session.Set("items", Enumerable.Range(0, 2000).ToArray());
                using var start = new Barrier(4);
                await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
                {
                    start.SignalAndWait();
                    for (var i = 0; i < 250; i++) session.Remove("items[0]");
                })));
                var items = session.Get<int[]>("items")!;
                return $"{items.Length} {items.SequenceEqual(Enumerable.Range(1000, 1000))}";
            });
        });
        var browser = app.NewBrowser();

        for (var round = 1; round <= 10; round++)
        {
            Assert.Equal("1000 True", await browser.SendTextAsync(HttpMethod.Post, "/round"));
        }
    }

    [Fact]
    public async Task Indexes_take_keys_of_any_character_and_array_positions()
    {
        using var store = new CountingStore();
        IReadOnlyList<string> pending = [];
        string? firstName = null;
        await using var app = await StartAsync(store, app => app.MapPost("/index", (SesameSession session) =>
        {
            dynamic s = session.Dynamic;
            s["first.name"] = "Ada";
            s["a[0]"] = new[] { 10, 20 };
            s["a[0]"][1] = 21;
            s["a[0]"][2] = 22;
            s.items = new List<object>();
            s.items.Add(new { sku = "pear" });
            firstName = session.Get<string>("[\"first.name\"]");
            pending = session.Handle.PendingUpdates.Select(update => update.ToString()).ToArray();
            return "indexed";
        }));
        var browser = app.NewBrowser();

        await browser.SendTextAsync(HttpMethod.Post, "/index");

        Assert.Equal("Ada", firstName);
        Assert.Equal(
            ["set [\"first.name\"] = \"Ada\"", "set [\"a[0]\"] = [10,20]", "set [\"a[0]\"][1] = 21", "set [\"a[0]\"][2] = 22", "set items = []", "append {\"sku\":\"pear\"} to items"],
            pending);
        Assert.Equal("""{"first.name":"Ada","a[0]":[10,21,22],"items":[{"sku":"pear"}]}""", await browser.GetTextAsync("/session"));
    }

    [Fact]
    public async Task Enumeration_and_ToString_show_the_current_value()
    {
        using var store = new CountingStore();
        var seen = new List<string>();
        await using var app = await StartAsync(store, app => app.MapPost("/walk", (SesameSession session) =>
        {
            session.Set("cart", new { items = new[] { new { sku = "a", qty = 1 }, new { sku = "b", qty = 2 } } });
            session.Set("user", new { name = "Ada", age = 36 });
            dynamic s = session.Dynamic;
            foreach (var item in s.cart.items)
            {
                seen.Add($"{item.sku}x{item.qty}");
            }

            foreach (var member in s.user)
            {
                seen.Add($"{member.Key}={member.Value}");
            }

            s.user.age += 1;
            seen.Add(s.user.ToString());
            seen.Add(s.cart.items.ToJsonString());
            seen.Add($"{s.cart.items[1]}");
            seen.Add(string.Join(",", ((System.Dynamic.DynamicObject)s.user).GetDynamicMemberNames()));
            return "walked";
        }));

        await app.NewBrowser().SendTextAsync(HttpMethod.Post, "/walk");

        Assert.Equal(
            ["ax1", "bx2", "name=Ada", "age=36", """{"name":"Ada","age":37}""", """[{"sku":"a","qty":1},{"sku":"b","qty":2}]""", """{"sku":"b","qty":2}""", "name,age"],
            seen);
    }

    [Fact]
    public async Task A_missing_member_reads_as_null_and_a_path_through_a_leaf_is_refused_without_recording()
    {
        using var store = new CountingStore();
        var outcomes = new List<object?>();
        await using var app = await StartAsync(store, app => app.MapPost("/edge", (SesameSession session) =>
        {
            dynamic s = session.Dynamic;
            outcomes.Add(s.nothing);
            outcomes.Add(s.nothing?.deeper);
            s.text = "leaf";
            outcomes.Add(s.text.Length); // a string's own member: the value read is a plain string
            s.user = new { name = "Ada" };
            var conflict = Assert.Throws<PathConflictException>(() => s.user[0] = 1);
            outcomes.Add(conflict.Message);
            var throughLeaf = Assert.Throws<RuntimeBinderException>(() => s.nothing.deeper = 1);
            outcomes.Add(throughLeaf.GetType().Name);
            outcomes.Add(session.Handle.PendingUpdates.Count);
            return "edge";
        }));

        await app.NewBrowser().SendTextAsync(HttpMethod.Post, "/edge");

        Assert.Equal(
            new object?[] { null, null, 4, "Cannot follow 'user[0]': 'user' is an object, not an array.", nameof(RuntimeBinderException), 2 },
            outcomes);
    }

    [Fact]
    public async Task Increment_on_the_proxy_adds_exactly_and_returns_the_new_value()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store, app => app.MapPost("/hit", (SesameSession session) =>
        {
            dynamic s = session.Dynamic;
            decimal hits = s.Increment("hits");
            decimal spent = s.Increment("spent", 0.10m);
            return string.Create(CultureInfo.InvariantCulture, $"{hits} {spent}");
        }));
        var browser = app.NewBrowser();

        Assert.Equal("1 0.10", await browser.SendTextAsync(HttpMethod.Post, "/hit"));
        Assert.Equal("2 0.20", await browser.SendTextAsync(HttpMethod.Post, "/hit"));
        Assert.Equal(["increment hits by 1", "increment spent by 0.10"], store.LastCommit);
    }

    [Fact]
    public async Task A_session_kept_after_its_request_throws_a_clear_error_for_reads_and_changes()
    {
        using var store = new CountingStore();
        dynamic? kept = null;
        dynamic? keptNested = null;
        SesameSession? keptSession = null;
        await using var app = await StartAsync(store, app => app.MapPost("/keep", (SesameSession session) =>
        {
            keptSession = session;
            kept = session.Dynamic;
            keptNested = kept.foo.bar;
            return "kept";
        }));
        var browser = app.NewBrowser();
        await browser.SendTextAsync(HttpMethod.Post, "/seed");
        await browser.SendTextAsync(HttpMethod.Post, "/keep");
        var stale = kept!;
        var staleNested = keptNested!;

        var read = Assert.Throws<ObjectDisposedException>(() => (object?)staleNested.baz);
        Assert.Throws<ObjectDisposedException>(() => (object?)stale.foo);
        Assert.Throws<ObjectDisposedException>(() => stale.times = 1);
        Assert.Throws<ObjectDisposedException>(() => staleNested.baz *= 2);
        Assert.Throws<ObjectDisposedException>(() => (string)staleNested.ToString());
        Assert.Throws<ObjectDisposedException>(() => { foreach (var _ in stale) { } });
        Assert.Throws<ObjectDisposedException>(() => keptSession!.Get<int>("foo.bar.baz"));
        Assert.Throws<ObjectDisposedException>(() => keptSession!.Set("times", 1));

        Assert.Contains("request that has ended", read.Message);
        Assert.Contains("'foo.bar'", read.Message);
        Assert.Contains("GetSesameAsync", read.Message);
        Assert.Equal(1, store.Commits);
        Assert.Equal("""{"foo":{"bar":{"baz":1},"other":"x"}}""", await browser.GetTextAsync("/session"));
    }
}
