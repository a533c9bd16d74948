namespace Sesame

open System
open System.Buffers
open System.Collections.Concurrent
open System.Collections.Generic
open System.Text.Json
open System.Threading

/// What the file store's byte bound counts for one session.
module internal FileSessionMemory =

    /// What one session costs in memory besides its JSON: the session object (its place in the eviction order too), its
    /// id, its entry in the map, the value object and its array's header (measured after replaying 100,000 sessions of
    /// ~1 KB: 350 bytes each besides their JSON, ids of 32 characters).
    let perSession (idLength: int) = 280L + 2L * int64 idLength

    /// What a session's value counts against the file store's byte bound: its JSON (tree and facts) and the session's
    /// own bookkeeping.
    let ofValue (idLength: int) (value: SessionText) = int64 value.Length + perSession idLength

/// A session's value as a commit leaves it, measured: what it adds to a compacted file, and what it counts against
/// the store's byte bound.
[<Struct; NoComparison; NoEquality>]
type internal MeasuredValue = { After: SessionText; Tree: StoredSession; LiveBytes: int64; HeldBytes: int64 }

/// One session as the file store holds it, and its place in the eviction order (in it while the session has a live
/// value). Every field is read and written under a lock on the object; the order's links under the order's lock.
[<Sealed; AllowNullLiteral>]
type internal FileSession(id: string) =
    inherit EvictionNode(id)
    /// The session's place in the eviction order: the session itself.
    member this.Node: EvictionNode = this
    /// The newest value, including commits still on their way to disk (what the next commit applies to); null when deleted.
    member val Latest: SessionText = null with get, set
    member val LatestExpires = 0L with get, set
    /// What loads serve: the value as of the last record flushed to disk; null when none.
    member val Visible: SessionText = null with get, set
    member val VisibleExpires = 0L with get, set
    /// UTC ticks of the last load or commit.
    member val LastSeen = 0L with get, set
    /// The user the session is indexed under (bound by a move), or null.
    member val User: string = null with get, set
    /// The expiry the file will hold once the queued records are written.
    member val FileExpires = 0L with get, set
    /// Commits and deletes queued but not yet flushed.
    member val Pending = 0 with get, set
    /// What the session adds to the live size (the size of a compacted file).
    member val LiveBytes = 0L with get, set
    /// What the session's newest value counts against the byte bound (FileSessionMemory), 0 when it has none.
    member val HeldBytes = 0L with get, set
    /// Dropped from the store's map; whoever still holds it must look the id up again.
    member val Removed = false with get, set

    /// Nothing queued, and neither the newest nor the visible value is live at <c>t</c>: nothing will ever serve it.
    member this.IsDeadAt(t: int64) = this.Pending = 0 && (isNull this.Latest || this.LatestExpires <= t) && (isNull this.Visible || this.VisibleExpires <= t)

/// The sessions a file store holds by id, their index by user, the size a freshly compacted file holding them would
/// have, the memory their values take (what the byte bound counts) and the order they are evicted in. Built from the
/// sessions replay left (the map sized to them once); their sizes and places in the order are then set one by one.
[<Sealed>]
type internal FileSessions(maxSessions: int, replayed: ICollection<KeyValuePair<string, FileSession>>) =
    let sessions = ConcurrentDictionary<string, FileSession>(Environment.ProcessorCount, replayed, StringComparer.Ordinal)
    let users = ConcurrentDictionary<string, ConcurrentDictionary<string, byte>>(StringComparer.Ordinal)
    let mutable liveBytes = 0L
    let mutable heldBytes = 0L
    let policy = SegmentedLru maxSessions

    /// The order sessions are evicted in: those with a live value are in it.
    member _.Policy = policy

    /// Adds the session to its user's index. Call under the session's lock.
    member _.Index(id: string, session: FileSession, user: string) =
        session.User <- user
        if not (isNull user) then users.GetOrAdd(user, fun _ -> ConcurrentDictionary<string, byte>(StringComparer.Ordinal)).[id] <- 0uy

    /// Takes the session out of its user's index. Call under the session's lock.
    member _.Unindex(id: string, session: FileSession) =
        match session.User with
        | null -> ()
        | user ->
            session.User <- null
            match users.TryGetValue user with
            | true, ids ->
                ids.TryRemove(id) |> ignore
                if ids.IsEmpty then users.TryRemove(KeyValuePair(user, ids)) |> ignore
            | _ -> ()

    /// The ids indexed under a user now.
    member _.IdsOf(user: string) : string[] =
        match users.TryGetValue user with
        | true, ids -> Array.ofSeq ids.Keys
        | _ -> [||]
    /// Every session held, for a sweep or a snapshot (safe while others change the map).
    member _.Items: seq<KeyValuePair<string, FileSession>> = sessions

    /// The number of sessions held (expired ones not yet swept included).
    member _.Count = sessions.Count

    /// What the sessions add to a compacted file, beyond its header.
    member _.LiveBytes = Volatile.Read &liveBytes

    /// The memory the sessions' newest values take, as estimated: what the byte bound counts.
    member _.HeldBytes = Volatile.Read &heldBytes

    member _.TryGetValue(id: string, session: outref<FileSession>) = sessions.TryGetValue(id, &session)

    /// The session of the id, added empty when there is none.
    member _.GetOrAdd(id: string) = sessions.GetOrAdd(id, fun id -> FileSession id)

    /// Sets what the session adds to the live size. Call under the session's lock.
    member _.SetLiveBytes(session: FileSession, bytes: int64) =
        Interlocked.Add(&liveBytes, bytes - session.LiveBytes) |> ignore
        session.LiveBytes <- bytes

    /// Sets what the session's newest value counts against the byte bound. Call under the session's lock.
    member _.SetHeldBytes(session: FileSession, bytes: int64) =
        Interlocked.Add(&heldBytes, bytes - session.HeldBytes) |> ignore
        session.HeldBytes <- bytes

    /// The session has no live value any more (deleted, moved away, evicted): it counts for nothing and leaves the
    /// eviction order. Call under the session's lock.
    member this.Vacate(session: FileSession) =
        this.SetLiveBytes(session, 0L)
        this.SetHeldBytes(session, 0L)
        policy.Remove session.Node |> ignore

    /// Drops a session from the map. Call under the session's lock.
    member this.Drop(id: string, session: FileSession) =
        session.Removed <- true
        sessions.TryRemove(KeyValuePair(id, session)) |> ignore
        this.Unindex(id, session)
        this.Vacate session

    /// Drops a session whose last record is written and which has no value any more: nothing can serve it. Call
    /// under the session's lock.
    member this.DropIfVacant(session: FileSession) =
        if not session.Removed && session.Pending = 0 && isNull session.Latest && isNull session.Visible then this.Drop(session.Id, session)

    /// Told of each session dropped because it expired (not deleted), with the value it had; called under the session's lock.
    member val OnExpired: string -> SessionText -> unit = (fun _ _ -> ()) with get, set

    /// Drops a session that is dead at <c>t</c>, saying so when it expired. Call under the session's lock.
    member this.DropDead(id: string, session: FileSession) =
        let expired = session.Latest
        this.Drop(id, session)
        if not (isNull expired) then this.OnExpired id expired

    /// Drops the sessions dead at <c>t</c>; their bytes then count as dead in the file.
    member this.Sweep(t: int64) =
        for KeyValue(id, session) in sessions do
            lock session (fun () -> if not session.Removed && session.IsDeadAt t then this.DropDead(id, session))
