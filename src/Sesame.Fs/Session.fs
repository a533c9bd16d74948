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
    /// Send a cookie for this ticket (a session created, or rotated to a new id).
    | Issue of SessionTicket
    /// Tell the client to drop its cookie (the session was destroyed).
    | Expire

/// <summary>
/// What a session scope that ended early leaves for a later scope of the same request (a <c>withSession</c> in a
/// branch of <c>choose</c> that fell through, then another in the next branch): the session it ended with, so
/// that the request keeps one session however many scopes it passes through.
/// </summary>
[<Sealed; AllowNullLiteral>]
type internal SessionCarryOver(ticket: SessionTicket voption) =
    /// The session's ticket, or none when the earlier scope found no session or destroyed it.
    member _.Ticket = ticket

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
        readTicket: HttpRequest -> SessionTicket voption,
        store: ISessionStore,
        options: SesameOptions,
        time: TimeProvider,
        logger: ILogger
    ) =
    let pending = List<Update>()
    /// The update log doubles as the lock that guards it and the load.
    let gate = pending
    let mutable loadedSelf: Task<SessionHandle> = null
    let mutable loading: Task = null
    let mutable loaded = false
    /// The session's ticket while the store holds it (found at load, or created by a commit); null id otherwise.
    let mutable ticket = { Id = null; Created = DateTimeOffset.MinValue }
    let mutable cookie = CookieAction.Keep
    let mutable current = Json.emptyObject
    let mutable closed = false
    let mutable touched = false

    let stored () = not (isNull ticket.Id)

    let ensureOpen () =
        if closed then
            raise (ObjectDisposedException("SessionHandle", "This session belongs to a request that has ended; changes to it would never be stored. Get the session of the current request instead."))

    let ensureLoaded () =
        ensureOpen ()
        if not loaded then
            raise (InvalidOperationException "The session has not been loaded yet: await its LoadAsync (Session.loadAsync ctx in F#) before reading or changing it.")

    let commitOptions (created: DateTimeOffset) (mustExist: bool) =
        { IdleTimeout = options.IdleTimeoutAt(created, time.GetUtcNow())
          MustExist = mustExist
          MaxSizeBytes = options.MaxSessionBytes }

    let isPastAbsoluteTimeout (created: DateTimeOffset) =
        options.AbsoluteTimeout.HasValue && created + options.AbsoluteTimeout.Value <= time.GetUtcNow()

    /// Read when the store is called, not before: Kestrel creates the token on first use, and a request
    /// that never touches its session should not pay for it.
    let requestAborted () = context.RequestAborted

    let load () : Task =
        task {
            let fromRequest =
                match context.Features.Get<SessionCarryOver>() with
                | null -> readTicket context.Request
                | earlier -> earlier.Ticket
            match fromRequest with
            | ValueNone -> ()
            | ValueSome fromCookie when isPastAbsoluteTimeout fromCookie.Created ->
                Log.unknownSession logger
                // The absolute lifetime is over: the session is dead even if the store has not expired it yet.
                do! store.DeleteAsync(fromCookie.Id, requestAborted ())
            | ValueSome fromCookie ->
                let! found = store.LoadAsync(fromCookie.Id, options.IdleTimeoutAt(fromCookie.Created, time.GetUtcNow()), requestAborted ())
                match found with
                | Some tree ->
                    current <- tree
                    ticket <- fromCookie
                | None -> Log.unknownSession logger
            loaded <- true
        }

    let takePending () =
        lock gate (fun () ->
            let updates = pending.ToArray()
            pending.Clear()
            updates)

    /// The session id, or <c>null</c> while the session is new and not yet stored.
    member _.Id = ticket.Id

    /// Whether the session is new: not (yet) in the store.
    member _.IsNew = not (stored ())

    /// Whether the session has been loaded.
    member _.IsLoaded = loaded

    /// Whether this request read or changed the session (it loaded it).
    member _.WasTouched = touched

    /// Whether there are changes not yet committed.
    member _.HasPendingChanges = lock gate (fun () -> pending.Count > 0)

    /// The updates recorded and not yet committed, in order.
    member _.PendingUpdates: IReadOnlyList<Update> = lock gate (fun () -> pending.ToArray() :> IReadOnlyList<Update>)

    /// What the response must do with the cookie.
    member internal _.CookieAction = cookie

    /// The ticket of the session while the store holds it.
    member internal _.StoredTicket = if stored () then ValueSome ticket else ValueNone

    /// The options in force.
    member _.Options = options

    /// <summary>Loads the session on first use; later calls complete at once. A request that never calls it does no store I/O.</summary>
    /// <exception cref="T:Sesame.SessionStoreException">The store failed.</exception>
    member _.LoadAsync() : Task =
        ensureOpen ()
        touched <- true
        lock gate (fun () ->
            if isNull loading then loading <- load ()
            loading)

    /// This handle as a completed task, made once (<c>Session.loadAsync</c> hands it out on every call).
    member internal this.AsCompletedTask =
        if isNull loadedSelf then loadedSelf <- Task.FromResult this
        loadedSelf

    /// <summary>The whole session as it reads now: the snapshot with pending changes applied.</summary>
    member _.Current: Json =
        ensureLoaded ()
        current

    /// <summary>The value at a path, or <c>None</c>.</summary>
    member _.TryFind(path: Path) : Json option =
        ensureLoaded ()
        Path.tryGet path current

    /// <summary>The value at a path decoded as <typeparamref name="value"/>, or <c>None</c> when there is no value there.</summary>
    /// <exception cref="System.Text.Json.JsonException">There is a value but it does not fit the type; the message names the path.</exception>
    member this.TryGet<'value>(path: Path) : 'value option =
        match this.TryFind path with
        | None -> None
        | Some json ->
            try
                Some(Json.decodeWith<'value> options.SerializerOptions json)
            with :? JsonException as e ->
                raise (JsonException($"The session value at '{path}' cannot be read as {typeof<'value>.Name}: {e.Message}", e))

    /// <summary>Records an update, after checking it applies to the session as it reads now.</summary>
    /// <exception cref="T:Sesame.PathConflictException">The update does not apply; nothing is recorded.</exception>
    /// <exception cref="System.ArgumentException">The update would nest deeper than <see cref="F:Sesame.JsonModule.MaxDepth"/>, or holds
    /// a lone UTF-16 surrogate (<see cref="M:Sesame.UpdateModule.validate(Sesame.Update)"/>); nothing is recorded.</exception>
    /// <exception cref="System.InvalidOperationException">The session is new and the response has started: no cookie could
    /// reach the client any more, so the change could never be found again; nothing is recorded.</exception>
    member _.Record(update: Update) : unit =
        ensureLoaded ()
        Update.validate update
        if not (stored ()) && context.Response.HasStarted then
            raise (
                InvalidOperationException(
                    $"Cannot change a new session after the response has started ({update}): its cookie can no longer be sent, so the change could never be found again. Change the session before writing the response."
                )
            )
        lock gate (fun () ->
            current <- Update.apply update current
            pending.Add update)

    /// <summary>Sets the value at a path, creating missing objects on the way.</summary>
    member this.Set(path: Path, value: Json) = this.Record(Update.Set(path, value))

    /// <summary>Removes the value at a path; an array item is removed by rewriting its array. Nothing is recorded when there is nothing there.</summary>
    member this.Remove(path: Path) =
        ensureLoaded ()
        if path.IsRoot then
            this.Record(Update.Set(Path.root, Json.emptyObject))
        else
            match List.last path.Segments, Path.tryGet path current with
            | _, None -> ()
            | Segment.Index index, Some _ ->
                let parent = Path.ofSegments (List.take (path.Segments.Length - 1) path.Segments)
                match Path.tryGet parent current with
                | Some(Json.Array items) -> this.Record(Update.Set(parent, Json.Array(items.RemoveAt index)))
                | _ -> ()
            | Segment.Key _, Some _ -> this.Record(Update.Remove path)

    /// <summary>Adds to the number at a path exactly (a missing value counts as zero) and gives the new value.
    /// Concurrent requests' increments of one path add up.</summary>
    member this.Increment(path: Path, by: decimal) : JsonNumber =
        this.Record(Update.increment path by)
        match Path.tryGet path current with
        | Some(Json.Number n) -> n
        | _ -> JsonNumber.OfDecimal by

    /// <summary>Adds a value at the end of the array at a path (a missing array is created) and gives the array's new length.
    /// Concurrent requests' appends to one array all survive.</summary>
    /// <exception cref="T:Sesame.PathConflictException">The path holds something other than an array; nothing is recorded.</exception>
    member this.Append(path: Path, value: Json) : int =
        this.Record(Update.Append(path, value))
        match Path.tryGet path current with
        | Some(Json.Array items) -> items.Length
        | _ -> 1

    /// <summary>Replaces the whole session with an object.</summary>
    /// <exception cref="System.ArgumentException">The value is not a JSON object.</exception>
    member this.Replace(value: Json) =
        match value with
        | Json.Object _ -> this.Record(Update.Set(Path.root, value))
        | _ -> invalidArg "value" "A session is a JSON object; replace it with an object."

    /// <summary>Empties the session (it stays alive, with no values).</summary>
    member this.Clear() = this.Record(Update.Set(Path.root, Json.emptyObject))

    /// <summary>
    /// Folds the pending updates into one patch and commits it in one write; does nothing when
    /// nothing changed. A new session is created in the store by its first commit, under a fresh id.
    /// </summary>
    /// <exception cref="T:Sesame.SessionStoreException">The store failed; the changes were not stored.</exception>
    /// <exception cref="T:Sesame.SessionTooLargeException">The session would pass the size limit; nothing was stored.</exception>
    member _.CommitAsync(cancellationToken: CancellationToken) : Task =
        let updates = takePending ()
        if updates.Length = 0 then
            Task.CompletedTask
        else
            task {
                let isNew = not (stored ())
                // A new session always gets a fresh id: never adopt an id the client chose (session fixation).
                let target = if isNew then { Id = SessionId.create (); Created = time.GetUtcNow() } else ticket
                // Every update was validated when it was recorded.
                let patch = Patch.foldChecked updates
                try
                    let! result = store.CommitAsync(target.Id, patch, commitOptions target.Created (not isNew), cancellationToken)
                    match result with
                    | CommitResult.Committed ->
                        if isNew then
                            ticket <- target
                            cookie <- CookieAction.Issue target
                        Log.commitDone logger updates.Length isNew
                    | _ -> Log.gone logger updates.Length
                with e ->
                    Log.commitError logger e
                    ExceptionDispatchInfo.Throw e
            }

    /// <summary>
    /// Moves the session, with its data and this request's changes, to a new id and kills the old
    /// one (call it at login, against session fixation). The new cookie goes out with this response;
    /// a late commit under the old id finds it gone and cannot bring it back.
    /// </summary>
    /// <remarks>A change another request commits under the old id while the rotation runs is not carried over.</remarks>
    member _.RotateAsync() : Task =
        ensureLoaded ()
        task {
            let updates = takePending ()
            if stored () then
                let old = ticket
                // Start from what the store holds now, so changes committed since this request loaded are kept.
                let! latest = store.LoadAsync(old.Id, options.IdleTimeoutAt(old.Created, time.GetUtcNow()), requestAborted ())
                let value = Patch.apply (Patch.fold updates) (defaultArg latest current)
                let moved = { old with Id = SessionId.create () }
                let! _ = store.CommitAsync(moved.Id, Patch.fold [ Update.Set(Path.root, value) ], commitOptions moved.Created false, requestAborted ())
                do! store.DeleteAsync(old.Id, requestAborted ())
                current <- value
                ticket <- moved
                cookie <- CookieAction.Issue moved
            else
                // A new session has no id to fix yet: its first commit makes a fresh one.
                lock gate (fun () -> pending.AddRange updates)
        }

    /// <summary>
    /// Ends the session (call it at logout): deletes it from the store, drops this request's changes
    /// and expires the client's cookie. An in-flight request of the same session cannot bring it back.
    /// The handle then holds a new, empty session, which a later change in this request would create afresh.
    /// </summary>
    member _.DestroyAsync() : Task =
        ensureLoaded ()
        task {
            takePending () |> ignore
            if stored () then
                do! store.DeleteAsync(ticket.Id, requestAborted ())
            ticket <- { Id = null; Created = DateTimeOffset.MinValue }
            current <- Json.emptyObject
            cookie <- CookieAction.Expire
        }

    /// Ends the handle's life: later use throws.
    member internal _.Close() = closed <- true
