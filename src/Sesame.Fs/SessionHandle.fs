namespace Sesame

open System
open System.Collections.Generic
open System.Text.Json
open System.Threading
open System.Threading.Tasks
open System.Runtime.ExceptionServices
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.Logging

/// <summary>What the response must do with the session cookie.</summary>
[<RequireQualifiedAccess; NoComparison>]
type internal CookieAction =
    /// Nothing: the client's cookie is right.
    | Keep
    /// Send a cookie for this ticket (a session created, or moved to a new id).
    | Issue of SessionTicket
    /// Tell the client to drop its cookie (the session was destroyed, or found gone when it was to move).
    | Expire

/// <summary>
/// What a session scope that ended early leaves for a later scope of the same request (a <c>withSession</c> in a
/// branch of <c>choose</c> that fell through, then another in the next branch): the session it ended with, so
/// that the request keeps one session however many scopes it passes through.
/// </summary>
[<Sealed; AllowNullLiteral>]
type internal SessionCarryOver(ticket: SessionTicket voption, issued: bool) =
    /// The session's ticket, or none when the earlier scope found no session or destroyed it.
    member _.Ticket = ticket
    /// Whether the ticket is this response's to give the client (a session this request created or moved): a later
    /// scope makes sure it still goes out, as a handler in between may have cleared the response's headers.
    member _.Issued = issued

/// <summary>How a sign-in ended.</summary>
type SignInResult =
    /// The session moved to a new id bound to the user; the new cookie goes out with this response.
    | SignedIn = 0
    /// The user already has <c>MaxSessionsPerUser</c> sessions and the policy refuses more; nothing changed.
    | LimitReached = 1

/// <summary>
/// One request's session: the snapshot loaded from the store plus the request's update log.
/// Reads see the snapshot with the pending updates applied; every change appends an update,
/// and the updates are folded into one patch and committed in one write.
/// </summary>
/// <remarks>
/// A handle lives as long as its request. Using it after the request ended throws
/// <see cref="T:System.ObjectDisposedException"/> rather than recording changes nobody will store.
/// Changes are validated as they are made: a change that crosses a value of the wrong kind throws
/// <see cref="T:Sesame.PathConflictException"/> at the call and records nothing.
/// </remarks>
[<Sealed; AllowNullLiteral>]
type SessionHandle
    internal
    (
        context: HttpContext,
        readTicket: Func<HttpRequest, SessionTicket voption>,
        store: SessionStore,
        options: SesameOptions,
        time: TimeProvider,
        logger: ILogger,
        signIns: RecentSignIns,
        carried: SessionCarryOver
    ) =
    let pending = List<Update>()
    /// Changes to the facts beside the tree (flash values, the shape version), committed with the tree's.
    let pendingMeta = List<Update>()
    /// The update log doubles as the lock that guards it and the load.
    let gate = pending
    let mutable loadedSelf: Task<SessionHandle> = null
    let mutable loading: Task = null
    let mutable loaded = false
    /// The session's ticket while the store holds it (found at load, or created by a commit); null id otherwise.
    let mutable ticket = { Id = null; Created = DateTimeOffset.MinValue }
    let mutable cookie = CookieAction.Keep
    let mutable current = Json.emptyObject
    // The tree as this request's updates leave it, changed in place (PatchDraft), so that each update costs what it
    // changes rather than a copy of every object on its path (an object of n keys given n keys one by one was n² work:
    // a request that set 40,000 keys took 40 s); `current` is made from it when read whole (null: no update yet).
    let mutable draft: obj = null
    // Whether `current` lags behind the draft.
    let mutable stale = false
    let mutable meta = Json.emptyObject
    let mutable closed = false
    let mutable touched = false
    /// The shape of the tree as the handler reads it: the app's, or a newer session's when it is served read-only.
    let mutable shape = options.ShapeVersion
    /// The shape the session had in the store when it was loaded.
    let mutable loadedShape = options.ShapeVersion
    /// A session newer than the app, served read-only (NewerShapePolicy.ReadOnly).
    let mutable readOnly = false
    /// The migration of a session loaded at an older shape: committed with the request's first change of the tree.
    let mutable upgrade: ShapeUpgrade voption = ValueNone
    /// Facts for the session to be created with, only if this request creates it (see CreationFact).
    let mutable creationExtras: Update[] = Array.empty
    /// The store's error from this request's last commit, which dropped its changes; null after a commit that succeeded.
    /// A later CommitAsync with nothing to send fails with it, rather than reporting the dropped changes stored.
    let mutable failedCommit: exn = null

    let stored () = not (isNull ticket.Id)

    let ensureOpen () =
        if closed then
            raise (
                ObjectDisposedException(
                    "SessionHandle",
                    "This session belongs to a request that has ended; changes to it would never be stored. Get the session of the current request instead."
                )
            )

    let ensureLoaded () =
        ensureOpen ()
        if not loaded then
            raise (
                InvalidOperationException
                    "The session has not been loaded yet: await its LoadAsync (Session.loadAsync ctx in F#) before reading or changing it."
            )

    let commitOptions (created: DateTimeOffset) (mustExist: bool) = {
        IdleTimeout = options.IdleTimeoutAt(created, time)
        MustExist = mustExist
        MaxSizeBytes = options.MaxSessionBytes
        UserLimit = options.UserLimit
    }

    /// The session as this request left it: the draft of its changes, or the tree when it changed nothing (call under
    /// the gate). PatchDraft reads either without making a tree.
    let latest () = if isNull draft then box current else draft

    /// Brings `current` up to the draft (under the gate): made once, then read until the next update.
    let refresh () =
        if stale then
            current <- PatchDraft.toJson draft
            stale <- false

    /// Flash values are the app's data, often its client's input (a form kept across a redirect): the facts beside the
    /// tree are bounded by the tree's limit too. Checked here, as this request leaves them, for every store; the memory,
    /// file, Redis and PostgreSQL stores check again atomically, against what concurrent requests committed.
    let checkFacts (metaUpdates: Update[]) =
        if metaUpdates |> Array.exists Update.mayGrow then
            let size = JsonSize.utf8Length meta
            if size > int64 options.MaxSessionBytes then raise (SessionTooLargeException(size, options.MaxSessionBytes))

    let isPastAbsoluteTimeout (created: DateTimeOffset) = options.AbsoluteTimeout.HasValue && created + options.AbsoluteTimeout.Value <= time.GetUtcNow()

    /// Read when the store is called, not before: Kestrel creates the token on first use, and a request
    /// that never touches its session should not pay for it.
    let requestAborted () = context.RequestAborted

    /// The session the request names: the one an earlier scope of the request left (given by this handle's scope, which
    /// began after that one left), or its cookie's.
    let requestTicket () = if isNull carried then readTicket.Invoke context.Request else carried.Ticket

    let load () : Task = task {
        match requestTicket () with
        | ValueNone -> ()
        | ValueSome fromCookie when isPastAbsoluteTimeout fromCookie.Created ->
            Log.unknownSession logger
            // The absolute lifetime is over: the session is dead even if the store has not expired it yet.
            let! _ = store.DeleteAsync(fromCookie.Id, requestAborted ())
            ()
        | ValueSome fromCookie ->
            let! found =
                try
                    store.LoadAsync(fromCookie.Id, options.IdleTimeoutAt(fromCookie.Created, time), requestAborted ())
                with e ->
                    Task.FromException<StoredSession> e
            match found with
            | null -> Log.unknownSession logger
            | session ->
                let stored = SessionMeta.shapeOf session.Meta
                let version = options.ShapeVersion
                let accept (tree: Json) =
                    current <- tree
                    draft <- null
                    stale <- false
                    meta <- session.Meta
                    ticket <- fromCookie
                    loadedShape <- stored
                if stored = version then
                    accept session.Data
                elif stored > version then
                    // A newer instance wrote it (a rolling deploy): never write this app's shape into it.
                    SessionShape.logNewer logger stored version options.NewerShape
                    match options.NewerShape with
                    | NewerShapePolicy.StartNew -> ()
                    | NewerShapePolicy.Fail ->
                        raise (
                            SessionShapeException(
                                $"The session's shape is version {stored}, newer than this app's {version} (a newer app instance wrote it), and SesameOptions.NewerShape is Fail.",
                                stored,
                                version
                            )
                        )
                    | _ ->
                        accept session.Data
                        shape <- stored
                        readOnly <- true
                else
                    match SessionShape.migrate options.Migrations version stored session.Data with
                    | MigrationOutcome.Migrated(tree, step) ->
                        accept tree
                        upgrade <- ValueSome step
                        SessionShape.logMigrated logger stored version step.Data.Updates.Length
                    // Nothing here can read it: the request starts afresh; the stored session stays for whoever can.
                    | MigrationOutcome.TooOld oldest -> SessionShape.logTooOld logger stored oldest
                    | MigrationOutcome.Failed(fromVersion, toVersion, error) -> SessionShape.logFailed logger fromVersion toVersion error
        loaded <- true
    }

    let takePending () =
        lock gate (fun () ->
            let updates = pending.ToArray()
            let metaUpdates = pendingMeta.ToArray()
            pending.Clear()
            pendingMeta.Clear()
            struct (updates, metaUpdates))

    let putBack (struct (updates: Update[], metaUpdates: Update[])) =
        lock gate (fun () ->
            pending.InsertRange(0, updates)
            pendingMeta.InsertRange(0, metaUpdates))

    /// Forgets the session: the handle now holds a new, empty one, which a later change creates afresh.
    let becomeNew () =
        ticket <- { Id = null; Created = DateTimeOffset.MinValue }
        current <- Json.emptyObject
        draft <- null
        stale <- false
        meta <- Json.emptyObject
        // What was handed out for the ended session is not the new one's, nor was its failed commit.
        creationExtras <- Array.empty
        failedCommit <- null
        shape <- options.ShapeVersion
        loadedShape <- options.ShapeVersion
        readOnly <- false
        upgrade <- ValueNone

    let ms (at: DateTimeOffset) = Json.int64 (at.ToUnixTimeMilliseconds())

    /// A commit or a sign-in created the session with the facts CreationFact asked for (`sent`, as they were when it
    /// was sent): they are its facts now, and the next session this request may create (after a destroy) starts without
    /// them. Those asked for while the store created it are changes of the session now, for the next commit.
    let createdWithExtras (sent: Update[]) =
        lock gate (fun () ->
            if sent.Length > 0 then meta <- Patch.apply (Patch.foldChecked sent) meta
            for update in creationExtras do
                if not (Array.exists (fun s -> obj.ReferenceEquals(s, update)) sent) then
                    meta <- Update.apply update meta
                    pendingMeta.Add update
            creationExtras <- Array.empty)

    /// The facts a new session starts with: it is created at the app's shape, with what this request asked to keep
    /// should it create the session (CreationFact).
    let creationFacts (created: DateTimeOffset) =
        let own =
            if options.ShapeVersion > 0 then
                [| Update.Set(SessionMeta.CreatedPath, ms created); Update.Set(SessionMeta.ShapePath, Json.int64 (int64 options.ShapeVersion)) |]
            else
                [| Update.Set(SessionMeta.CreatedPath, ms created) |]
        if creationExtras.Length = 0 then own else Array.append own creationExtras

    /// <summary>
    /// What a commit of changes to a stored session's tree says about its shape: the migration of a session loaded at
    /// an older shape (applied once, whichever request brings it first), or, when the app declares a version, that the
    /// session must still have it, so that changes made for one shape never land in a tree of another (a newer instance
    /// may migrate it while this request runs). Changes of the facts alone fit every shape and carry nothing.
    /// </summary>
    let shapeCondition (isNew: bool) (treeChanged: bool) : ShapeUpgrade voption =
        if isNew || not treeChanged then
            ValueNone
        else
            match upgrade with
            | ValueSome _ -> upgrade
            | ValueNone when options.ShapeVersion > 0 -> ValueSome { From = options.ShapeVersion; To = options.ShapeVersion; Data = Patch.empty }
            | ValueNone -> ValueNone

    /// After a commit or move that the store applied.
    let shapeCommitted (condition: ShapeUpgrade voption) =
        match condition with
        | ValueSome step when step.From <> step.To ->
            upgrade <- ValueNone
            loadedShape <- step.To
            meta <- SessionPath.set SessionMeta.ShapePath (Json.int64 (int64 step.To)) meta
        | _ -> ()

    /// The store found another shape than the one this request's changes were made for: they were not stored.
    let shapeChanged (count: int) =
        SessionShape.logChanged logger loadedShape count
        SessionShapeException(
            $"The session's shape changed while this request ran (it was version {loadedShape}; another app instance migrated it): this request's {count} changes, made for the old shape, were not stored.",
            loadedShape,
            options.ShapeVersion
        )

    /// What a write does with the changes it took from the log when it fails: they are dropped with it, and the failure
    /// kept, so that a later commit with nothing to send says so rather than report them stored. Gives the failure.
    let dropped (failure: exn) =
        failedCommit <- failure
        failure

    /// checkFacts for changes already taken from the log: a refusal drops them (see dropped).
    let checkTaken (metaUpdates: Update[]) =
        try
            checkFacts metaUpdates
        with e ->
            dropped e |> ignore
            reraise ()

    /// A store write of changes already taken from the log: its failure drops them (see dropped).
    let writeTaken (write: unit -> Task<'result>) : Task<'result> = task {
        try
            return! write ()
        with e ->
            ExceptionDispatchInfo.Throw(dropped e)
            return Unchecked.defaultof<'result>
    }

    let deviceFacts () =
        let facts = ResizeArray<string * Json>()
        if options.DeviceFacts.HasFlag DeviceFacts.UserAgent then
            match string context.Request.Headers.UserAgent with
            | "" -> ()
            | agent -> facts.Add("userAgent", Json.string (if agent.Length > 256 then agent.Substring(0, 256) else agent))
        if options.DeviceFacts.HasFlag DeviceFacts.IpAddress then
            match context.Connection.RemoteIpAddress with
            | null -> ()
            | address -> facts.Add("ip", Json.string (string address))
        facts.Add("signedIn", ms (time.GetUtcNow()))
        Json.object facts

    let guardStarted (what: string) =
        if context.Response.HasStarted then
            raise (
                InvalidOperationException
                    $"Cannot {what} after the response has started: the new cookie could no longer be sent. Do it before writing the response."
            )

    /// The session id, or <c>null</c> while the session is new and not yet stored.
    member _.Id = ticket.Id

    /// Whether the session is new: not (yet) in the store.
    member _.IsNew = not (stored ())

    /// Whether the session has been loaded.
    member _.IsLoaded = loaded

    /// Whether this request read or changed the session (it loaded it).
    member internal _.WasTouched = touched

    /// Whether there are changes not yet committed.
    member _.HasPendingChanges = lock gate (fun () -> pending.Count > 0 || pendingMeta.Count > 0)

    /// The updates recorded and not yet committed, in order.
    member _.PendingUpdates: IReadOnlyList<Update> = lock gate (fun () -> pending.ToArray() :> IReadOnlyList<Update>)

    /// What the response must do with the cookie.
    member internal _.CookieAction = cookie

    /// The ticket of the session while the store holds it.
    member internal _.StoredTicket = if stored () then ValueSome ticket else ValueNone

    /// The options in force.
    member _.Options = options

    /// <summary>The user this session is bound to (by a sign-in), or <c>None</c>.</summary>
    member _.UserId: string option =
        ensureLoaded ()
        SessionMeta.userOf meta

    /// <summary>
    /// Whether the session was written by a newer app version (its shape is newer than
    /// <see cref="P:Sesame.SesameOptions.ShapeVersion"/>) and is served read-only (<see cref="F:Sesame.NewerShapePolicy.ReadOnly"/>):
    /// a change of its tree throws <see cref="T:Sesame.SessionShapeException"/>.
    /// </summary>
    member _.IsReadOnly: bool =
        ensureLoaded ()
        readOnly

    /// <summary>The shape version of the tree as the handler reads it: the app's (a session stored at an older one is
    /// read migrated), or the stored one of a newer session served read-only.</summary>
    member _.ShapeVersion: int =
        ensureLoaded ()
        shape

    /// <summary>The facts Sesame keeps beside the session's tree (user, device facts, shape version, flash values), as they read now.</summary>
    member _.Meta: Json =
        ensureLoaded ()
        meta

    /// <summary>Loads the session on first use; later calls complete at once. A request that never calls it does no store I/O.</summary>
    /// <exception cref="T:Sesame.SessionStoreException">The store failed.</exception>
    member _.LoadAsync() : Task =
        ensureOpen ()
        touched <- true
        lock gate (fun () ->
            if isNull loading then loading <- load ()
            loading)

    /// <summary>Starts loading the session without counting as a use of it (no cache headers for a request that then
    /// leaves it alone): what <c>AddSessionCompatibility</c> does before the handler, so that ISession's synchronous
    /// members find it loaded. Later calls, and <c>LoadAsync</c>, get the same load.</summary>
    member internal _.PreloadAsync() : Task =
        ensureOpen ()
        lock gate (fun () ->
            if isNull loading then loading <- load ()
            loading)

    /// The load a read, a change or a preload began, whatever became of it; null when none began.
    member internal _.LoadBegun: Task = lock gate (fun () -> loading)

    /// The request's flash state (<c>Flash.fs</c>), made on first use of the flash; null until then.
    member val internal FlashState: obj = null with get, set

    /// This handle as a completed task, made once (<c>Session.loadAsync</c> hands it out on every call).
    member internal this.AsCompletedTask =
        if isNull loadedSelf then loadedSelf <- Task.FromResult this
        loadedSelf

    /// <summary>The whole session as it reads now: the snapshot with pending changes applied.</summary>
    member _.Current: Json =
        ensureLoaded ()
        lock gate (fun () ->
            refresh ()
            current)

    /// <summary>The value at a path, or <c>None</c>.</summary>
    member _.TryFind(path: SessionPath) : Json option =
        ensureLoaded ()
        lock gate (fun () ->
            match if stale then PatchDraft.tryFindTree path draft else ValueNone with
            | ValueSome found -> found
            | ValueNone ->
                // A container this request changed: the whole tree is made once, and read until the next update (a
                // proxy reads the root for every member).
                refresh ()
                SessionPath.tryGet path current)

    /// <summary>The kind of value at a path (<c>Undefined</c> when there is none). Unlike <c>TryFind</c>, it never makes
    /// the tree the request changed, so a loop that checks and changes many items stays linear; a reader that needs the
    /// value only when it is a leaf reads it with <c>TryFind</c>, which finds a leaf without making the tree either.</summary>
    member _.KindAt(path: SessionPath) : JsonValueKind =
        ensureLoaded ()
        lock gate (fun () -> PatchDraft.kindAt path (latest ()))

    /// <summary>Whether the session holds a value at a path (JSON null included). Like <c>KindAt</c>, it never makes the
    /// tree the request changed.</summary>
    member this.Contains(path: SessionPath) : bool = this.KindAt path <> JsonValueKind.Undefined

    /// <summary>The number of items of the array at a path, or -1 when no array is there. Like <c>KindAt</c>, it never
    /// makes the tree the request changed.</summary>
    member _.ArrayLength(path: SessionPath) : int =
        ensureLoaded ()
        match lock gate (fun () -> PatchDraft.arrayLength path (latest ())) with
        | ValueSome n -> n
        | ValueNone -> -1

    /// <summary>
    /// Answers a typed read whose value does not fit the type read: logs it (once per path and type, with the path and
    /// the type, never the value) and applies the fallback (<paramref name="fallback"/>, else the one
    /// <see cref="P:Sesame.SesameOptions.ReadFallbacks"/> gives the path). For facades that decode values themselves;
    /// <c>TryGet</c> calls it.
    /// </summary>
    /// <param name="path">Where the value is.</param>
    /// <param name="valueType">The type it was read as.</param>
    /// <param name="fallback">The read's own fallback, or <c>null</c> for the options'.</param>
    /// <returns><c>true</c> when the read gives no value (<c>Missing</c>; <c>Remove</c>, which also records the
    /// removal); <c>false</c> when it must throw (<c>Throw</c>).</returns>
    member this.RecoverUnreadable(path: SessionPath, valueType: Type, fallback: Nullable<ReadFallback>) : bool =
        ensureLoaded ()
        let chosen = if fallback.HasValue then fallback.Value else options.ReadFallbacks.For path
        SessionShape.logUnreadable logger options.ReadFallbacks path valueType chosen
        match chosen with
        | ReadFallback.Missing -> true
        | ReadFallback.Remove ->
            // A read-only session is never changed; a new one can no longer be once its response started.
            if not readOnly && (stored () || not context.Response.HasStarted) then this.Remove path
            true
        | _ -> false

    member private this.Read<'value>(path: SessionPath, fallback: Nullable<ReadFallback>) : 'value option =
        match this.TryFind path with
        | None -> None
        | Some json ->
            try
                Some(Json.decodeWith<'value> options.SerializerOptions json)
            with :? JsonException as e ->
                if this.RecoverUnreadable(path, typeof<'value>, fallback) then
                    None
                else
                    raise (JsonException($"The session value at '{path}' cannot be read as {typeof<'value>.Name}: {e.Message}", e))

    /// <summary>The value at a path decoded as <typeparamref name="value"/>, or <c>None</c> when there is no value there.
    /// A value that does not fit the type gets the fallback <see cref="P:Sesame.SesameOptions.ReadFallbacks"/> gives the
    /// path (by default it throws).</summary>
    /// <exception cref="System.Text.Json.JsonException">There is a value but it does not fit the type, and the fallback is
    /// <c>Throw</c>; the message names the path.</exception>
    member this.TryGet<'value>(path: SessionPath) : 'value option = this.Read<'value>(path, Nullable())

    /// <summary>The value at a path decoded as <typeparamref name="value"/>, or <c>None</c> when there is no value there,
    /// with <paramref name="fallback"/> for a value that does not fit the type.</summary>
    /// <exception cref="System.Text.Json.JsonException">The value does not fit the type and the fallback is <c>Throw</c>.</exception>
    member this.TryGet<'value>(path: SessionPath, fallback: ReadFallback) : 'value option = this.Read<'value>(path, Nullable fallback)

    /// <summary>Records an update, after checking it applies to the session as it reads now.</summary>
    /// <exception cref="T:Sesame.PathConflictException">The update does not apply; nothing is recorded.</exception>
    /// <exception cref="System.ArgumentException">The update would nest deeper than <see cref="F:Sesame.JsonModule.MaxDepth"/>, or holds
    /// a lone UTF-16 surrogate (<see cref="M:Sesame.UpdateModule.validate(Sesame.Update)"/>); nothing is recorded.</exception>
    /// <exception cref="System.InvalidOperationException">The session is new and the response has started: no cookie could
    /// reach the client any more, so the change could never be found again; nothing is recorded.</exception>
    /// <exception cref="T:Sesame.SessionShapeException">The session is newer than the app and served read-only; nothing is recorded.</exception>
    member internal _.Record(update: Update) : unit =
        ensureLoaded ()
        if readOnly then
            raise (
                SessionShapeException(
                    $"Cannot change '{update.Path}': the session's shape is version {shape}, newer than this app's {options.ShapeVersion} (a newer app instance wrote it), so it is served read-only (SesameOptions.NewerShape). Nothing was recorded.",
                    shape,
                    options.ShapeVersion
                )
            )
        Update.validate update
        if not (stored ()) && context.Response.HasStarted then
            raise (
                InvalidOperationException(
                    $"Cannot change a new session after the response has started ({update}): its cookie can no longer be sent, so the change could never be found again. Change the session before writing the response."
                )
            )
        lock gate (fun () ->
            draft <- PatchDraft.record (latest ()) update
            stale <- true
            pending.Add update)

    /// <summary>A point this request's changes can go back to: gives the function that forgets every change recorded
    /// after it, to the tree and to the facts, and the view of them it gave (an account switch that a refused sign-in
    /// undoes: the session stays as it was for the user still signed in). Changes committed meanwhile stay committed.
    /// The function does nothing, and says so (false), once the handle holds another session than at the savepoint
    /// (the session ended meanwhile: the handle holds a new, empty one, which nothing may bring the old one's view to).</summary>
    member internal _.Savepoint() : unit -> bool =
        let struct (savedId, count, metaCount, savedCurrent, savedDraft, savedStale, savedMeta) =
            lock gate (fun () -> struct (ticket.Id, pending.Count, pendingMeta.Count, current, draft, stale, meta))
        fun () ->
            lock gate (fun () ->
                if isNull savedId || ticket.Id <> savedId then
                    false
                else
                    // A move that failed put what it took back in front, in order: what follows the counts came after.
                    if pending.Count > count then pending.RemoveRange(count, pending.Count - count)
                    if pendingMeta.Count > metaCount then pendingMeta.RemoveRange(metaCount, pendingMeta.Count - metaCount)
                    current <- savedCurrent
                    draft <- savedDraft
                    stale <- savedStale
                    meta <- savedMeta
                    true)

    /// <summary>The fact at <paramref name="path"/> the session is to be created with should this request create it (by
    /// any change, commit or move): the one asked for earlier, else <paramref name="make"/>'s, asked for now, in one step
    /// (two threads asking at once get the same). Nothing is recorded otherwise: a value handed out while the session
    /// is new (ISession's <c>Id</c>) stays its value once something is stored, without keeping a session nothing else
    /// was stored in.</summary>
    member internal _.CreationFact(path: SessionPath, make: unit -> Json) : Json =
        lock gate (fun () ->
            let asked =
                creationExtras
                |> Array.tryPick (fun update ->
                    match update with
                    | Update.Set(at, value) when at = path -> Some value
                    | _ -> None)
            match asked with
            | Some value -> value
            | None ->
                let value = make ()
                let update = Update.Set(path, value)
                Update.validate update
                creationExtras <- Array.append creationExtras [| update |]
                value)

    /// <summary>Records a change of the facts beside the tree (a top-level key of <see cref="P:Sesame.SessionHandle.Meta"/>).</summary>
    member internal _.RecordMeta(update: Update) : unit =
        ensureLoaded ()
        Update.validate update
        if not (stored ()) && context.Response.HasStarted then
            raise (InvalidOperationException "Cannot change a new session after the response has started: its cookie can no longer be sent.")
        lock gate (fun () ->
            meta <- Update.apply update meta
            pendingMeta.Add update)

    /// <summary>Sets the value at a path, creating missing objects on the way.</summary>
    member this.Set(path: SessionPath, value: Json) = this.Record(Update.Set(path, value))

    /// <summary>Removes the value at a path; an array item is removed by rewriting its array (as this request sees it:
    /// see the README on array items and concurrent requests). Nothing is recorded when there is nothing there.</summary>
    member this.Remove(path: SessionPath) =
        ensureLoaded ()
        if path.IsRoot then
            this.Record(Update.Set(SessionPath.root, Json.emptyObject))
        else
            // The read and the update it records in one step: two threads of a request removing items of one array
            // would otherwise both rewrite it from the same reading, and one removal would be lost.
            lock gate (fun () ->
                match List.last path.Segments, this.TryFind path with
                | _, None -> ()
                | Segment.Index index, Some _ ->
                    let parent = SessionPath.ofSegments (List.take (path.Segments.Length - 1) path.Segments)
                    match this.TryFind parent with
                    | Some(Json.Array items) -> this.Record(Update.Set(parent, Json.Array(items.RemoveAt index)))
                    | _ -> ()
                | Segment.Key _, Some _ -> this.Record(Update.Remove path))

    /// <summary>Adds to the number at a path exactly (a missing value counts as zero) and gives the new value.
    /// Concurrent requests' increments of one path add up.</summary>
    member this.Increment(path: SessionPath, by: decimal) : JsonNumber =
        this.Record(Update.increment path by)
        match this.TryFind path with
        | Some(Json.Number n) -> n
        | _ -> JsonNumber.OfDecimal by

    /// <summary>Adds a value at the end of the array at a path (a missing array is created) and gives the array's new length.
    /// Concurrent requests' appends to one array all survive.</summary>
    /// <exception cref="T:Sesame.PathConflictException">The path holds something other than an array; nothing is recorded.</exception>
    member this.Append(path: SessionPath, value: Json) : int =
        this.Record(Update.Append(path, value))
        // Read from the draft the update left, without making the array a tree.
        match lock gate (fun () -> PatchDraft.arrayLength path draft) with
        | ValueSome length -> length
        | ValueNone -> 1

    /// <summary>Replaces the whole session with an object.</summary>
    /// <exception cref="System.ArgumentException">The value is not a JSON object.</exception>
    member this.Replace(value: Json) =
        match value with
        | Json.Object _ -> this.Record(Update.Set(SessionPath.root, value))
        | _ -> invalidArg "value" "A session is a JSON object; replace it with an object."

    /// <summary>Empties the session (it stays alive, with no values).</summary>
    member this.Clear() = this.Record(Update.Set(SessionPath.root, Json.emptyObject))

    /// <summary>
    /// Folds the pending updates into one patch and commits it in one write; does nothing when
    /// nothing changed. A new session is created in the store by its first commit, under a fresh id.
    /// </summary>
    /// <exception cref="T:Sesame.SessionStoreException">The store failed; the changes were not stored (or, after a timeout,
    /// may have been: the error says so). They are dropped either way, so a later call with no new change fails too
    /// (with this error inside), rather than report them stored.</exception>
    /// <exception cref="T:Sesame.SessionTooLargeException">The session would pass the size limit; nothing was stored.</exception>
    member _.CommitAsync(cancellationToken: CancellationToken) : Task =
        let struct (updates, metaUpdates) = takePending ()
        if updates.Length = 0 && metaUpdates.Length = 0 then
            match failedCommit with
            | null -> Task.CompletedTask
            | failure ->
                // A retry of a commit that failed: its changes were dropped with it (the store may have applied them, and
                // sending them again could apply an increment twice), so saying "stored" now would be a lie.
                Task.FromException(
                    SessionStoreException(
                        "This request's last commit failed and its changes were dropped, so there is nothing to retry: they were not stored by this call. Make the changes again (or answer that they were not saved).",
                        failure
                    )
                )
        else
            task {
                checkTaken metaUpdates
                let isNew = not (stored ())
                // A new session always gets a fresh id: never adopt an id the client chose (session fixation).
                let target = if isNew then SessionTicket.create (SessionId.create ()) (time.GetUtcNow()) else ticket
                // Every update was validated when it was recorded.
                let sent = creationExtras
                let metaUpdates = if isNew then Array.append (creationFacts target.Created) metaUpdates else metaUpdates
                let condition = shapeCondition isNew (updates.Length > 0)
                let change = SessionChange(Patch.foldChecked updates, Patch.foldChecked metaUpdates, condition)
                let mutable result = CommitResult.Committed
                try
                    let! answer = store.CommitAsync(target.Id, change, commitOptions target.Created (not isNew), cancellationToken)
                    result <- answer
                    failedCommit <- null
                    match answer with
                    | CommitResult.Committed ->
                        if isNew then
                            ticket <- target
                            cookie <- CookieAction.Issue target
                            createdWithExtras sent
                        shapeCommitted condition
                        Log.commitDone logger (updates.Length + metaUpdates.Length) isNew
                    | CommitResult.ShapeChanged -> ()
                    | _ -> Log.gone logger (updates.Length + metaUpdates.Length)
                with e ->
                    Log.commitError logger e
                    ExceptionDispatchInfo.Throw(dropped e)
                // Not stored, and not silently: the handler's changes were made for a shape the session no longer has.
                if result = CommitResult.ShapeChanged then raise (dropped (shapeChanged (updates.Length + metaUpdates.Length)))
            }

    /// Moves the stored session to a new id with this request's changes, in one atomic store step. When the session is
    /// gone, `follow` may name sessions a sign-in of this request's own user moved it to meanwhile (RecentSignIns): the
    /// request's changes go to the first that exists, and the request goes on with that session, its facts as stored.
    member private this.MoveAsync(toId: string, extraMeta: Update[], follow: string -> string list) : Task<CommitResult> = task {
        let old = ticket
        let struct (updates, metaUpdates) as taken = takePending ()
        checkTaken metaUpdates
        let condition = shapeCondition false (updates.Length > 0)
        let change = SessionChange(Patch.foldChecked updates, Patch.foldChecked (Array.append metaUpdates extraMeta), condition)
        let! moved = writeTaken (fun () -> store.MoveAsync(old.Id, toId, change, commitOptions old.Created false, requestAborted ()))
        // The first of the sessions other sign-ins made that exists, with its stored facts, once this request's changes
        // are in it.
        let join (candidates: string list) : Task<(string * Json) voption> = task {
            let own = SessionChange(Patch.foldChecked updates, Patch.foldChecked metaUpdates, condition)
            let mutable rest = candidates
            let mutable joined = ValueNone
            while joined.IsNone && not rest.IsEmpty do
                let id = rest.Head
                rest <- rest.Tail
                match! store.CommitAsync(id, own, commitOptions old.Created true, requestAborted ()) with
                | CommitResult.Committed ->
                    // Its facts are the other sign-in's (its device facts, its time): read, not assumed.
                    match! store.LoadAsync(id, options.IdleTimeoutAt(old.Created, time), requestAborted ()) with
                    | null -> ()
                    | stored -> joined <- ValueSome(id, stored.Meta)
                | CommitResult.ShapeChanged -> raise (shapeChanged (updates.Length + metaUpdates.Length))
                | _ -> ()
            return joined
        }
        let! result =
            match moved with
            | CommitResult.SessionGone -> task {
                match! writeTaken (fun () -> join (follow old.Id)) with
                | ValueSome(joined, joinedMeta) ->
                    Log.signInJoinedMove logger
                    meta <- joinedMeta
                    return struct (CommitResult.Committed, joined)
                | ValueNone -> return struct (moved, old.Id)
              }
            | CommitResult.Committed ->
                meta <- Patch.apply (Patch.foldChecked extraMeta) meta
                Task.FromResult(struct (moved, toId))
            | _ -> Task.FromResult(struct (moved, old.Id))
        let struct (result, target) = result
        match result with
        | CommitResult.Committed ->
            shapeCommitted condition
            ticket <- { old with Id = target }
            cookie <- CookieAction.Issue ticket
        | CommitResult.SessionGone ->
            // Destroyed or expired while this request ran: never bring it back. What this request
            // changed was a change to that session, and goes with it.
            Log.gone logger (updates.Length + metaUpdates.Length)
            becomeNew ()
            // The flash values the request read or kept were the ended session's, as after a destroy.
            this.FlashState <- null
            cookie <- CookieAction.Expire
        | CommitResult.ShapeChanged -> raise (dropped (shapeChanged (updates.Length + metaUpdates.Length)))
        | _ -> putBack taken
        return result
    }

    /// <summary>
    /// Moves the session, with its data and this request's changes, to a new id in one atomic store step and kills the
    /// old id (call it at login, against session fixation). The new cookie goes out with this response; a late commit
    /// under the old id finds it gone and cannot bring it back, and a change another request committed under the old id
    /// before the move is carried over.
    /// </summary>
    /// <returns><c>true</c> when the session moved (or was new, so its first commit gives it a fresh id anyway);
    /// <c>false</c> when it had been destroyed or had expired meanwhile: the handle then holds a new, empty session
    /// (never the old data) and the client's cookie is expired.</returns>
    /// <exception cref="System.InvalidOperationException">The response has started, so the new cookie could not be sent.</exception>
    member this.RotateAsync() : Task<bool> =
        ensureLoaded ()
        guardStarted "rotate the session"
        if not (stored ()) then
            // A new session has no id to fix yet: its first commit makes a fresh one.
            Task.FromResult true
        else
            task {
                let toId =
                    match SessionMeta.userOf meta with
                    | Some user -> SessionId.createFor user
                    | None -> SessionId.create ()
                // A rotation follows no sign-in's move: its request proved nothing that the old id's holder could not.
                let! result = this.MoveAsync(toId, [||], fun _ -> [])
                return result = CommitResult.Committed
            }

    /// <summary>
    /// Signs the session in as <paramref name="userId"/>: moves it to a new id (against fixation) bound to the user,
    /// with the device facts <see cref="P:Sesame.SesameOptions.DeviceFacts"/> names, in one atomic store step that also
    /// adds it to the user's index. The session keeps its data: a login that must start clean calls
    /// <see cref="M:Sesame.SessionHandle.DestroyAsync"/> first, and signs in the new, empty session it leaves.
    /// </summary>
    /// <returns><c>SignedIn</c>, or <c>LimitReached</c> when the user has <c>MaxSessionsPerUser</c> sessions and the
    /// policy refuses more (nothing changed, the session is as it was).</returns>
    /// <exception cref="System.ArgumentException">The user id is null or empty.</exception>
    /// <exception cref="System.InvalidOperationException">The response has started, so the new cookie could not be sent.</exception>
    member this.SignInAsync(userId: string) : Task<SignInResult> =
        ensureLoaded ()
        if String.IsNullOrEmpty userId then invalidArg (nameof userId) "A user id cannot be null or empty."
        guardStarted "sign in"
        task {
            let binding = [| Update.Set(SessionMeta.UserPath, Json.string userId); Update.Set(SessionMeta.DevicePath, deviceFacts ()) |]
            let toId = SessionId.createFor userId
            let signInNew () = task {
                // Not stored yet (or gone): the session is created, bound, at its first id.
                let issued = SessionTicket.create toId (time.GetUtcNow())
                let created = issued.Created
                let struct (updates, metaUpdates) as taken = takePending ()
                let sent = creationExtras
                let facts = creationFacts created
                let change = SessionChange(Patch.foldChecked updates, Patch.foldChecked (Array.concat [ facts; metaUpdates; binding ]))
                let! result = writeTaken (fun () -> store.MoveAsync(null, toId, change, commitOptions created false, requestAborted ()))
                match result with
                | CommitResult.Committed ->
                    meta <- Patch.apply (Patch.foldChecked (Array.append facts binding)) meta
                    createdWithExtras sent
                    ticket <- issued
                    cookie <- CookieAction.Issue ticket
                | _ -> putBack taken
                return result
            }
            let! result =
                if stored () then
                    task {
                        let from = ticket.Id
                        // Moved meanwhile by a sign-in of this user (a login submitted twice): that session is joined.
                        // Not in an account switch: the switch's own changes (it empties the session) would empty the
                        // session the other sign-in made.
                        let follow =
                            match SessionMeta.userOf meta with
                            | Some bound when bound <> userId -> fun _ -> []
                            | _ -> fun old -> signIns.Candidates(old, userId, toId)
                        // Noted before the move: the store answers only after the app's OnSignedIn handlers ran, and a
                        // second submit may come meanwhile.
                        signIns.Record(from, toId, userId)
                        let! moved = task {
                            try
                                return! this.MoveAsync(toId, binding, follow)
                            finally
                                // Not moved there (refused, gone, joined elsewhere, failed): nobody is to follow it.
                                if ticket.Id <> toId then signIns.Forget(from, toId)
                        }
                        match moved with
                        // Ended while this request ran: sign in afresh, with none of the old session's data.
                        | CommitResult.SessionGone -> return! signInNew ()
                        | other -> return other
                    }
                else
                    signInNew ()
            match result with
            | CommitResult.Committed -> return SignInResult.SignedIn
            | CommitResult.UserLimitReached -> return SignInResult.LimitReached
            | other -> return raise (SessionStoreException $"The store answered a sign-in with {other}.")
        }

    /// <summary>
    /// Ends the session (call it at logout): deletes it from the store (and from its user's index), drops this request's
    /// changes and expires the client's cookie. An in-flight request of the same session cannot bring it back, and a
    /// client that hangs up does not stop the delete (only the store's own time budget bounds it). The handle need not
    /// be loaded: one that is not, or whose load failed (a hang-up cancels it), ends the session the request names
    /// without loading it.
    /// The handle then holds a new, empty session, which a later change in this request would create afresh.
    /// </summary>
    member this.DestroyAsync() : Task =
        ensureOpen ()
        touched <- true
        task {
            // Until the handle is loaded: a load under way (or another destroy's delete) is waited for; with none, or
            // after one that failed, this destroy takes the load's place, so that a LoadAsync meanwhile waits for it.
            let mutable settled = false
            while not settled do
                let struct (slot: TaskCompletionSource, before: Task) =
                    lock gate (fun () ->
                        if loaded then
                            struct (null, null)
                        elif isNull loading || loading.IsFaulted || loading.IsCanceled then
                            let slot = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
                            let before = loading
                            loading <- slot.Task
                            struct (slot, before)
                        else
                            struct (null, loading))
                if isNull slot && isNull before then
                    settled <- true
                elif isNull slot then
                    try
                        do! before
                    with _ ->
                        ()
                else
                    // Not loaded, or its load failed: the id the request came with is all a logout needs. Not the
                    // request's abort: a user who clicks "log out" and closes the window is logged out all the same.
                    try
                        match requestTicket () with
                        | ValueSome named ->
                            let! _ = store.DeleteAsync(named.Id, CancellationToken.None)
                            ()
                        | ValueNone -> ()
                    with e ->
                        // The handle is as it was (a later LoadAsync finds the load that failed, or starts one).
                        lock gate (fun () -> loading <- before)
                        slot.TrySetException e |> ignore
                        // Observed here: nobody may be waiting for it.
                        slot.Task.Exception |> ignore
                        ExceptionDispatchInfo.Throw e
                    // The handle now holds a new, empty session: loaded, as a load that found nothing leaves it.
                    lock gate (fun () -> loaded <- true)
                    slot.TrySetResult() |> ignore
                    settled <- true
            takePending () |> ignore
            // The flash values the request read or kept were the ended session's.
            this.FlashState <- null
            if stored () then
                // Not the request's abort: a user who clicks "log out" and closes the window is logged out all the same.
                let! _ = store.DeleteAsync(ticket.Id, CancellationToken.None)
                ()
            becomeNew ()
            cookie <- CookieAction.Expire
        }

    /// Ends the handle's life: later use throws.
    member internal _.Close() = closed <- true
