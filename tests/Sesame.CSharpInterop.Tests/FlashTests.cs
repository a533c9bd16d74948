using Microsoft.AspNetCore.Builder;

namespace Sesame.CSharpInterop.Tests;

/// <summary>Flash messages from C#: <c>session.Flash(key, value)</c> for the next request only.</summary>
public sealed class FlashTests
{
    private sealed record Notice(string Text, string Level);

    private static Task<TestApp> StartAsync(CountingStore store) =>
        TestApp.StartAsync(app =>
        {
            app.MapPost("/save", (SesameSession session) =>
            {
                session.Set("saved", true);
                session.Flash("notice", new Notice("Saved", "info"));
                return "flashed";
            });
            app.MapGet("/page", (SesameSession session) =>
                session.GetFlash<Notice>("notice") is { } notice ? $"{notice.Level}: {notice.Text}" : "(none)");
            app.MapGet("/page-and-keep", (SesameSession session) =>
            {
                var shown = session.TryGetFlash<Notice>("notice", out var notice) ? notice.Text : "(none)";
                session.KeepFlash("notice");
                return shown;
            });
            app.MapGet("/reflash", (SesameSession session) =>
            {
                var keys = session.GetFlashKeys();
                session.Reflash();
                return string.Join(",", keys);
            });
            app.MapGet("/session", (SesameSession session) => session.ToJsonString());
        }, store);

    [Fact]
    public async Task A_flashed_value_is_read_by_the_next_request_only_typed_and_never_part_of_the_sessions_data()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store);
        var browser = app.NewBrowser();

        await browser.SendTextAsync(HttpMethod.Post, "/save");

        Assert.Equal("""{"saved":true}""", await browser.GetTextAsync("/session"));
        Assert.Equal("info: Saved", await browser.GetTextAsync("/page"));
        Assert.Equal("(none)", await browser.GetTextAsync("/page"));
    }

    [Fact]
    public async Task KeepFlash_and_Reflash_carry_a_value_one_request_further()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store);
        var browser = app.NewBrowser();
        await browser.SendTextAsync(HttpMethod.Post, "/save");

        Assert.Equal("Saved", await browser.GetTextAsync("/page-and-keep"));
        Assert.Equal("notice", await browser.GetTextAsync("/reflash"));
        Assert.Equal("info: Saved", await browser.GetTextAsync("/page"));
        Assert.Equal("(none)", await browser.GetTextAsync("/page"));
    }
}
