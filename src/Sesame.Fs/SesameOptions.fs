namespace Sesame

open System
open System.Text.Json
open Microsoft.AspNetCore.Http

/// <summary>Which facts about the device a session was signed in from are recorded beside it (none of them is user data).</summary>
[<Flags>]
type DeviceFacts =
    /// Record nothing about the device.
    | None = 0
    /// The request's <c>User-Agent</c> header (at most 256 characters).
    | UserAgent = 1
    /// The client's IP address (<c>HttpContext.Connection.RemoteIpAddress</c>; behind a proxy, <c>UseForwardedHeaders</c> corrects it).
    | IpAddress = 2
    /// Both (the default).
    | All = 3

/// <summary>Sesame's settings, configured with <c>services.AddSesame(fun options -> ...)</c>.</summary>
/// <remarks>
/// Defaults: cookie <c>sesame</c> on path <c>/</c>, no domain, SameSite Lax, HttpOnly, Secure as the request, a
/// browser-session cookie (no Max-Age); no header transport; idle timeout 20 minutes; no absolute timeout; sessions up to 1 MiB;
/// <c>Cache-Control: no-cache, no-store</c> and <c>Vary: Cookie</c> on responses of requests that used the session;
/// no limit on a user's sessions; user agent and IP address recorded at sign-in; shape version 0 with no migrations, a
/// session of a newer shape served read-only, typed reads of values that no longer fit throwing. The store is chosen on the builder
/// <c>AddSesame</c> returns (<c>.AddFileStore(path)</c>, <c>.AddRedisStore(...)</c>); the in-memory store otherwise.
/// </remarks>
[<AllowNullLiteral>]
type SesameOptions() =

    /// <summary>The default cookie name: <c>sesame</c>.</summary>
    static member DefaultCookieName = "sesame"

    /// <summary>The default idle timeout: 20 minutes (as ASP.NET Core Session).</summary>
    static member DefaultIdleTimeout = TimeSpan.FromMinutes 20.0

    /// <summary>The default header of the header transport: <c>X-Session-Token</c>.</summary>
    static member DefaultHeaderName = "X-Session-Token"

    /// <summary>The default size limit of one session: 1 MiB of compact JSON.</summary>
    static member DefaultMaxSessionBytes = 1024 * 1024

    /// <summary>
    /// The session cookie, as ASP.NET Core's own session and authentication options describe theirs: <c>Name</c>
    /// (default <c>sesame</c>), <c>SessionPath</c> (<c>/</c>), <c>Domain</c> (none), <c>SameSite</c> (Lax), <c>HttpOnly</c> (true),
    /// <c>SecurePolicy</c> (as the request), <c>MaxAge</c> (none: a browser-session cookie), <c>IsEssential</c> (false:
    /// the cookie policy's consent applies, as to ASP.NET Core Session's cookie).
    /// </summary>
    member val Cookie =
        CookieBuilder(
            Name = SesameOptions.DefaultCookieName,
            Path = "/",
            SameSite = SameSiteMode.Lax,
            HttpOnly = true,
            SecurePolicy = CookieSecurePolicy.SameAsRequest
        ) with get, set

    /// <summary>Where the session ticket travels: the cookie (the default), the header <see cref="P:Sesame.SesameOptions.HeaderName"/>
    /// (APIs, single-page and mobile apps), or both. Both carry the same ticket, sealed or protected as
    /// <see cref="P:Sesame.SesameOptions.TicketFormat"/> says.</summary>
    member val Transport = SessionTransport.Cookie with get, set

    /// <summary>How the session ticket is protected: sealed with a MAC under a key Data Protection protects (the default,
    /// about 1 µs a ticket), or protected by Data Protection on its own (about 10 µs; what a Sesame from before sealed
    /// tickets reads: choose it during a rolling upgrade from one). Tickets of either format are read whichever is
    /// chosen. See <see cref="T:Sesame.TicketFormat"/>.</summary>
    member val TicketFormat = TicketFormat.Sealed with get, set

    /// <summary>The header that carries the session ticket when <see cref="P:Sesame.SesameOptions.Transport"/> includes
    /// <c>Header</c>. Default <c>X-Session-Token</c>.</summary>
    member val HeaderName = SesameOptions.DefaultHeaderName with get, set

    /// <summary>A session expires after this long without being read or changed. Default 20 minutes. Must be positive
    /// (the app fails at startup otherwise); <c>TimeSpan.MaxValue</c> for sessions that never expire for being idle.</summary>
    member val IdleTimeout = SesameOptions.DefaultIdleTimeout with get, set

    /// <summary>A session ends this long after it was created, however active; <c>null</c> (the default) for no absolute limit
    /// (positive when set: the app fails at startup otherwise).
    /// Carried in the session ticket and applied to the store's expiry, so every store enforces it.</summary>
    member val AbsoluteTimeout = Nullable<TimeSpan>() with get, set

    /// <summary>The largest session tree, in bytes of compact JSON, and separately the largest facts beside it (flash values
    /// above all); a commit past either fails and stores nothing. Default 1 MiB.</summary>
    member val MaxSessionBytes = SesameOptions.DefaultMaxSessionBytes with get, set

    /// <summary>Whether responses of requests that read or changed a session get <c>Cache-Control: no-cache, no-store</c>
    /// and <c>Vary: Cookie</c>, so no cache serves one visitor's session-dependent page to another. Default true.</summary>
    member val NoCacheHeaders = true with get, set

    /// <summary>The most sessions one user may have at once (signed in on several devices); 0 (the default) for no limit.</summary>
    member val MaxSessionsPerUser = 0 with get, set

    /// <summary>What a sign-in does when the user already has <see cref="P:Sesame.SesameOptions.MaxSessionsPerUser"/> sessions:
    /// end the least recently used (the default), or refuse the sign-in.</summary>
    member val UserLimitPolicy = UserLimitPolicy.EndLeastRecent with get, set

    /// <summary>Which device facts a sign-in records beside the session. Default: user agent and IP address.</summary>
    member val DeviceFacts = DeviceFacts.All with get, set

    /// <summary>How typed values are encoded and decoded. Default: web defaults plus F# records, unions and options.</summary>
    member val SerializerOptions: JsonSerializerOptions = Json.createSerializerOptions () with get, set

    /// <summary>The version of what the app keeps in its sessions, stored beside each session's tree: raise it with a
    /// migration into it (<see cref="P:Sesame.SesameOptions.Migrations"/>) when the shape changes. Default 0.</summary>
    member val ShapeVersion = 0 with get, set

    /// <summary>The migrations from older shape versions to <see cref="P:Sesame.SesameOptions.ShapeVersion"/>, added in
    /// order; a session stored at an older version is migrated as it is loaded. Default: none.</summary>
    member val Migrations = SessionMigrations() with get

    /// <summary>What a request does with a session a newer app version wrote (during a rolling deploy). Default read-only.</summary>
    member val NewerShape = NewerShapePolicy.ReadOnly with get, set

    /// <summary>What typed reads give for a value that no longer fits the type read, by path prefix. Default: they throw.</summary>
    member val ReadFallbacks = ReadFallbacks() with get

    /// <summary>Handlers for the sessions' lifecycle: created, rotated, signed in, destroyed, expired, evicted, commit failed
    /// (see <see cref="T:Sesame.SesameEvents"/>). Default: none.</summary>
    member val Events = SesameEvents() with get, set

    /// The idle timeout for a session created at <paramref name="created"/>, cut short by the absolute timeout. The
    /// clock is read only when there is an absolute timeout (a request would otherwise read it for nothing).
    member internal this.IdleTimeoutAt(created: DateTimeOffset, time: TimeProvider) =
        if this.AbsoluteTimeout.HasValue then
            let left = created + this.AbsoluteTimeout.Value - time.GetUtcNow()
            if left < this.IdleTimeout then max left TimeSpan.Zero else this.IdleTimeout
        else
            this.IdleTimeout

    /// The limit a sign-in applies to its user.
    member internal this.UserLimit = { MaxSessions = max 0 this.MaxSessionsPerUser; Policy = this.UserLimitPolicy }
