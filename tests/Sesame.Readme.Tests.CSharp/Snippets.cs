// The README's C# code blocks, compiled. Each block is the code between `// readme: <name>` and `// readme end`
// (tests/Sesame.Readme.Tests/ReadmeTests.fs checks every block appears in a snippet verbatim); the code around a
// snippet only gives a fragment what it needs (a method with the values it names, the usings a web project has).
// readme: migrations
using JsonObject = System.Text.Json.Nodes.JsonObject; // Sesame has a JsonObject of its own (the immutable tree's)

// readme end
using System.Security.Claims;
using System.Text.Json.Nodes;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using Sesame;
using StackExchange.Redis;

// Not under namespace Sesame: names in an enclosing namespace win over the usings, as they would not in an app.
namespace ReadmeSnippets;

/// <summary>A cart line, as the README's C# examples keep it.</summary>
public sealed record CartItem(string Sku, int Qty);

/// <summary>A cart, as the README's C# examples keep it.</summary>
public sealed record Cart(List<CartItem> Items)
{
    /// <summary>The empty cart.</summary>
    public static readonly Cart Empty = new([]);
}

/// <summary>A flash message, as the README's flash example keeps it.</summary>
public sealed record Notice(string Text, string Kind);

/// <summary>What the lifecycle-events example counts with.</summary>
public sealed class EvictionMetrics
{
    /// <summary>Counts an eviction.</summary>
    public void Evicted(SessionEndReason reason) => _ = reason;
}

/// <summary>The README's C# blocks, each in a method that gives it what it uses.</summary>
public static class Snippets
{
    /// <summary>README: C#.</summary>
    public static void Minimal(WebApplicationBuilder builder)
    {
        // readme: csharp
        builder.Services.AddSesame().AddMemoryStore(); // or .AddFileStore("sessions.db")
        var app = builder.Build();
        app.UseSesame();

        // node-sesame's examples, dynamic
        app.MapGet("/", async (HttpContext context) =>
        {
            dynamic s = await context.GetDynamicSesameAsync();
            s.times = (s.times ?? 0) + 1;                 // a missing member reads as null
            return $"{s.times} times!";
        });
        app.MapGet("/nested", (SesameSession session) =>  // SesameSession binds as a parameter
        {
            dynamic s = session.Dynamic;
            s.foo ??= new { bar = new { baz = 1 } };      // objects, records, dictionaries, lists, JsonNode become trees
            s.foo.bar.baz *= 2;                           // ONE update: set foo.bar.baz
            return $"baz = {s.foo.bar.baz}";
        });

        // typed, with text paths
        app.MapPost("/cart/items", (CartItem item, SesameSession session) =>
        {
            var items = session.Get<List<CartItem>>("cart.items") ?? [];
            var line = items.FindIndex(i => i.Sku == item.Sku);
            if (line >= 0) session.Increment($"cart.items[{line}].qty", item.Qty); // concurrent adds add up
            else session.Append("cart.items", item);                                // concurrent new lines all survive
            return session.Get<Cart>("cart");
        });
        // readme end
    }

    /// <summary>README: moving from ASP.NET Core's session (before).</summary>
    public static void AspNetSession(WebApplicationBuilder builder)
    {
        // readme: aspnet-session-before
        builder.Services.AddDistributedMemoryCache();        // or AddStackExchangeRedisCache(...)
        builder.Services.AddSession(options => options.IdleTimeout = TimeSpan.FromMinutes(30));
        // readme end
    }

    /// <summary>README: moving from ASP.NET Core's session (after).</summary>
    public static void Compatibility(WebApplicationBuilder builder)
    {
        // readme: aspnet-session-after
        builder.Services.AddSesame(options => options.IdleTimeout = TimeSpan.FromMinutes(30))
            .AddSessionCompatibility();                      // HttpContext.Session is now Sesame's
            // .AddFileStore("sessions.db") or .AddRedisStore(...) for sessions that outlive the process
        // readme end
    }

    /// <summary>README: flash messages.</summary>
    public static Notice? Flash(SesameSession session)
    {
        // readme: flash
        session.Flash("notice", new Notice("Saved.", "info"));     // any type Set<T> takes
        var notice = session.GetFlash<Notice>("notice");           // TryGetFlash, GetFlashKeys, KeepFlash, Reflash
        // readme end
        return notice;
    }

    /// <summary>README: the session in a header.</summary>
    public static void Header(WebApplicationBuilder builder)
    {
        // readme: header-transport
        builder.Services.AddSesame(options =>
        {
            options.Transport = SessionTransport.Header;           // or CookieAndHeader
            options.HeaderName = "X-Session-Token";                // the default
        });
        // readme end
    }

    /// <summary>README: changing what you keep in sessions.</summary>
    public static void Migrations(WebApplicationBuilder builder)
    {
        // readme: migrations
        builder.Services.AddSesame(options =>
        {
            options.ShapeVersion = 2;
            options.AddMigration(0, _ => { });
            options.AddMigration(1, session =>
            {
                if (session["cart"] is not JsonObject cart) return;
                var lines = new JsonArray();
                foreach (var item in cart["items"]!.AsArray())
                    lines.Add(new JsonObject { ["sku"] = item!.GetValue<string>(), ["qty"] = 1 });
                cart["lines"] = lines;
                cart["totalCents"] = (long)(cart["total"]!.GetValue<decimal>() * 100);
                cart.Remove("items");
                cart.Remove("total");
            });
        });
        // readme end
    }

    /// <summary>README: read fallbacks.</summary>
    public static void Fallbacks(SesameSession session)
    {
        // readme: read-fallbacks
        var missing = session.Get<Cart>("cart", ReadFallback.Missing);           // null
        var cart = session.GetOrDefault("cart", Cart.Empty);                    // the default
        if (session.TryGet<Cart>("cart", ReadFallback.Remove, out var found)) { }
        // readme end
        _ = (missing, cart, found);
    }

    /// <summary>README: the Redis store.</summary>
    public static async Task Redis(WebApplicationBuilder builder)
    {
        // readme: redis-store
        var redis = await ConnectionMultiplexer.ConnectAsync("localhost:6379,abortConnect=false");
        builder.Services.AddSesame(o => o.IdleTimeout = TimeSpan.FromHours(1))
            .AddRedisStore(redis, "my-app", o => o.KeyPrefix = "shop:");
        // readme end
    }

    /// <summary>README: the PostgreSQL store.</summary>
    public static void Postgres(WebApplicationBuilder builder)
    {
        // readme: postgres-store
        builder.Services.AddSesame(o => o.IdleTimeout = TimeSpan.FromHours(1))
            .AddPostgresStore(builder.Configuration.GetConnectionString("Sessions")!, o => o.Schema = "sessions");
        // readme end
    }

    static IResult AddToCart() => Results.Ok();

    /// <summary>README: rate limiting.</summary>
    public static void RateLimiting(WebApplicationBuilder builder)
    {
        // readme: rate-limiting
        builder.Services.AddRateLimiter(limiter =>
        {
            limiter.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            // Per client address: a missing or forged cookie costs nothing, so do not key on the cookie.
            limiter.AddPolicy("sessions", context => RateLimitPartition.GetFixedWindowLimiter(
                context.Connection.RemoteIpAddress?.ToString() ?? "unknown",
                _ => new FixedWindowRateLimiterOptions { PermitLimit = 60, Window = TimeSpan.FromMinutes(1) }));
        });
        var app = builder.Build();
        app.UseRateLimiter();
        app.UseSesame();
        app.MapPost("/cart/items", AddToCart).RequireRateLimiting("sessions");
        // readme end
    }

    /// <summary>README: telemetry.</summary>
    public static void Telemetry(WebApplicationBuilder builder)
    {
        // readme: telemetry
        builder.Services.AddOpenTelemetry()
            .WithMetrics(metrics => metrics.AddMeter(SesameTelemetry.MeterName).AddOtlpExporter())
            // ASP.NET Core's request spans are the parents of Sesame's: record them too (or add its instrumentation).
            .WithTracing(tracing => tracing.AddSource("Microsoft.AspNetCore", SesameTelemetry.ActivitySourceName).AddOtlpExporter());
        // readme end
    }

    /// <summary>README: lifecycle events.</summary>
    public static void Events(WebApplicationBuilder builder, ILogger logger, EvictionMetrics metrics)
    {
        // readme: lifecycle-events
        builder.Services.AddSesame(options =>
        {
            options.Events.OnCreated = ctx => { logger.LogInformation("Session {Handle} created", ctx.Handle); return Task.CompletedTask; };
            options.Events.OnEvicted = ctx => { metrics.Evicted(ctx.Reason); return Task.CompletedTask; };
        });
        // readme end
    }

    /// <summary>README: login, logout and your devices in the samples.</summary>
    public static async Task SampleAccount(SesameSession session, HttpContext context, string user, string handle)
    {
        // readme: sample-account
        // C#: samples/CSharp/AccountEndpoints.cs
        await session.SignInAsync(user);                  // SignInResult.SignedIn or LimitReached
        await session.SignOutAsync();
        var sessions = await context.GetUserSessionsAsync(user);
        await context.EndUserSessionAsync(user, handle);
        await context.EndOtherSessionsAsync();
        // readme end
        _ = sessions;
    }

    /// <summary>README: signing in with ASP.NET Core authentication.</summary>
    public static void Authentication(WebApplicationBuilder builder)
    {
        // readme: authentication
        builder.Services.AddSesame(options =>
            {
                options.IdleTimeout = TimeSpan.FromHours(8);   // a sign-in now lasts as long as its session
                options.Cookie.MaxAge = TimeSpan.FromDays(14); // for persistent ("remember me") sign-ins
            })
            .AddMemoryStore()
            .BindToAuthentication(); // or .BindToAuthentication(o => o.UserIdClaimType = "sub")
        builder.Services.AddAuthentication(CookieAuthenticationDefaults.AuthenticationScheme).AddCookie();
        var app = builder.Build();
        app.UseSesame();            // before authentication: validating the auth cookie reads the session
        app.UseAuthentication();

        app.MapPost("/login", async (HttpContext context) =>
        {
            // ... check the password, then:
            var user = new ClaimsPrincipal(new ClaimsIdentity([new Claim(ClaimTypes.NameIdentifier, "alice")], "password"));
            await context.SignInAsync(user);   // the session moves to a new id, bound to "alice"
        });
        app.MapPost("/logout", (HttpContext context) => context.SignOutAsync()); // the session is destroyed
        app.MapPost("/password-changed", (HttpContext context, ClaimsPrincipal user) => // "sign out everywhere"
            context.EndAllUserSessionsAsync(user.FindFirstValue(ClaimTypes.NameIdentifier)!)); // answers how many ended
        // readme end
    }
}
