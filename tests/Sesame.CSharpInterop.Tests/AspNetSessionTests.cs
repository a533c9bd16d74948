using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Sesame.CSharpInterop.Tests;

/// <summary>
/// HttpContext.Session over Sesame (<c>AddSesame().AddSessionCompatibility()</c>): the behaviours ASP.NET Core's
/// session documents, run through the real pipeline by code written for ASP.NET Core's session, unchanged.
/// </summary>
public sealed class AspNetSessionTests
{
    private sealed record Cart(string Owner, int[] Items);

    /// <summary>Endpoints written as for AddSession/UseSession: only ISession and its extension methods.</summary>
    private static void MapAspNetCoreStyle(WebApplication app)
    {
        app.MapPost("/profile", (HttpContext context) =>
        {
            context.Session.SetString("Name", "Rick");
            context.Session.SetInt32("Age", 73);
            context.Session.Set("Bytes", Enumerable.Range(0, 256).Select(i => (byte)i).ToArray());
            // The docs' pattern for objects: serialize to a string.
            context.Session.SetString("Cart", JsonSerializer.Serialize(new Cart("Rick", [1, 2, 3])));
            return "stored";
        });
        app.MapGet("/profile", (HttpContext context) =>
        {
            var name = context.Session.GetString("Name");
            var age = context.Session.GetInt32("Age");
            var bytesIntact = context.Session.TryGetValue("Bytes", out var bytes)
                && bytes.SequenceEqual(Enumerable.Range(0, 256).Select(i => (byte)i));
            var cart = JsonSerializer.Deserialize<Cart>(context.Session.GetString("Cart")!)!;
            return $"{name}|{age}|{bytesIntact}|{cart.Owner}:{string.Join(",", cart.Items)}";
        });
        app.MapGet("/id", (HttpContext context) => context.Session.Id);
        app.MapGet("/keys", (HttpContext context) => string.Join(",", context.Session.Keys));
        app.MapPost("/set/{key}", (string key, HttpContext context) =>
        {
            context.Session.SetString(key, key.ToUpperInvariant());
            return "set";
        });
        app.MapPost("/remove/{key}", (string key, HttpContext context) =>
        {
            context.Session.Remove(key);
            return "removed";
        });
        app.MapPost("/clear", (HttpContext context) =>
        {
            context.Session.Clear();
            return "cleared";
        });
        app.MapGet("/available", (HttpContext context) => $"{context.Session.IsAvailable}");
    }

    private static Task<TestApp> StartAsync(SessionStore store, Action<WebApplication>? more = null) =>
        TestApp.StartAsync(app =>
        {
            MapAspNetCoreStyle(app);
            more?.Invoke(app);
        }, store, configureStore: sesame => sesame.AddSessionCompatibility());

    private static bool SetsCookie(HttpResponseMessage response) => response.Headers.Contains("Set-Cookie");

    [Fact]
    public async Task Code_written_for_ASP_NET_Core_session_runs_unchanged_strings_numbers_bytes_and_JSON_objects()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store);
        var browser = app.NewBrowser();

        Assert.Equal("stored", await browser.SendTextAsync(HttpMethod.Post, "/profile"));
        Assert.Equal("Rick|73|True|Rick:1,2,3", await browser.GetTextAsync("/profile"));
        Assert.Equal(1, store.Commits);
    }

    [Fact]
    public async Task An_empty_session_is_not_kept_and_each_such_request_has_a_new_Id()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store);
        var browser = app.NewBrowser();

        using var first = await browser.GetAsync("/id");
        using var second = await browser.GetAsync("/id");

        Assert.False(SetsCookie(first));
        Assert.False(SetsCookie(second));
        Assert.NotEqual(await first.Content.ReadAsStringAsync(), await second.Content.ReadAsStringAsync());
        Assert.Equal(0, store.Commits);
    }

    [Fact]
    public async Task A_stored_session_keeps_its_Id_which_is_not_its_cookie_even_when_Sesame_moves_it_to_a_new_id()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store, app =>
        {
            app.MapPost("/create", (HttpContext context) =>
            {
                var id = context.Session.Id;
                context.Session.SetString("Name", "Rick");
                return id;
            });
            app.MapPost("/sign-in", async (SesameSession session) => $"{await session.SignInAsync("rick")}");
        });
        var jar = new CookieContainer();
        var browser = app.NewBrowser(jar);

        var atCreation = await browser.SendTextAsync(HttpMethod.Post, "/create");
        var cookie = jar.GetCookies(new Uri("http://localhost/"))[SesameOptions.DefaultCookieName]!.Value;
        Assert.Equal(atCreation, await browser.GetTextAsync("/id"));
        Assert.Equal(atCreation, await browser.GetTextAsync("/id"));
        Assert.True(Guid.TryParse(atCreation, out _), "a GUID, as ASP.NET Core's");

        Assert.Equal("SignedIn", await browser.SendTextAsync(HttpMethod.Post, "/sign-in"));
        Assert.NotEqual(cookie, jar.GetCookies(new Uri("http://localhost/"))[SesameOptions.DefaultCookieName]!.Value);
        Assert.Equal(atCreation, await browser.GetTextAsync("/id"));
    }

    [Fact]
    public async Task The_Id_a_request_reads_before_Sesames_own_API_creates_the_session_is_the_Id_it_keeps()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store, app =>
        {
            // An app halfway through its move: ISession's Id read, then the session changed through Sesame's API.
            app.MapPost("/visit", (HttpContext context, SesameSession session) =>
            {
                var id = context.Session.Id;
                session.Increment("visits");
                return $"{id}|{context.Session.Id}";
            });
            app.MapGet("/read-only", (HttpContext context) => context.Session.Id);
        });
        var browser = app.NewBrowser();

        var answer = (await browser.SendTextAsync(HttpMethod.Post, "/visit")).Split('|');

        Assert.Equal(answer[0], answer[1]);
        Assert.True(Guid.TryParse(answer[0], out _), "a GUID, as ASP.NET Core's");
        Assert.Equal(answer[0], await browser.GetTextAsync("/id"));
        Assert.Equal(answer[0], (await browser.SendTextAsync(HttpMethod.Post, "/visit")).Split('|')[0]);
        // Reading the Id alone still keeps nothing.
        var stranger = app.NewBrowser();
        using var read = await stranger.GetAsync("/read-only");
        Assert.False(SetsCookie(read));
        Assert.Equal(2, store.Commits);
    }

    [Fact]
    public async Task A_session_destroyed_in_the_request_that_created_it_leaves_its_Id_behind()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store, app =>
        {
            app.MapPost("/sign-in-and-out", async (HttpContext context, SesameSession session) =>
            {
                var atFirst = context.Session.Id;
                await session.SignInAsync("ada");
                var signedIn = context.Session.Id;
                await session.DestroyAsync();
                context.Session.SetString("notice", "signed out");
                return $"{atFirst}|{signedIn}|{context.Session.Id}";
            });
        });
        var browser = app.NewBrowser();

        var ids = (await browser.SendTextAsync(HttpMethod.Post, "/sign-in-and-out")).Split('|');

        Assert.Equal(ids[0], ids[1]);
        Assert.NotEqual(ids[1], ids[2]);
        Assert.True(Guid.TryParse(ids[2], out _), "a GUID, as ASP.NET Core's");
        Assert.Equal(ids[2], await browser.GetTextAsync("/id"));
    }

    [Fact]
    public async Task Two_threads_that_read_a_new_sessions_Id_at_once_get_the_Id_it_keeps()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store, app =>
        {
            app.MapPost("/two-readers", async (HttpContext context) =>
            {
                // The session taken once on the request's thread: HttpContext itself is not for two threads at once.
                var session = context.Session;
                using var start = new Barrier(2);
                var ids = await Task.WhenAll(Enumerable.Range(0, 2).Select(_ => Task.Run(() =>
                {
                    start.SignalAndWait();
                    return session.Id;
                })));
                session.SetString("k", "v");
                return $"{ids[0]}|{ids[1]}";
            });
        });

        for (var round = 0; round < 200; round++)
        {
            var browser = app.NewBrowser();
            var ids = (await browser.SendTextAsync(HttpMethod.Post, "/two-readers")).Split('|');
            Assert.Equal(ids[0], ids[1]);
            Assert.Equal(ids[0], await browser.GetTextAsync("/id"));
        }
    }

    [Fact]
    public async Task The_Id_read_while_the_commit_that_creates_the_session_is_under_way_is_the_Id_it_keeps()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store, app =>
        {
            app.MapPost("/commit-and-read", async (HttpContext context, SesameSession session) =>
            {
                session.Set("a", 1);
                var commit = context.Session.CommitAsync();
                var id = context.Session.Id;
                await commit;
                return $"{id}|{context.Session.Id}";
            });
        });
        var browser = app.NewBrowser();
        store.CommitDelay = TimeSpan.FromMilliseconds(50);

        var ids = (await browser.SendTextAsync(HttpMethod.Post, "/commit-and-read")).Split('|');

        Assert.Equal(ids[0], ids[1]);
        Assert.Equal(ids[0], await browser.GetTextAsync("/id"));
    }

    [Fact]
    public async Task Keys_Remove_and_Clear_change_the_session_by_path_and_a_cleared_session_lives_on()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store);
        var browser = app.NewBrowser();
        foreach (var key in new[] { "a", "b", "c" })
        {
            await browser.SendTextAsync(HttpMethod.Post, $"/set/{key}");
        }

        var id = await browser.GetTextAsync("/id");
        Assert.Equal("a,b,c", await browser.GetTextAsync("/keys"));

        await browser.SendTextAsync(HttpMethod.Post, "/remove/b");
        Assert.Equal(["remove b"], store.LastCommit);
        Assert.Equal("a,c", await browser.GetTextAsync("/keys"));

        var commits = store.Commits;
        await browser.SendTextAsync(HttpMethod.Post, "/remove/nothing-there");
        Assert.Equal(commits, store.Commits);

        await browser.SendTextAsync(HttpMethod.Post, "/clear");
        Assert.Equal("", await browser.GetTextAsync("/keys"));
        Assert.Equal(id, await browser.GetTextAsync("/id"));
        await browser.SendTextAsync(HttpMethod.Post, "/set/d");
        Assert.Equal("d", await browser.GetTextAsync("/keys"));
    }

    [Fact]
    public async Task Clearing_a_new_empty_session_stores_nothing()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store);
        var browser = app.NewBrowser();

        using var response = await browser.PostAsync("/clear", null);

        Assert.False(SetsCookie(response));
        Assert.Equal(0, store.Commits);
    }

    [Fact]
    public async Task Each_key_is_a_top_level_key_of_the_tree_text_kept_readable_other_bytes_as_tagged_base64()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store, app =>
        {
            app.MapPost("/small", (HttpContext context) =>
            {
                context.Session.SetString("Name", "Zoë");
                context.Session.SetInt32("Age", 5);
                return "set";
            });
            app.MapGet("/tree", (SesameSession session) => $"{session.ToJsonString()}|{session.Get<string>("Name")}");
        });
        var browser = app.NewBrowser();
        await browser.SendTextAsync(HttpMethod.Post, "/small");

        Assert.Equal("""{"Name":"Zoë","Age":{"$base64":"AAAABQ=="}}|Zoë""", await browser.GetTextAsync("/tree"));
    }

    [Fact]
    public async Task Values_set_through_Sesames_own_API_read_through_ISession_as_their_JSON_text()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store, app =>
        {
            app.MapPost("/sesame", (SesameSession session) =>
            {
                session.Set("count", 5);
                session.Set("user", new { name = "Ada" });
                session.Set("greeting", "hello");
                return "set";
            });
            app.MapGet("/isession", (HttpContext context) =>
                $"{context.Session.GetString("count")}|{context.Session.GetString("user")}|{context.Session.GetString("greeting")}");
        });
        var browser = app.NewBrowser();
        await browser.SendTextAsync(HttpMethod.Post, "/sesame");

        Assert.Equal("""5|{"name":"Ada"}|hello""", await browser.GetTextAsync("/isession"));
    }

    [Fact]
    public async Task All_the_changes_of_a_request_are_one_commit_of_path_updates()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store, app =>
            app.MapPost("/many", (HttpContext context) =>
            {
                context.Session.SetString("a", "1");
                context.Session.SetString("b", "2");
                context.Session.SetString("a", "3");
                context.Session.Remove("b");
                return "done";
            }));
        var browser = app.NewBrowser();

        await browser.SendTextAsync(HttpMethod.Post, "/many");

        Assert.Equal(1, store.Commits);
        Assert.Contains("set a = \"3\"", store.LastCommit);
        Assert.DoesNotContain(store.LastCommit, update => update.StartsWith("set b"));
    }

    [Fact]
    public async Task An_explicit_CommitAsync_stores_the_changes_before_the_handler_goes_on_and_the_pipeline_writes_nothing_more()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store, app =>
            app.MapPost("/commit", async (HttpContext context) =>
            {
                await context.Session.LoadAsync();
                context.Session.SetString("saved", "yes");
                await context.Session.CommitAsync();
                return $"{store.Commits}";
            }));
        var browser = app.NewBrowser();

        Assert.Equal("1", await browser.SendTextAsync(HttpMethod.Post, "/commit"));
        Assert.Equal(1, store.Commits);
        Assert.Equal("saved", await browser.GetTextAsync("/keys"));
    }

    [Fact]
    public async Task A_new_session_cannot_be_started_once_the_response_has_started()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store, app =>
            app.MapPost("/late", async (HttpContext context) =>
            {
                await context.Response.StartAsync();
                try
                {
                    context.Session.SetString("late", "yes");
                    await context.Response.WriteAsync("stored");
                }
                catch (InvalidOperationException)
                {
                    await context.Response.WriteAsync("refused");
                }
            }));
        var browser = app.NewBrowser();

        Assert.Equal("refused", await browser.SendTextAsync(HttpMethod.Post, "/late"));
        Assert.Equal(0, store.Commits);
    }

    [Fact]
    public async Task Setting_a_null_value_throws_ArgumentNullException_as_ASP_NET_Cores_session_does()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store, app =>
            app.MapPost("/null", (HttpContext context) =>
                Record.Exception(() => context.Session.Set("key", null!))?.GetType().Name ?? "nothing thrown"));
        var browser = app.NewBrowser();

        Assert.Equal(nameof(ArgumentNullException), await browser.SendTextAsync(HttpMethod.Post, "/null"));
    }

    [Fact]
    public async Task When_the_store_cannot_load_the_session_IsAvailable_is_false_reads_find_nothing_and_an_explicit_LoadAsync_throws()
    {
        using var counting = new CountingStore();
        var store = new FlakyStore(counting);
        await using var app = await StartAsync(store, app =>
        {
            app.MapGet("/unavailable", (HttpContext context) =>
            {
                context.Session.SetString("dropped", "yes");
                return $"{context.Session.IsAvailable}|{context.Session.GetString("Name") ?? "null"}|{context.Session.Keys.Count()}|{context.Session.Id.Length}";
            });
            app.MapGet("/explicit", async (HttpContext context) =>
            {
                var error = await Record.ExceptionAsync(() => context.Session.LoadAsync());
                return error?.GetType().Name ?? "nothing thrown";
            });
        });
        var browser = app.NewBrowser();
        await browser.SendTextAsync(HttpMethod.Post, "/set/Name");
        Assert.Equal("True", await browser.GetTextAsync("/available"));
        var commits = counting.Commits;

        store.FailLoads = true;
        Assert.Equal("False|null|0|0", await browser.GetTextAsync("/unavailable"));
        Assert.Equal(nameof(SessionStoreException), await browser.GetTextAsync("/explicit"));
        Assert.Equal(commits, counting.Commits);

        store.FailLoads = false;
        Assert.Equal("Name", await browser.GetTextAsync("/keys"));
    }

    [Fact]
    public async Task Without_AddSessionCompatibility_HttpContext_Session_is_not_configured_as_without_AddSession()
    {
        using var store = new CountingStore();
        await using var app = await TestApp.StartAsync(app =>
            app.MapGet("/session", (HttpContext context) =>
                Record.Exception(() => context.Session)?.GetType().Name ?? "configured"), store);
        var browser = app.NewBrowser();

        Assert.Equal(nameof(InvalidOperationException), await browser.GetTextAsync("/session"));
    }

    [Fact]
    public async Task Two_requests_that_change_different_keys_at_the_same_time_both_keep_their_changes()
    {
        using var store = new CountingStore();
        var bothLoaded = new Overlap(2);
        await using var app = await StartAsync(store, app =>
            app.MapPost("/slow/{key}", async (string key, HttpContext context) =>
            {
                context.Session.SetString(key, "kept");
                await bothLoaded.ArriveAsync();
                return "set";
            }));
        var browser = app.NewBrowser();
        await browser.SendTextAsync(HttpMethod.Post, "/set/first");

        await Task.WhenAll(
            browser.SendTextAsync(HttpMethod.Post, "/slow/left"),
            browser.SendTextAsync(HttpMethod.Post, "/slow/right"));

        Assert.Equal("first,left,right", string.Join(",", (await browser.GetTextAsync("/keys")).Split(',').Order()));
    }
}

/// <summary>A store that can fail its loads, as a store that is down does; otherwise the store it wraps.</summary>
public sealed class FlakyStore(SessionStore inner) : SessionStore
{
    public bool FailLoads { get; set; }

    public override bool IsShared => inner.IsShared;

    public override Task<StoredSession> LoadAsync(string id, TimeSpan idleTimeout, CancellationToken cancellationToken) =>
        FailLoads ? Task.FromException<StoredSession>(new SessionStoreException("The store is down (test).")) : inner.LoadAsync(id, idleTimeout, cancellationToken);

    public override Task<CommitResult> CommitAsync(string id, SessionChange change, CommitOptions options, CancellationToken cancellationToken) =>
        inner.CommitAsync(id, change, options, cancellationToken);

    public override Task<CommitResult> MoveAsync(string fromId, string toId, SessionChange change, CommitOptions options, CancellationToken cancellationToken) =>
        inner.MoveAsync(fromId, toId, change, options, cancellationToken);

    public override Task<bool> DeleteAsync(string id, CancellationToken cancellationToken) => inner.DeleteAsync(id, cancellationToken);

    public override Task<SessionPage> ListAsync(SessionQuery query, CancellationToken cancellationToken) => inner.ListAsync(query, cancellationToken);
}

/// <summary>Holds each arriving request until <c>count</c> have arrived, so that they truly overlap: every one has
/// loaded the session and made its change before any of them commits.</summary>
public sealed class Overlap(int count)
{
    private readonly TaskCompletionSource all = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int arrived;

    public Task ArriveAsync()
    {
        if (Interlocked.Increment(ref arrived) == count)
        {
            all.SetResult();
        }

        return all.Task.WaitAsync(TimeSpan.FromMinutes(1));
    }
}
