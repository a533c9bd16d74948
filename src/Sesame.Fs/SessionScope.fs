namespace Sesame

open System
open System.Threading
open System.Threading.Tasks
open System.Runtime.ExceptionServices
open Microsoft.AspNetCore.DataProtection
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Logging
open Microsoft.Extensions.Options

/// What every request needs from the app, resolved once: options, store, cookie protection, logger.
[<Sealed; AllowNullLiteral>]
type internal SesameRuntime
    (options: SesameOptions, store: SessionStore, cookie: SessionCookie, time: TimeProvider, logger: ILogger, compatibility: SessionCompatibilityOptions) =

    /// The options in force.
    member _.Options = options
    /// The store sessions live in.
    member _.Store = store
    member internal _.Cookie = cookie
    /// Made once, so a request's session handle needs no closure of its own (an F# function kept here was wrapped in a
    /// new closure at every read).
    member val internal ReadTicket = Func<HttpRequest, SessionTicket voption>(fun request -> cookie.TryRead request)
    /// Where this instance's sign-ins moved sessions moments ago, for a login submitted twice.
    member val internal SignIns = RecentSignIns(time)
    member internal _.Time = time
    member internal _.Logger = logger
    /// The ISession compatibility's settings, or null when the app did not ask for it.
    member internal _.Compatibility = compatibility
    /// Waits, as the app stops, for the app's handlers of the sessions the store ended by itself that are queued so far,
    /// so that they run before the app's services are disposed (or until the host's shutdown timeout).
    member internal _.StopAsync(cancellationToken: CancellationToken) : Task =
        match store with
        | :? InstrumentedStore as instrumented -> instrumented.DrainHandlersAsync cancellationToken
        | _ -> Task.CompletedTask

    /// Whether a request's session is loaded before its handler runs (for ISession's synchronous members).
    member val internal Preloads = not (isNull compatibility) && compatibility.PreloadsFor store

    /// Builds the runtime from the app's services (registered by <c>AddSesame</c>).
    static member internal Create(services: IServiceProvider) =
        let options = services.GetRequiredService<IOptions<SesameOptions>>().Value
        // A timeout of zero or less (Timeout.InfiniteTimeSpan among them) would end every session as soon as it is
        // stored: the app fails at startup instead, saying so.
        if options.IdleTimeout <= TimeSpan.Zero then
            invalidOp
                $"SesameOptions.IdleTimeout is {options.IdleTimeout}: it must be positive (a session ends after this long without a request). For sessions that never end for being idle, use TimeSpan.MaxValue."
        if options.AbsoluteTimeout.HasValue && options.AbsoluteTimeout.Value <= TimeSpan.Zero then
            invalidOp
                $"SesameOptions.AbsoluteTimeout is {options.AbsoluteTimeout.Value}: it must be positive (a session ends this long after it was created), or null for no absolute limit."
        // A shape version the migrations do not lead to fails the app at startup, not each old session's request.
        SessionShape.check options.ShapeVersion options.Migrations
        let logger = services.GetRequiredService<ILoggerFactory>().CreateLogger "Sesame"
        // Every request reaches the app's store through the instrumented one (metrics, spans, logs, lifecycle events),
        // which is also the store's observer of the sessions it ends by itself.
        let instruments = SesameInstruments(services.GetService<System.Diagnostics.Metrics.IMeterFactory>())
        let store = InstrumentedStore.Wrap(services.GetRequiredService<SessionStore>(), instruments, options.Events, services, logger)
        let dataProtection = services.GetRequiredService<IDataProtectionProvider>()
        let time =
            match services.GetService<TimeProvider>() with
            | null -> TimeProvider.System
            | time -> time
        let seal = TicketSeal(dataProtection.CreateProtector TicketSeal.Purpose, time, logger)
        let cookie = SessionCookie(dataProtection.CreateProtector SessionCookie.Purpose, seal, options, time, logger)
        let compatibility =
            match services.GetService<SessionCompatibility>() with
            | null -> null
            | registered -> registered.Options
        SesameRuntime(options, store, cookie, time, logger, compatibility)

    /// The runtime of the request's app, with a clear error when <c>AddSesame</c> was not called.
    static member internal Of(context: HttpContext) =
        match context.RequestServices.GetService<SesameRuntime>() with
        | null -> raise (InvalidOperationException "Sesame's services are missing: call services.AddSesame() at startup.")
        | runtime -> runtime

/// <summary>
/// One request's session lifecycle, shared by the middleware and <c>withSession</c>: it installs a
/// lazy session handle, commits the changes <em>before the response starts</em> (so a client that
/// has the response can rely on them), sets the cookie of a session created by that commit, and
/// commits anything changed later when the handler finishes.
/// </summary>
[<Sealed>]
type internal SessionScope private (context: HttpContext, runtime: SesameRuntime) =
    /// What an earlier scope of this request left, if one did (see SessionCarryOver).
    let carried = RequestFeatures.get<SessionCarryOver> context.Features
    let handle = SessionHandle(context, runtime.ReadTicket, runtime.Store, runtime.Options, runtime.Time, runtime.Logger, runtime.SignIns, carried)
    let mutable carriedChecked = false
    let mutable cookieDone = CookieAction.Keep
    let mutable abandoned = false
    /// Ended before the response started, by a withSession whose branch fell through: a later scope takes over.
    let mutable detached = false

    /// Sends what the cookie needs, once per change of mind; false when it changed after the headers went out.
    let settleCookie () =
        let wanted = handle.CookieAction
        if not (obj.ReferenceEquals(wanted, cookieDone)) then
            if context.Response.HasStarted then
                Log.cookieAfterStart runtime.Logger
            else
                cookieDone <- wanted
                match wanted with
                | CookieAction.Issue ticket -> runtime.Cookie.Write(context, ticket)
                | CookieAction.Expire -> runtime.Cookie.Expire context
                | CookieAction.Keep -> ()
        elif not carriedChecked && not (isNull carried) && carried.Issued && not context.Response.HasStarted then
            // An earlier scope gave the client a new ticket, which a handler since may have cleared from the response
            // (Giraffe's clearResponse in an error handler): without it the client would never find its session.
            carriedChecked <- true
            match carried.Ticket with
            | ValueSome ticket when not (runtime.Cookie.IsSent context) -> runtime.Cookie.Write(context, ticket)
            | _ -> ()

    /// Whether the response already varies by a request header: this runs before the headers go out and again at the
    /// end when they never did, and a later scope of the same request may run it too.
    /// Whether a Vary header value already names the header (compared in place: no split, nothing allocated).
    let variesBy (header: string) (headers: IHeaderDictionary) =
        let values = headers.Vary
        let mutable found = false
        let mutable i = 0
        while not found && i < values.Count do
            let mutable rest =
                (match values[i] with
                 | null -> String.Empty
                 | value -> value)
                    .AsSpan()
            while not found && not rest.IsEmpty do
                let comma = rest.IndexOf ','
                let name = (if comma < 0 then rest else rest.Slice(0, comma)).Trim()
                found <- name.Equals(header.AsSpan(), StringComparison.OrdinalIgnoreCase)
                rest <- if comma < 0 then ReadOnlySpan.Empty else rest.Slice(comma + 1)
            i <- i + 1
        found

    let preventCaching () =
        if handle.WasTouched && runtime.Options.NoCacheHeaders && not context.Response.HasStarted then
            let headers = context.Response.Headers
            headers.CacheControl <- "no-cache, no-store"
            headers.Pragma <- "no-cache"
            // The session's transport: Cookie, the session header, or both.
            for header in runtime.Cookie.VaryBy do
                if not (variesBy header headers) then headers.Append("Vary", header)

    member _.Handle = handle

    /// Runs just before the response's headers go out (and at the end, if they never did).
    member this.BeforeResponseAsync() : Task =
        if detached then
            Task.CompletedTask
        elif abandoned then
            // The handler failed, but what the store already did for it (a session created by an explicit commit, moved
            // by a sign-in or a rotation, destroyed) is not undone with its changes: the app's error page still tells
            // the client where its session is now, with the headers that keep caches from it. A later scope of the
            // request (an error handler's withSession, or the pipeline run again for the error page) decides instead,
            // from what this one left it (see Leave). Without an error page the server clears the headers and answers
            // 500 itself, and nothing can be sent.
            if not context.Response.HasStarted && obj.ReferenceEquals(RequestFeatures.get<SessionScope> context.Features, this) then
                settleCookie ()
                preventCaching ()
            Task.CompletedTask
        elif handle.HasPendingChanges then
            task {
                // Not the request's abort token: the handler has decided these changes, and a client
                // that hangs up must not undo them. The store's own timeout bounds the wait.
                do! handle.CommitAsync CancellationToken.None
                settleCookie ()
                preventCaching ()
            }
        else
            settleCookie ()
            preventCaching ()
            Task.CompletedTask

    /// Commits what is left when the handler has finished.
    member this.FinishAsync() : Task =
        if not context.Response.HasStarted then
            this.BeforeResponseAsync()
        elif handle.HasPendingChanges then
            task {
                do! handle.CommitAsync CancellationToken.None
                settleCookie ()
            }
        else
            // Nothing to commit: leave the abort token alone (Kestrel makes one on first use).
            settleCookie ()
            Task.CompletedTask

    /// Ends the request's session: the handle refuses further use.
    member _.End() = handle.Close()

    /// <summary>
    /// Leaves the request as if this scope had never been: called once it has finished and committed, when its
    /// handler fell through (<c>None</c>) so that another branch goes on with the request. A later scope then
    /// continues the same session, as this scope left it.
    /// </summary>
    member this.Detach() =
        detached <- true
        this.Leave()

    /// Takes the scope's handle off the request and leaves the session it ended with for a later scope.
    member private _.Leave() =
        if obj.ReferenceEquals(RequestFeatures.get<SessionHandle> context.Features, handle) then RequestFeatures.set context.Features (null: SessionHandle)
        match context.Features.Get<Microsoft.AspNetCore.Http.Features.ISessionFeature>() with
        | :? SesameSessionFeature as feature when obj.ReferenceEquals(feature.Handle, handle) ->
            context.Features.Set<Microsoft.AspNetCore.Http.Features.ISessionFeature>(null)
        | _ -> ()
        if handle.IsLoaded then
            let issued =
                match handle.CookieAction with
                | CookieAction.Issue _ -> true
                | CookieAction.Keep -> not (isNull carried) && carried.Issued
                | CookieAction.Expire -> false
            RequestFeatures.set context.Features (SessionCarryOver(handle.StoredTicket, issued))

    /// <summary>
    /// The handler failed: its changes are dropped, as a transaction's would be, and the handle is closed. The request
    /// is left as if this scope had never been, so that an error handler after it (Giraffe's, with a
    /// <c>withSession</c> of its own) goes on with the session as it is stored, rather than with a closed handle; the
    /// cookie still follows what the store did before the failure (see BeforeResponseAsync).
    /// </summary>
    member this.Abandon() =
        abandoned <- true
        this.Leave()
        handle.Close()

    /// ISession's members are synchronous: load now, while the pipeline can await the store. A failure stays with the
    /// handle, for whoever uses the session (IsAvailable is false then, as in ASP.NET Core).
    member private _.PreloadAsync() : Task =
        if runtime.Preloads then
            task {
                try
                    do! handle.PreloadAsync()
                with _ ->
                    ()
            }
        else
            Task.CompletedTask

    /// <summary>Runs the rest of the request with this session: commits when it finishes, stores nothing if it throws.</summary>
    member this.RunAsync<'result>(rest: unit -> Task<'result>) : Task<'result> = task {
        try
            do! this.PreloadAsync()
            let! result = rest ()
            do! this.FinishAsync()
            this.End()
            return result
        with e ->
            this.Abandon()
            ExceptionDispatchInfo.Throw e
            return Unchecked.defaultof<'result>
    }

    /// <summary>RunAsync for the middleware: the rest of the pipeline, with no closure or result of its own.</summary>
    member this.RunAsync(next: RequestDelegate) : Task = task {
        try
            do! this.PreloadAsync()
            do! next.Invoke context
            do! this.FinishAsync()
            this.End()
        with e ->
            this.Abandon()
            ExceptionDispatchInfo.Throw e
    }

    /// One callback for every request, given its scope as state: no closure per request.
    static member val private BeforeResponse = Func<obj, Task>(fun scope -> (scope :?> SessionScope).BeforeResponseAsync())

    /// Starts the session lifecycle of a request.
    static member Begin(context: HttpContext, runtime: SesameRuntime) =
        let scope = SessionScope(context, runtime)
        // The request's latest scope: an abandoned one leaves the cookie to any scope after it.
        RequestFeatures.set context.Features scope
        RequestFeatures.set context.Features scope.Handle
        if not (isNull runtime.Compatibility) then
            context.Features.Set<Microsoft.AspNetCore.Http.Features.ISessionFeature>(SesameSessionFeature(scope.Handle, runtime.Logger))
        context.Response.OnStarting(SessionScope.BeforeResponse, scope)
        scope
