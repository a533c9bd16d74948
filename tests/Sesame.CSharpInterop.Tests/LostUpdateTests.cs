using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Sesame.CSharpInterop.Tests;

/// <summary>
/// The lost-update case (aspnet/Session#60, dotnet/aspnetcore#12864): 100 overlapping requests of one session, each
/// setting its own key through ISession, over Kestrel with a real HttpClient. The same endpoints run on Sesame
/// (AddSessionCompatibility) and on ASP.NET Core's session (AddDistributedMemoryCache, AddSession, UseSession) in the
/// same run; the counts are written to the test output.
/// </summary>
public sealed class LostUpdateTests(ITestOutputHelper output)
{
    private const int Requests = 100;

    private enum Provider
    {
        Sesame,
        AspNetCore,
    }

    /// <summary>The app, identical but for the session provider. <c>/set/{key}</c> waits at <paramref name="overlap"/> when
    /// given one, and awaits <paramref name="work"/> (a stand-in for a database call) after its change.</summary>
    private static async Task<WebApplication> StartAsync(Provider provider, Overlap? overlap, TimeSpan work)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel().UseUrls("http://127.0.0.1:0");
        if (provider == Provider.Sesame)
        {
            builder.Services.AddSesame().AddSessionCompatibility();
        }
        else
        {
            builder.Services.AddDistributedMemoryCache();
            builder.Services.AddSession();
        }

        var app = builder.Build();
        if (provider == Provider.Sesame)
        {
            app.UseSesame();
        }
        else
        {
            app.UseSession();
        }

        app.MapPost("/start", (HttpContext context) =>
        {
            context.Session.SetString("started", "yes");
            return "started";
        });
        app.MapPost("/set/{key}", async (string key, HttpContext context) =>
        {
            context.Session.SetString(key, "kept");
            if (overlap is not null)
            {
                await overlap.ArriveAsync();
            }

            if (work > TimeSpan.Zero)
            {
                await Task.Delay(work);
            }

            return "set";
        });
        app.MapGet("/count", (HttpContext context) => context.Session.Keys.Count(key => key.StartsWith("key", StringComparison.Ordinal)));
        await app.StartAsync();
        return app;
    }

    public enum Timing
    {
        /// <summary>All requests sent at once, each handled as it comes.</summary>
        AsTheyCome,
        /// <summary>All requests sent at once, each awaiting 20 ms of other work (a database call, say) after its change.</summary>
        AsTheyComeWithWork,
        /// <summary>Every request loads the session and sets its key before any of them commits.</summary>
        FullyOverlapping,
        /// <summary>One after another: nothing overlaps (the count's baseline).</summary>
        OneAfterAnother,
    }

    /// <summary>Runs the 100 requests on a fresh app; gives how many of their keys the session kept.</summary>
    private static async Task<int> KeptAsync(Provider provider, Timing timing)
    {
        var overlap = timing == Timing.FullyOverlapping ? new Overlap(Requests) : null;
        var work = timing == Timing.AsTheyComeWithWork ? TimeSpan.FromMilliseconds(20) : TimeSpan.Zero;
        await using var app = await StartAsync(provider, overlap, work);
        using var client = new HttpClient(new HttpClientHandler { CookieContainer = new CookieContainer(), UseCookies = true })
        {
            BaseAddress = new Uri(app.Urls.First()),
        };
        (await client.PostAsync("/start", null)).EnsureSuccessStatusCode();

        async Task SetAsync(int i)
        {
            using var response = await client.PostAsync($"/set/key{i}", null);
            response.EnsureSuccessStatusCode();
        }

        if (timing == Timing.OneAfterAnother)
        {
            for (var i = 0; i < Requests; i++)
            {
                await SetAsync(i);
            }
        }
        else
        {
            await Task.WhenAll(Enumerable.Range(0, Requests).Select(SetAsync));
        }

        return int.Parse(await client.GetStringAsync("/count"));
    }

    [Theory]
    [InlineData(Timing.FullyOverlapping)]
    [InlineData(Timing.AsTheyCome)]
    [InlineData(Timing.AsTheyComeWithWork)]
    [InlineData(Timing.OneAfterAnother)]
    public async Task A_hundred_requests_each_setting_its_own_key_through_ISession_keep_all_hundred_on_Sesame(Timing timing)
    {
        var sesame = await KeptAsync(Provider.Sesame, timing);
        var aspNetCore = await KeptAsync(Provider.AspNetCore, timing);
        output.WriteLine($"{timing}: Sesame kept {sesame} of {Requests}; ASP.NET Core Session kept {aspNetCore} of {Requests}.");

        Assert.Equal(Requests, sesame);
        switch (timing)
        {
            case Timing.FullyOverlapping:
                // Every request loaded the session before any committed, and ASP.NET Core's session writes the whole
                // session it loaded: the last to commit wins, with its own key only.
                Assert.Equal(1, aspNetCore);
                break;
            case Timing.OneAfterAnother:
                // Nothing overlaps: both keep everything, so the counts above measure the overlap and nothing else.
                Assert.Equal(Requests, aspNetCore);
                break;
        }
    }
}
