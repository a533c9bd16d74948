namespace Sesame

open System
open System.Threading.Tasks

/// <summary>What every session event tells its handler: the session, and the app's services.</summary>
/// <remarks>
/// The session id is a secret (whoever has it holds the session): log or show <see cref="P:Sesame.SessionEventContext.Handle"/>
/// instead. Events of a request run inside that request, so <c>IHttpContextAccessor</c> gives its <c>HttpContext</c>;
/// events a store raises by itself (<see cref="M:Sesame.SesameEvents.Expired(Sesame.SessionEndedContext)"/>,
/// <see cref="M:Sesame.SesameEvents.Evicted(Sesame.SessionEndedContext)"/>) run with no request.
/// </remarks>
[<AbstractClass>]
type SessionEventContext internal (services: IServiceProvider, sessionId: string, store: string) =
    let mutable handle: string = null

    /// <summary>The app's services (the root provider: resolve singletons, or create a scope).</summary>
    member _.Services = services

    /// <summary>The session's id (a secret: never log it; see <see cref="P:Sesame.SessionEventContext.Handle"/>).</summary>
    member _.SessionId = sessionId

    /// <summary>A name for the session that can be logged and shown without giving its id away
    /// (<see cref="M:Sesame.SessionSummary.HandleOf(System.String)"/>).</summary>
    member _.Handle =
        if isNull handle then handle <- SessionSummary.HandleOf sessionId
        handle

    /// <summary>The store's name, as the <c>sesame.store</c> tag of Sesame's metrics gives it (<c>memory</c>, <c>file</c>, <c>redis</c>...).</summary>
    member _.Store = store

/// <summary>A session was created: the first commit of a new session, or a sign-in of a session not stored yet.</summary>
[<Sealed>]
type SessionCreatedContext internal (services: IServiceProvider, sessionId: string, store: string, userId: string) =
    inherit SessionEventContext(services, sessionId, store)

    /// <summary>The user the session was bound to as it was created (a sign-in of a new visitor), or <c>null</c>.</summary>
    member _.UserId = userId

/// <summary>A session moved to a new id (<c>RotateAsync</c>): the old id is dead.</summary>
[<Sealed>]
type SessionRotatedContext internal (services: IServiceProvider, sessionId: string, store: string, previousSessionId: string) =
    inherit SessionEventContext(services, sessionId, store)
    let mutable previousHandle: string = null

    /// <summary>The id the session had before (a secret, dead now).</summary>
    member _.PreviousSessionId = previousSessionId

    /// <summary>The handle of the id the session had before.</summary>
    member _.PreviousHandle =
        if isNull previousHandle then previousHandle <- SessionSummary.HandleOf previousSessionId
        previousHandle

/// <summary>A session was signed in: bound to a user, at a new id (<c>SignInAsync</c>).</summary>
[<Sealed>]
type SessionSignedInContext internal (services: IServiceProvider, sessionId: string, store: string, previousSessionId: string, userId: string) =
    inherit SessionEventContext(services, sessionId, store)

    /// <summary>The id the session had before, or <c>null</c> when it was new (it was created by the sign-in; the
    /// <see cref="M:Sesame.SesameEvents.Created(Sesame.SessionCreatedContext)"/> event came first).</summary>
    member _.PreviousSessionId = previousSessionId

    /// <summary>The user the session is now bound to.</summary>
    member _.UserId = userId

/// <summary>A session was destroyed by the app (<c>DestroyAsync</c>, a sign-out, <c>Sessions.endAsync</c>).</summary>
[<Sealed>]
type SessionDestroyedContext internal (services: IServiceProvider, sessionId: string, store: string) =
    inherit SessionEventContext(services, sessionId, store)

/// <summary>A store ended a session by itself: it expired, or it was evicted (to keep the store within its bounds,
/// or its user within the user's session limit).</summary>
[<Sealed>]
type SessionEndedContext internal (services: IServiceProvider, sessionId: string, store: string, meta: Json, reason: SessionEndReason) =
    inherit SessionEventContext(services, sessionId, store)

    /// <summary>Why the session ended.</summary>
    member _.Reason = reason

    /// <summary>The facts the session had (its user, device facts; never its data).</summary>
    member _.Meta = meta

    /// <summary>The user the session was bound to, or <c>null</c>.</summary>
    member _.UserId =
        match SessionMeta.userOf meta with
        | Some user -> user
        | None -> null

/// <summary>A commit, rotation or sign-in failed: the store stored nothing, and the request sees the error.</summary>
[<Sealed>]
type SessionCommitFailedContext internal (services: IServiceProvider, sessionId: string, store: string, exn: exn) =
    inherit SessionEventContext(services, sessionId, store)

    /// <summary>What failed: a <see cref="T:Sesame.SessionStoreException"/> (the store), a
    /// <see cref="T:Sesame.SessionTooLargeException"/>, a <see cref="T:Sesame.PathConflictException"/>, or a cancellation.</summary>
    member _.Exception = exn

/// <summary>
/// Handlers for a session's lifecycle, in the style of ASP.NET Core's <c>CookieAuthenticationEvents</c>: set the
/// <c>On...</c> properties (<c>options.Events.OnCreated &lt;- ...</c>), or derive from this class, override its
/// methods and set an instance as <see cref="P:Sesame.SesameOptions.Events"/>.
/// </summary>
/// <remarks>
/// <para>Every store raises every event, with no keyspace notifications: created, rotated, signed in, destroyed and
/// commit failed when a request does it; expired and evicted when the store ends the session. A store notices an
/// expiry when it sweeps (the memory and file stores every <c>SweepInterval</c>, one minute by default) or when a
/// request finds the session expired, so an expiry event may come up to one sweep interval after the session expired.</para>
/// <para>Request events run inline, in the request, and their task is awaited: keep them quick, and hand slow work (a
/// database write, an e-mail) to a queue. Expiry and eviction handlers run off the store's thread, with no request,
/// one after another, and are not waited for (at most 10,000 wait; past that they are dropped and logged): a store
/// raises them from its own thread (a sweep, the file store's writer), sometimes under its locks, which a slow handler,
/// or one that waits on the store, must not hold up. When the app stops, the handlers of the events raised so far are
/// waited for, within the host's shutdown timeout, before the app's services are disposed. A handler that throws is logged
/// (event <c>SessionEventHandlerFailed</c>) and fails neither the request nor the store.</para>
/// <para>The same moments are counted by Sesame's metrics (meter <c>Sesame</c>); use events to act, metrics to watch.</para>
/// </remarks>
[<AllowNullLiteral>]
type SesameEvents() =

    /// <summary>Runs when a session is created (the first commit of a new session, or a sign-in of a session not yet stored). Default: nothing.</summary>
    member val OnCreated: Func<SessionCreatedContext, Task> = null with get, set

    /// <summary>Runs when a session moves to a new id without a sign-in (<c>RotateAsync</c>). Default: nothing.</summary>
    member val OnRotated: Func<SessionRotatedContext, Task> = null with get, set

    /// <summary>Runs when a session is signed in: bound to a user at a new id. Default: nothing.</summary>
    member val OnSignedIn: Func<SessionSignedInContext, Task> = null with get, set

    /// <summary>Runs when the app destroys a session. Default: nothing.</summary>
    member val OnDestroyed: Func<SessionDestroyedContext, Task> = null with get, set

    /// <summary>Runs when a store finds a session expired (in its sweep, or when a request finds it). Default: nothing.</summary>
    member val OnExpired: Func<SessionEndedContext, Task> = null with get, set

    /// <summary>Runs when a store evicts a session: to stay within its bounds, or to keep its user within
    /// <see cref="P:Sesame.SesameOptions.MaxSessionsPerUser"/> (<see cref="P:Sesame.SessionEndedContext.Reason"/> says which). Default: nothing.</summary>
    member val OnEvicted: Func<SessionEndedContext, Task> = null with get, set

    /// <summary>Runs when a commit, rotation or sign-in fails (the store failed, the session would be too large, or a
    /// concurrent change conflicts); the request still sees the error. Default: nothing.</summary>
    member val OnCommitFailed: Func<SessionCommitFailedContext, Task> = null with get, set

    /// <summary>Whether a handler may run: a property is set, or a derived class may override the methods (then every
    /// event builds its context).</summary>
    member internal this.IsHooked =
        this.GetType() <> typeof<SesameEvents>
        || not (
            isNull this.OnCreated
            && isNull this.OnRotated
            && isNull this.OnSignedIn
            && isNull this.OnDestroyed
            && isNull this.OnExpired
            && isNull this.OnEvicted
            && isNull this.OnCommitFailed
        )

    /// <summary>A session was created. Calls <see cref="P:Sesame.SesameEvents.OnCreated"/>.</summary>
    abstract Created: context: SessionCreatedContext -> Task
    default this.Created(context) =
        match this.OnCreated with
        | null -> Task.CompletedTask
        | handler -> handler.Invoke context

    /// <summary>A session moved to a new id. Calls <see cref="P:Sesame.SesameEvents.OnRotated"/>.</summary>
    abstract Rotated: context: SessionRotatedContext -> Task
    default this.Rotated(context) =
        match this.OnRotated with
        | null -> Task.CompletedTask
        | handler -> handler.Invoke context

    /// <summary>A session was signed in. Calls <see cref="P:Sesame.SesameEvents.OnSignedIn"/>.</summary>
    abstract SignedIn: context: SessionSignedInContext -> Task
    default this.SignedIn(context) =
        match this.OnSignedIn with
        | null -> Task.CompletedTask
        | handler -> handler.Invoke context

    /// <summary>A session was destroyed. Calls <see cref="P:Sesame.SesameEvents.OnDestroyed"/>.</summary>
    abstract Destroyed: context: SessionDestroyedContext -> Task
    default this.Destroyed(context) =
        match this.OnDestroyed with
        | null -> Task.CompletedTask
        | handler -> handler.Invoke context

    /// <summary>A session expired. Calls <see cref="P:Sesame.SesameEvents.OnExpired"/>.</summary>
    abstract Expired: context: SessionEndedContext -> Task
    default this.Expired(context) =
        match this.OnExpired with
        | null -> Task.CompletedTask
        | handler -> handler.Invoke context

    /// <summary>A session was evicted. Calls <see cref="P:Sesame.SesameEvents.OnEvicted"/>.</summary>
    abstract Evicted: context: SessionEndedContext -> Task
    default this.Evicted(context) =
        match this.OnEvicted with
        | null -> Task.CompletedTask
        | handler -> handler.Invoke context

    /// <summary>A commit failed. Calls <see cref="P:Sesame.SesameEvents.OnCommitFailed"/>.</summary>
    abstract CommitFailed: context: SessionCommitFailedContext -> Task
    default this.CommitFailed(context) =
        match this.OnCommitFailed with
        | null -> Task.CompletedTask
        | handler -> handler.Invoke context
