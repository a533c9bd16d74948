namespace Sesame

open System
open System.Collections.Generic
open System.Diagnostics
open System.Runtime.ExceptionServices
open System.Threading.Tasks
open Microsoft.Extensions.Logging

/// <summary>
/// The app's store as every request sees it: each call is passed on unchanged, and timed, counted, traced and logged
/// on the way (only what something listens to), and what it did raises the app's lifecycle events. It is also the
/// observer of the app's store, so the sessions a store ends by itself (expiry, eviction, user limit) are counted and
/// raised too. No store needs to know about it.
/// </summary>
[<Sealed>]
type internal InstrumentedStore(inner: SessionStore, instruments: SesameInstruments, events: SesameEvents, services: IServiceProvider, logger: ILogger) =
    inherit SessionStore()

    let name = InstrumentedStore.NameOf inner
    let storeTag = KeyValuePair<string, obj>(TelemetryTags.Store, name)
    let commitTag = KeyValuePair<string, obj>(TelemetryTags.Operation, "commit")
    let moveTag = KeyValuePair<string, obj>(TelemetryTags.Operation, "move")
    let deleteTag = KeyValuePair<string, obj>(TelemetryTags.Operation, "delete")
    let source = SesameInstruments.Source
    let hooked = not (isNull events) && events.IsHooked

    let debugging () = logger.IsEnabled LogLevel.Debug

    let seconds (started: int64) = if started = 0L then 0.0 else Stopwatch.GetElapsedTime(started).TotalSeconds

    let errorTypeOf (error: exn) = error.GetType().FullName

    /// Ends a span with its outcome (and its error, without the message: it may quote the session).
    let endSpan (activity: Activity) (outcome: string) (error: exn) =
        if not (isNull activity) then
            activity.SetTag(TelemetryTags.Outcome, outcome) |> ignore
            if not (isNull error) then
                activity.SetTag(TelemetryTags.ErrorType, errorTypeOf error) |> ignore
                activity.SetStatus(ActivityStatusCode.Error) |> ignore
            activity.Dispose()

    let startSpan (spanName: string) (id: string) =
        match source.StartActivity(spanName, ActivityKind.Internal) with
        | null -> null
        | activity ->
            if activity.IsAllDataRequested then
                activity.SetTag(TelemetryTags.Store, name) |> ignore
                if not (isNull id) then activity.SetTag(TelemetryTags.SessionHandle, SessionSummary.HandleOf id) |> ignore
            activity

    let recordDuration (started: int64) (operation: KeyValuePair<string, obj>) (outcome: string) (error: exn) =
        if started <> 0L && instruments.CommitDuration.Enabled then
            let elapsed = seconds started
            let outcomeTag = KeyValuePair<string, obj>(TelemetryTags.Outcome, outcome)
            if isNull error then
                instruments.CommitDuration.Record(elapsed, storeTag, operation, outcomeTag)
            else
                let mutable tags = TagList()
                tags.Add storeTag
                tags.Add operation
                tags.Add outcomeTag
                tags.Add(TelemetryTags.ErrorType, errorTypeOf error)
                instruments.CommitDuration.Record(elapsed, &tags)

    let handleOrEmpty (id: string) = if isNull id then "(new)" else SessionSummary.HandleOf id

    /// Runs an app handler inline; a handler that throws or fails is logged, never passed on.
    let invoke (eventName: string) (handler: unit -> Task) : Task =
        try
            let running = handler ()
            if isNull running || running.IsCompletedSuccessfully then
                Task.CompletedTask
            else
                task {
                    try
                        do! running
                    with e ->
                        Log.eventHandlerFailed logger eventName e
                }
        with e ->
            Log.eventHandlerFailed logger eventName e
            Task.CompletedTask

    /// Where the app's handlers for the ends a store made by itself run (see DetachedHandlers).
    let detached = DetachedHandlers(DetachedHandlers.DefaultCapacity, invoke, logger)

    /// Runs an app handler for an end a store made by itself (a sweep, an eviction) off the store's thread, with no
    /// request's context; it is not waited for.
    let invokeDetached (eventName: string) (handler: unit -> Task) = detached.Post(eventName, handler)

    /// The user a change binds its session to, when it does.
    let boundUser (change: SessionChange) =
        if change.BindsUser then
            match Patch.tryApply change.Meta Json.emptyObject with
            | Ok facts -> SessionMeta.userOf facts
            | Error _ -> None
        else
            None

    /// Records a finished load.
    member private _.LoadDone(id: string, started: int64, activity: Activity, session: StoredSession, error: exn) =
        let outcome =
            if not (isNull error) then Outcome.ofError error
            elif isNull session then Outcome.Missing
            else Outcome.Found
        let elapsed = seconds started
        let debug = debugging ()
        let recorded = not (isNull activity) && activity.IsAllDataRequested
        // Known to a store that read the session's text; otherwise a walk of the tree: only for someone who asked.
        let size = if not (isNull session) && (instruments.SessionSize.Enabled || recorded || debug) then session.SizeBytes else 0L
        if started <> 0L && instruments.LoadDuration.Enabled then
            let outcomeTag = KeyValuePair<string, obj>(TelemetryTags.Outcome, outcome)
            if isNull error then
                instruments.LoadDuration.Record(elapsed, storeTag, outcomeTag)
            else
                instruments.LoadDuration.Record(elapsed, storeTag, outcomeTag, KeyValuePair<string, obj>(TelemetryTags.ErrorType, errorTypeOf error))
        if not (isNull session) && instruments.SessionSize.Enabled then instruments.SessionSize.Record(size, storeTag)
        if recorded && not (isNull session) then activity.SetTag(TelemetryTags.SessionBytes, size) |> ignore
        endSpan activity outcome error
        if not (isNull error) && not (error :? OperationCanceledException) then Log.loadError logger error
        if debug then Log.sessionLoaded logger (SessionSummary.HandleOf id) outcome size (elapsed * 1000.0)

    /// Records a finished commit or move, and raises what it did.
    member private _.WriteDone
        (fromId: string, id: string, isMove: bool, change: SessionChange, mustExist: bool, started: int64, activity: Activity, result: CommitResult, error: exn)
        : Task =
        let outcome = if isNull error then Outcome.ofResult result else Outcome.ofError error
        let operation = if isMove then moveTag else commitTag
        recordDuration started operation outcome error
        let committed = isNull error && result = CommitResult.Committed
        let debug = debugging ()
        let measureBytes = instruments.PatchSize.Enabled || (not (isNull activity) && activity.IsAllDataRequested) || debug
        let patchBytes = if committed && measureBytes then PatchSize.Of change else 0L
        // Counting the updates folds a patch the store did not fold (see Patch): only when someone reads the count.
        let countUpdates = instruments.PatchUpdates.Enabled || (not (isNull activity) && activity.IsAllDataRequested) || debug
        let updateCount = if committed && countUpdates then PatchSize.UpdatesOf change else 0
        if committed then
            if instruments.PatchSize.Enabled then instruments.PatchSize.Record(patchBytes, storeTag, operation)
            if instruments.PatchUpdates.Enabled then instruments.PatchUpdates.Record(int64 updateCount, storeTag, operation)
        if not (isNull activity) && committed then
            activity.SetTag(TelemetryTags.PatchBytes, patchBytes).SetTag(TelemetryTags.PatchUpdates, updateCount) |> ignore
        endSpan activity outcome error
        if debug then
            let ms = seconds started * 1000.0
            if isMove then
                Log.sessionMoved logger (handleOrEmpty fromId) (SessionSummary.HandleOf id) outcome updateCount patchBytes ms
            else
                Log.sessionStored logger (SessionSummary.HandleOf id) outcome updateCount patchBytes ms
        // What happened to the session's life.
        let created = committed && (if isMove then isNull fromId else not mustExist)
        let signedIn = if committed && isMove then boundUser change else None
        let rotated = committed && isMove && not (isNull fromId) && signedIn.IsNone
        if created then instruments.Created.Add(1L, storeTag)
        if rotated then instruments.Rotated.Add(1L, storeTag)
        if signedIn.IsSome then instruments.SignedIn.Add(1L, storeTag)
        if not hooked then
            Task.CompletedTask
        elif not (isNull error) then
            invoke "CommitFailed" (fun () ->
                events.CommitFailed(SessionCommitFailedContext(services, (if isMove && not (isNull fromId) then fromId else id), name, error)))
        elif created || rotated || signedIn.IsSome then
            task {
                let user =
                    match signedIn with
                    | Some user -> user
                    | None -> null
                if created then do! invoke "Created" (fun () -> events.Created(SessionCreatedContext(services, id, name, user)))
                if rotated then do! invoke "Rotated" (fun () -> events.Rotated(SessionRotatedContext(services, id, name, fromId)))
                if signedIn.IsSome then do! invoke "SignedIn" (fun () -> events.SignedIn(SessionSignedInContext(services, id, name, fromId, user)))
            }
        else
            Task.CompletedTask

    /// Records a finished delete, and raises it.
    member private _.DeleteDone(id: string, started: int64, activity: Activity, deleted: bool, error: exn) : Task =
        let outcome =
            if not (isNull error) then Outcome.ofError error
            elif deleted then Outcome.Committed
            else Outcome.Gone
        recordDuration started deleteTag outcome error
        endSpan activity outcome error
        if debugging () then Log.sessionDeleted logger (SessionSummary.HandleOf id) outcome (seconds started * 1000.0)
        if deleted then
            instruments.Destroyed.Add(1L, storeTag)
            if hooked then invoke "Destroyed" (fun () -> events.Destroyed(SessionDestroyedContext(services, id, name))) else Task.CompletedTask
        else
            Task.CompletedTask

    /// The exception a completed task failed with (a cancellation as one).
    static member private ErrorOf(failed: Task) : exn =
        if failed.IsCanceled then TaskCanceledException(failed) :> exn
        elif isNull failed.Exception then null
        elif failed.Exception.InnerExceptions.Count = 1 then failed.Exception.InnerException
        else failed.Exception :> exn

    /// The store as the <c>sesame.store</c> tag names it: its type's name, lower case, without "Store".
    static member NameOf(store: SessionStore) =
        let typeName = store.GetType().Name
        let typeName =
            match typeName.IndexOf '`' with
            | -1 -> typeName
            | i -> typeName.Substring(0, i)
        let bare = if typeName.Length > 5 && typeName.EndsWith("Store", StringComparison.Ordinal) then typeName.Substring(0, typeName.Length - 5) else typeName
        bare.ToLowerInvariant()

    /// The app's store, which this one passes every call to.
    member _.Inner = inner

    /// The store's name in metrics, spans and events.
    member _.Name = name

    override _.IsShared = inner.IsShared

    override _.ActiveSessionCount = inner.ActiveSessionCount

    // A store that answers at once (memory, file) gets its own task back, with nothing allocated on the way; one that
    // answers later is awaited. The span is started before the store is called, so the store's own spans nest in it,
    // and taken off the caller's context again when the call goes on without it.

    override this.LoadAsync(id, idleTimeout, cancellationToken) =
        let watched = instruments.LoadsWatched || source.HasListeners() || debugging ()
        let started = if watched then Stopwatch.GetTimestamp() else 0L
        let previous = Activity.Current
        let activity = if watched then startSpan "sesame.session.load" id else null
        let loading =
            try
                inner.LoadAsync(id, idleTimeout, cancellationToken)
            with e ->
                Task.FromException<StoredSession> e
        if loading.IsCompletedSuccessfully then
            if watched then this.LoadDone(id, started, activity, loading.Result, null)
            loading
        elif loading.IsCompleted then
            // Even unwatched, a failed load is logged (event 7).
            this.LoadDone(id, started, activity, null, InstrumentedStore.ErrorOf loading)
            loading
        else
            if not (isNull activity) then Activity.Current <- previous
            task {
                try
                    let! session = loading
                    if watched then this.LoadDone(id, started, activity, session, null)
                with e ->
                    this.LoadDone(id, started, activity, null, e)
                return! loading
            }

    /// Records and raises what a commit or move did, once its task (already started, inside its span) is known.
    member private this.Written
        (
            fromId: string,
            id: string,
            isMove: bool,
            change: SessionChange,
            mustExist: bool,
            started: int64,
            previous: Activity,
            activity: Activity,
            writing: Task<CommitResult>
        ) =
        if writing.IsCompleted then
            let result = if writing.IsCompletedSuccessfully then writing.Result else CommitResult.Committed
            let error = if writing.IsCompletedSuccessfully then null else InstrumentedStore.ErrorOf writing
            let raised = this.WriteDone(fromId, id, isMove, change, mustExist, started, activity, result, error)
            if raised.IsCompletedSuccessfully then
                writing
            else
                task {
                    do! raised
                    return! writing
                }
        else
            if not (isNull activity) then Activity.Current <- previous
            task {
                let mutable result = CommitResult.Committed
                let mutable error = null
                try
                    let! written = writing
                    result <- written
                with e ->
                    error <- e
                do! this.WriteDone(fromId, id, isMove, change, mustExist, started, activity, result, error)
                return! writing
            }

    /// Whether commits and moves are timed, traced, logged or raised at all.
    member private _.WritesWatched = hooked || instruments.WritesWatched || source.HasListeners() || debugging ()

    /// The store's commit (fromId null, not a move) or move.
    member private _.PassOn(fromId: string, id: string, isMove: bool, change: SessionChange, options: CommitOptions, cancellationToken) =
        if isMove then inner.MoveAsync(fromId, id, change, options, cancellationToken) else inner.CommitAsync(id, change, options, cancellationToken)

    /// A commit or move, passed on between the span's start and the record of what happened when anything watches. The
    /// store is called directly, not through a closure, so watching allocates nothing per call for it.
    member private this.Write(fromId: string, id: string, isMove: bool, change: SessionChange, options: CommitOptions, cancellationToken) =
        if this.WritesWatched then
            let started = Stopwatch.GetTimestamp()
            let previous = Activity.Current
            let activity = startSpan (if isMove then "sesame.session.move" else "sesame.session.commit") id
            // What WriteDone measures reads the folded patch (see Patch): folded before the store sees it, the store
            // applies the folded updates, rather than the recorded ones with the fold still to pay after.
            if instruments.PatchSize.Enabled || instruments.PatchUpdates.Enabled || (not (isNull activity) && activity.IsAllDataRequested) || debugging () then
                PatchSize.UpdatesOf change |> ignore
            let writing =
                try
                    this.PassOn(fromId, id, isMove, change, options, cancellationToken)
                with e ->
                    Task.FromException<CommitResult> e
            // A move never requires the session to exist (a first visit's sign-in moves from nothing).
            let mustExist = not isMove && options.MustExist
            this.Written(fromId, id, isMove, change, mustExist, started, previous, activity, writing)
        else
            this.PassOn(fromId, id, isMove, change, options, cancellationToken)

    override this.CommitAsync(id, change, options, cancellationToken) = this.Write(null, id, false, change, options, cancellationToken)

    override this.MoveAsync(fromId, toId, change, options, cancellationToken) = this.Write(fromId, toId, true, change, options, cancellationToken)

    override this.DeleteAsync(id, cancellationToken) =
        if hooked || instruments.DeletesWatched || source.HasListeners() || debugging () then
            task {
                let started = Stopwatch.GetTimestamp()
                let activity = startSpan "sesame.session.delete" id
                let mutable failure = null
                let mutable deleted = false
                try
                    let! done' = inner.DeleteAsync(id, cancellationToken)
                    deleted <- done'
                with e ->
                    failure <- e
                do! this.DeleteDone(id, started, activity, deleted, failure)
                if not (isNull failure) then ExceptionDispatchInfo.Throw failure
                return deleted
            }
        else
            inner.DeleteAsync(id, cancellationToken)

    override _.ListAsync(query, cancellationToken) = inner.ListAsync(query, cancellationToken)

    /// <summary>Waits for the app's handlers of the expiry and eviction events queued so far (see DetachedHandlers), or
    /// until the host's shutdown timeout; says how many were left, if any.</summary>
    member internal _.DrainHandlersAsync(cancellationToken: Threading.CancellationToken) : Task = task {
        let! left = detached.DrainAsync cancellationToken
        if left > 0L then Log.eventsLeftAtStop logger left
    }

    /// The facts reported with an ended session go only to the app's handlers.
    interface IObserverOfFacts with
        member _.ReadsFacts = hooked

    /// What the app's store reports of the sessions it ends by itself.
    interface ISessionStoreObserver with
        member _.SessionEnded(id, meta, reason) =
            try
                match reason with
                | SessionEndReason.Expired -> instruments.Expired.Add(1L, storeTag)
                | SessionEndReason.UserLimit -> instruments.Evicted.Add(1L, storeTag, KeyValuePair<string, obj>(TelemetryTags.EvictionReason, "user_limit"))
                | _ -> instruments.Evicted.Add(1L, storeTag, KeyValuePair<string, obj>(TelemetryTags.EvictionReason, "bounds"))
                if debugging () then Log.sessionEnded logger name reason (SessionSummary.HandleOf id)
                if hooked then
                    let context = SessionEndedContext(services, id, name, meta, reason)
                    if reason = SessionEndReason.Expired then
                        invokeDetached "Expired" (fun () -> events.Expired context)
                    else
                        invokeDetached "Evicted" (fun () -> events.Evicted context)
            with e ->
                // Never disturb the store's sweep.
                Log.eventHandlerFailed logger "SessionEnded" e

    /// <summary>Wraps the app's store, and makes the wrapper its observer (Sesame's, replacing any earlier one).</summary>
    static member Wrap(store: SessionStore, instruments: SesameInstruments, events: SesameEvents, services: IServiceProvider, logger: ILogger) =
        let instrumented = new InstrumentedStore(store, instruments, events, services, logger)
        store.Observer <- (instrumented :> ISessionStoreObserver)
        instruments.ObserveActiveSessions(instrumented.Name, store)
        Log.storeInUse logger instrumented.Name (store.GetType().FullName)
        instrumented
