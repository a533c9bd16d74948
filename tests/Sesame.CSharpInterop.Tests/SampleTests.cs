using System.Net;
using System.Net.Http.Json;
using Sesame.Samples.CSharp;

namespace Sesame.CSharpInterop.Tests;

/// <summary>The C# sample's promises, as browsers with cookie jars see them over Kestrel.</summary>
public sealed class SampleTests
{
    private static Task<TestApp> StartSampleAsync(CountingStore store) =>
        TestApp.StartAsync(app => app.MapSesameSamples(), store, kestrel: true);

    [Fact]
    public async Task The_counter_answers_1_times_2_times_3_times_to_one_cookie_jar_and_starts_over_for_another()
    {
        using var store = new CountingStore();
        await using var app = await StartSampleAsync(store);
        using var browser = app.NewBrowser();

        foreach (var expected in new[] { "1 times!", "2 times!", "3 times!" })
        {
            Assert.Equal(expected, await browser.GetTextAsync("/"));
        }

        using var other = app.NewBrowser();
        Assert.Equal("1 times!", await other.GetTextAsync("/"));
    }

    [Fact]
    public async Task The_nested_example_doubles_foo_bar_baz_2_4_8_recording_only_the_deep_change()
    {
        using var store = new CountingStore();
        await using var app = await StartSampleAsync(store);
        using var browser = app.NewBrowser();

        Assert.Equal("1 times! baz = 2", await browser.GetTextAsync("/nested"));
        Assert.Equal(["set times = 1", "set foo = {\"bar\":{\"baz\":2}}"], store.LastCommit);
        Assert.Equal("2 times! baz = 4", await browser.GetTextAsync("/nested"));
        Assert.Equal(["set times = 2", "set foo.bar.baz = 4"], store.LastCommit);
        Assert.Equal("3 times! baz = 8", await browser.GetTextAsync("/nested"));

        Assert.Equal("""{"times":3,"foo":{"bar":{"baz":8}}}""", await browser.GetTextAsync("/session"));
        Assert.Equal(3, store.Commits);
    }

    [Fact]
    public async Task Fifty_concurrent_adds_of_different_items_to_one_cart_keep_all_fifty_lines()
    {
        using var store = new CountingStore();
        await using var app = await StartSampleAsync(store);
        using var browser = app.NewBrowser();
        (await browser.PostAsJsonAsync("/cart/items", new CartItem("first", 1))).EnsureSuccessStatusCode();
        // Each request's commit waits, so that the others load the cart before it lands.
        store.CommitDelay = TimeSpan.FromMilliseconds(50);

        var adds = await Task.WhenAll(Enumerable.Range(0, 50).Select(i => browser.PostAsJsonAsync("/cart/items", new CartItem($"sku{i}", 1))));

        Assert.All(adds, add => add.EnsureSuccessStatusCode());
        var cart = await browser.GetFromJsonAsync<Cart>("/cart");
        Assert.Equal(51, cart!.Items.Count);
        Assert.Equal(Enumerable.Range(0, 50).Select(i => $"sku{i}").Order(), cart.Items.Skip(1).Select(item => item.Sku).Order());
    }

    [Fact]
    public async Task The_cart_adds_increments_lists_and_removes_items_with_the_typed_facade()
    {
        using var store = new CountingStore();
        await using var app = await StartSampleAsync(store);
        using var browser = app.NewBrowser();

        (await browser.PostAsJsonAsync("/cart/items", new CartItem("apple", 2))).EnsureSuccessStatusCode();
        var added = await browser.PostAsJsonAsync("/cart/items", new CartItem("apple", 3));
        // The answer is the cart as the change leaves it.
        Assert.Equal("""{"items":[{"sku":"apple","qty":5}],"count":5}""", await added.EnsureSuccessStatusCode().Content.ReadAsStringAsync());
        Assert.Equal(["increment cart.items[0].qty by 3"], store.LastCommit);
        var another = await browser.PostAsJsonAsync("/cart/items", new CartItem("pear", 1));
        Assert.Equal("""{"items":[{"sku":"apple","qty":5},{"sku":"pear","qty":1}],"count":6}""", await another.EnsureSuccessStatusCode().Content.ReadAsStringAsync());
        Assert.Equal("""{"items":[{"sku":"apple","qty":5},{"sku":"pear","qty":1}],"count":6}""", await browser.GetTextAsync("/cart"));

        Assert.Equal(HttpStatusCode.NoContent, (await browser.DeleteAsync("/cart/items/apple")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await browser.DeleteAsync("/cart/items/plum")).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await browser.PostAsJsonAsync("/cart/items", new CartItem("", 0))).StatusCode);
        Assert.Equal("""{"items":[{"sku":"pear","qty":1}],"count":1}""", await browser.GetTextAsync("/cart"));

        Assert.Equal(HttpStatusCode.NoContent, (await browser.DeleteAsync("/cart")).StatusCode);
        Assert.Equal("""{"items":[],"count":0}""", await browser.GetTextAsync("/cart"));
        Assert.Equal("{}", await browser.GetTextAsync("/session"));
    }

    [Fact]
    public void The_sample_reads_its_store_choice_and_refuses_an_unknown_one()
    {
        Assert.True(StoreChoice.TryParse(null, out var memory, out _));
        Assert.Null(memory.FilePath);
        Assert.True(StoreChoice.TryParse("file:/tmp/s.db", out var file, out _));
        Assert.Equal("/tmp/s.db", file.FilePath);
        Assert.False(StoreChoice.TryParse("floppy:/a", out _, out var error));
        Assert.Contains("floppy", error);
    }
}
