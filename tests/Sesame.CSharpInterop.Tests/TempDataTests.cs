using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.DependencyInjection;

namespace Sesame.CSharpInterop.Tests;

/// <summary>An MVC controller as apps write them: TempData for the message of a redirect-after-post.</summary>
public sealed class MessagesController : Controller
{
    [HttpPost("/messages")]
    public IActionResult Post([FromForm] string text)
    {
        TempData["Message"] = $"Saved: {text}";
        return RedirectToAction(nameof(Show));
    }

    [HttpGet("/messages")]
    public IActionResult Show() => Content(TempData["Message"] as string ?? "(no message)");

    [HttpGet("/messages/peek")]
    public IActionResult Peek() => Content(TempData.Peek("Message") as string ?? "(no message)");
}

/// <summary>MVC's session-based TempData (<c>AddSessionStateTempDataProvider</c>) on Sesame's ISession, unchanged.</summary>
public sealed class TempDataTests
{
    private static Task<TestApp> StartAsync(CountingStore store) =>
        TestApp.StartAsync(
            app =>
            {
                app.MapControllers();
                app.MapGet("/session", (SesameSession session) => session.ToJsonString());
            },
            store,
            services: services => services
                .AddControllersWithViews()
                .AddApplicationPart(typeof(MessagesController).Assembly)
                .AddSessionStateTempDataProvider(),
            configureStore: sesame => sesame.AddSessionCompatibility());

    private static async Task<HttpResponseMessage> PostMessageAsync(HttpClient browser, string text)
    {
        var response = await browser.PostAsync("/messages", new FormUrlEncodedContent([new("text", text)]));
        Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
        return response;
    }

    [Fact]
    public async Task A_redirect_after_post_shows_its_TempData_message_once()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store);
        var browser = app.NewBrowser();

        using var posted = await PostMessageAsync(browser, "hello");

        Assert.Equal("/messages", posted.Headers.Location?.OriginalString);
        Assert.Equal("Saved: hello", await browser.GetTextAsync("/messages"));
        Assert.Equal("(no message)", await browser.GetTextAsync("/messages"));
    }

    [Fact]
    public async Task TempData_is_one_readable_key_of_the_session_beside_the_apps_own_and_Peek_keeps_it()
    {
        using var store = new CountingStore();
        await using var app = await StartAsync(store);
        var browser = app.NewBrowser();

        using var posted = await PostMessageAsync(browser, "hello");

        Assert.Equal("""{"__ControllerTempData":"{\"Message\":\"Saved: hello\"}"}""", await browser.GetTextAsync("/session"));
        Assert.Equal("Saved: hello", await browser.GetTextAsync("/messages/peek"));
        Assert.Equal("Saved: hello", await browser.GetTextAsync("/messages"));
        Assert.Equal("{}", await browser.GetTextAsync("/session"));
    }
}
