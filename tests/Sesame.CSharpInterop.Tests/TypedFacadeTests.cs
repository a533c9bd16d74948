using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Sesame.CSharpInterop.Tests;

/// <summary>The typed facade: Get/TryGet/Set/Remove/Increment/Clear/Replace/GetNode with text paths.</summary>
public sealed class TypedFacadeTests
{
    public sealed record CartItem(string Sku, int Qty);

    public sealed record Profile(string FirstName, string LastName);

    /// <summary>Runs <paramref name="body"/> in one POST to a fresh app and gives what it returns and the session after.</summary>
    private static async Task<(string Result, string Session)> InOneRequestAsync(
        Func<SesameSession, string> body, Action<SesameOptions>? configure = null, CountingStore? store = null)
    {
        await using var app = await TestApp.StartAsync(app =>
        {
            app.MapPost("/run", (SesameSession session) => body(session));
            app.MapGet("/session", (SesameSession session) => session.ToJsonString());
        }, store ?? new CountingStore(), configure);
        var browser = app.NewBrowser();
        var result = await browser.SendTextAsync(HttpMethod.Post, "/run");
        return (result, await browser.GetTextAsync("/session"));
    }

    [Fact]
    public async Task Set_creates_what_is_missing_and_appends_at_an_arrays_length_and_Get_reads_it_back()
    {
        var (result, session) = await InOneRequestAsync(session =>
        {
            session.Set("cart.items[0]", new CartItem("apple", 2));
            session.Set("cart.items[1]", new CartItem("pear", 1));
            session.Set("cart.items[1].qty", 3);
            var item = session.Get<CartItem>("cart.items[1]");
            var qty = session.Get<int>("cart.items[0].qty");
            var missing = session.Get<CartItem>("cart.items[2]");
            var missingNumber = session.Get<int>("nothing.here");
            return $"{item} {qty} {missing is null} {missingNumber}";
        });

        Assert.Equal("CartItem { Sku = pear, Qty = 3 } 2 True 0", result);
        Assert.Equal("""{"cart":{"items":[{"sku":"apple","qty":2},{"sku":"pear","qty":3}]}}""", session);
    }

    [Fact]
    public async Task Keys_from_user_input_are_one_key_through_a_Path_built_from_data()
    {
        // Each would reshape the session, or be refused, as path text.
        string[] hostile = ["a.b", "a[0]", "[\"q", "", "x]", "\"quoted\""];
        var (result, session) = await InOneRequestAsync(session =>
        {
            foreach (var key in hostile)
            {
                session.Set(SessionPath.Root.Key("prefs").Key(key), key.Length);
            }

            session.Increment(SessionPath.Root.Key("votes").Key("a.b"));
            var appended = session.Append(SessionPath.OfKeys("log", "a[0]"), "first");
            session.Remove(SessionPath.Root.Key("prefs").Key("x]"));
            var read = session.Get<int>(SessionPath.Root.Key("prefs").Key("[\"q"));
            session.Set(SessionPath.Root.Key("list").Index(0), "zero");
            return $"{read} {appended} {session.Get<string>(SessionPath.Root.Key("list").Index(0))}";
        });

        Assert.Equal("3 1 zero", result);
        Assert.Equal(
            """{"prefs":{"a.b":3,"a[0]":4,"[\"q":3,"":0,"\"quoted\"":8},"votes":{"a.b":1},"log":{"a[0]":["first"]},"list":["zero"]}""",
            session);
    }

    [Fact]
    public async Task Append_adds_at_the_end_and_concurrent_Adds_are_appends()
    {
        var (result, session) = await InOneRequestAsync(session =>
        {
            var first = session.Append("cart.items", new CartItem("apple", 2));
            var second = session.Append("cart.items", new CartItem("pear", 1));
            var pending = string.Join("; ", session.Handle.PendingUpdates.Select(u => u.ToString()));
            var notArray = Assert.Throws<PathConflictException>(() => session.Append("cart.items[0].sku", 1));
            return $"{first} {second} | {pending} | {notArray.Message}";
        });

        Assert.Equal(
            """1 2 | append {"sku":"apple","qty":2} to cart.items; append {"sku":"pear","qty":1} to cart.items | Cannot append to 'cart.items[0].sku': it holds a string, not an array.""",
            result);
        Assert.Equal("""{"cart":{"items":[{"sku":"apple","qty":2},{"sku":"pear","qty":1}]}}""", session);
    }

    [Fact]
    public async Task A_set_that_crosses_a_value_of_the_wrong_kind_throws_and_records_nothing()
    {
        var (result, session) = await InOneRequestAsync(session =>
        {
            session.Set("name", "Ada");
            session.Set("list", new[] { 1 });
            var throughString = Assert.Throws<PathConflictException>(() => session.Set("name.first", "A"));
            var pastTheEnd = Assert.Throws<PathConflictException>(() => session.Set("list[5]", 6));
            var badText = Assert.Throws<ArgumentException>(() => session.Set("list..x", 1));
            return string.Join("\n", throughString.Message, pastTheEnd.Message, badText.Message.Split(" (Parameter")[0], session.Handle.PendingUpdates.Count);
        });

        Assert.Equal(
            """
            Cannot follow 'name.first': 'name' is a string, not an object with key "first".
            Cannot follow 'list[5]': 'list' is an array of 1 items, so index 5 is past the end.
            Expected a key at position 5 of "list..x".
            2
            """.ReplaceLineEndings("\n"),
            result);
        Assert.Equal("""{"name":"Ada","list":[1]}""", session);
    }

    [Fact]
    public async Task TryGet_is_false_for_missing_and_null_values_and_a_value_of_the_wrong_type_is_an_error_naming_the_path()
    {
        var (result, _) = await InOneRequestAsync(session =>
        {
            session.Set<string?>("nickname", null);
            session.Set("name", "Ada");
            var foundNull = session.TryGet<string>("nickname", out _);
            var foundMissing = session.TryGet<string>("surname", out _);
            var foundName = session.TryGet<string>("name", out var name);
            var wrongType = Assert.Throws<JsonException>(() => session.Get<int>("name"));
            return $"{foundNull} {foundMissing} {foundName}:{name} | {wrongType.Message.Split(':')[0]}";
        });

        Assert.Equal("False False True:Ada | The session value at 'name' cannot be read as Int32", result);
    }

    [Fact]
    public async Task Increment_adds_exactly_returns_the_new_value_and_is_committed_as_an_increment()
    {
        using var store = new CountingStore();
        var (result, session) = await InOneRequestAsync(session =>
        {
            session.Set("price", 1.10m);
            var visits = session.Increment("visits");
            visits = session.Increment("visits");
            var price = session.Increment("price", 0.10m);
            var half = session.Increment("half", 0.5m);
            var notANumber = Assert.Throws<PathConflictException>(() => session.Increment("price.cents"));
            return string.Create(CultureInfo.InvariantCulture, $"{visits} {price} {half} {notANumber.GetType().Name}");
        }, store: store);

        Assert.Equal("2 1.20 0.5 PathConflictException", result);
        Assert.Equal("""{"price":1.20,"visits":2,"half":0.5}""", session);
        Assert.Equal(["set price = 1.20", "increment visits by 2", "increment half by 0.5"], store.LastCommit);
    }

    [Fact]
    public async Task Remove_says_whether_there_was_a_value_and_shifts_array_items()
    {
        var (result, session) = await InOneRequestAsync(session =>
        {
            session.Set("list", new[] { "a", "b", "c" });
            session.Set("user", new { name = "Ada", age = 36 });
            var results = new[] { session.Remove("list[0]"), session.Remove("user.age"), session.Remove("user.age"), session.Remove("absent.path") };
            return string.Join(",", results);
        });

        Assert.Equal("True,True,False,False", result);
        Assert.Equal("""{"list":["b","c"],"user":{"name":"Ada"}}""", session);
    }

    [Fact]
    public async Task Replace_and_Clear_change_the_whole_session()
    {
        var (result, session) = await InOneRequestAsync(session =>
        {
            session.Set("old", 1);
            session.Replace(new { fresh = true, profile = new Profile("Ada", "Lovelace") });
            var replaced = session.ToJsonString();
            var notAnObject = Assert.Throws<ArgumentException>(() => session.Replace(new[] { 1, 2 }));
            session.Clear();
            var cleared = session.ToJsonString();
            session.Set("after", "clear");
            return $"{replaced} {cleared} {notAnObject.ParamName}";
        });

        Assert.Equal("""{"fresh":true,"profile":{"firstName":"Ada","lastName":"Lovelace"}} {} value""", result);
        Assert.Equal("""{"after":"clear"}""", session);
    }

    [Fact]
    public async Task GetNode_gives_a_copy_that_does_not_change_the_session()
    {
        var (result, session) = await InOneRequestAsync(session =>
        {
            session.Set("user", new { name = "Ada", tags = new[] { "math" } });
            var node = session.GetNode("user")!;
            node["name"] = "changed";
            var tags = session.GetNode("user.tags")!.AsArray();
            return $"{node.ToJsonString()} {tags.Count} {session.GetNode("nobody") is null}";
        });

        Assert.Equal("""{"name":"changed","tags":["math"]} 1 True""", result);
        Assert.Equal("""{"user":{"name":"Ada","tags":["math"]}}""", session);
    }

    [Fact]
    public async Task The_serializer_options_in_SesameOptions_shape_what_both_facades_store_and_read()
    {
        var (result, session) = await InOneRequestAsync(
            session =>
            {
                session.Set("typed", new Profile("Ada", "Lovelace"));
                session.Set("count", 5);
                dynamic s = session.Dynamic;
                s.dynamic = new Profile("Grace", "Hopper");
                s.other = 7L;
                var back = session.Get<Profile>("dynamic");
                var count = session.Get<int>("count");
                return $"{back} {count}";
            },
            options => options.SerializerOptions = new JsonSerializerOptions(JsonSerializerDefaults.Web)
            {
                PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
                NumberHandling = JsonNumberHandling.WriteAsString | JsonNumberHandling.AllowReadingFromString,
            });

        Assert.Equal("Profile { FirstName = Grace, LastName = Hopper } 5", result);
        Assert.Equal(
            """{"typed":{"first_name":"Ada","last_name":"Lovelace"},"count":"5","dynamic":{"first_name":"Grace","last_name":"Hopper"},"other":"7"}""",
            session);
    }

    [Fact]
    public async Task A_JsonNode_or_a_Json_tree_is_stored_as_it_is()
    {
        var (_, session) = await InOneRequestAsync(session =>
        {
            session.Set("node", JsonNode.Parse("""{"n":1.50,"big":123456789012345678901234567890}"""));
            session.Set("tree", JsonModule.parse("""[1e400,"x"]"""));
            return "ok";
        });

        Assert.Equal("""{"node":{"n":1.50,"big":123456789012345678901234567890},"tree":[1e400,"x"]}""", session);
    }
}
