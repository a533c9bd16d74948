namespace Sesame

open System
open System.Text.Json
open Microsoft.AspNetCore.Http

/// <summary>Sesame's settings, configured with <c>services.AddSesame(fun options -> ...)</c>.</summary>
/// <remarks>
/// Defaults: cookie <c>sesame</c> on path <c>/</c>, no domain, SameSite Lax, HttpOnly,
/// Secure as the request; a browser-session cookie (no Max-Age); idle timeout 20 minutes; no
/// absolute timeout; sessions up to 1 MiB; <c>Cache-Control: no-cache, no-store</c> and
/// <c>Vary: Cookie</c> on responses of requests that used the session; the in-memory store.
/// </remarks>
[<AllowNullLiteral>]
type SesameOptions() =

    /// <summary>The default cookie name: <c>sesame</c>.</summary>
    static member DefaultCookieName = "sesame"

    /// <summary>The default idle timeout: 20 minutes (as ASP.NET Core Session).</summary>
    static member DefaultIdleTimeout = TimeSpan.FromMinutes 20.0

    /// <summary>The default size limit of one session: 1 MiB of compact JSON.</summary>
    static member DefaultMaxSessionBytes = 1024 * 1024

    /// <summary>The cookie's name. Default <c>sesame</c>.</summary>
    member val CookieName = SesameOptions.DefaultCookieName with get, set

    /// <summary>The cookie's path. Default <c>/</c>.</summary>
    member val CookiePath = "/" with get, set

    /// <summary>The cookie's domain. Default none (the request's host).</summary>
    member val CookieDomain: string = null with get, set

    /// <summary>The cookie's SameSite mode. Default Lax.</summary>
    member val SameSite = SameSiteMode.Lax with get, set

    /// <summary>Whether the cookie is hidden from scripts. Default true.</summary>
    member val HttpOnly = true with get, set

    /// <summary>When the cookie is marked Secure. Default: when the request is HTTPS.</summary>
    member val SecurePolicy = CookieSecurePolicy.SameAsRequest with get, set

    /// <summary>The cookie's own lifetime; <c>null</c> (the default) makes a browser-session cookie.</summary>
    member val CookieMaxAge = Nullable<TimeSpan>() with get, set

    /// <summary>A session expires after this long without being read or changed. Default 20 minutes.</summary>
    member val IdleTimeout = SesameOptions.DefaultIdleTimeout with get, set

    /// <summary>A session ends this long after it was created, however active; <c>null</c> (the default) for no absolute limit.
    /// Carried in the protected cookie and applied to the store's expiry, so every store enforces it.</summary>
    member val AbsoluteTimeout = Nullable<TimeSpan>() with get, set

    /// <summary>The largest session, in bytes of compact JSON; a commit past it fails and stores nothing. Default 1 MiB.</summary>
    member val MaxSessionBytes = SesameOptions.DefaultMaxSessionBytes with get, set

    /// <summary>Whether responses of requests that read or changed a session get <c>Cache-Control: no-cache, no-store</c>
    /// and <c>Vary: Cookie</c>, so no cache serves one visitor's session-dependent page to another. Default true.</summary>
    member val NoCacheHeaders = true with get, set

    /// <summary>Where sessions live. Default <c>null</c>: the store <see cref="P:Sesame.SesameOptions.StoreFactory"/> makes, else an in-memory <see cref="T:Sesame.MemoryStore"/>.</summary>
    member val Store: ISessionStore = null with get, set

    /// <summary>Makes the store from the app's services (for a store that wants a logger or other services);
    /// used when <see cref="P:Sesame.SesameOptions.Store"/> is <c>null</c>. Default <c>null</c>.</summary>
    member val StoreFactory: Func<IServiceProvider, ISessionStore> = null with get, set

    /// <summary>How typed values are encoded and decoded. Default: web defaults plus F# records, unions and options.</summary>
    member val SerializerOptions: JsonSerializerOptions = Json.createSerializerOptions () with get, set

    /// <summary>The idle timeout for a session created at <paramref name="created"/>, cut short by the absolute timeout.</summary>
    member this.IdleTimeoutAt(created: DateTimeOffset, now: DateTimeOffset) =
        if this.AbsoluteTimeout.HasValue then
            let left = created + this.AbsoluteTimeout.Value - now
            if left < this.IdleTimeout then max left TimeSpan.Zero else this.IdleTimeout
        else
            this.IdleTimeout
