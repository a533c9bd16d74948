namespace Sesame

open System
open System.Collections.Concurrent
open System.Collections.Generic
open System.Text
open System.Threading

/// One session as the file store holds it. Every field is read and written under a lock on the object.
[<Sealed; AllowNullLiteral>]
type internal FileSession(idBytes: byte[]) =
    /// The id as UTF-8, as records hold it.
    member _.IdBytes = idBytes
    /// The newest value, including commits still on their way to disk (what the next commit applies to); null when deleted.
    member val Latest: StoredSession = null with get, set
    member val LatestExpires = 0L with get, set
    /// What loads serve: the value as of the last record flushed to disk; null when none.
    member val Visible: StoredSession = null with get, set
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
    /// Dropped from the store's map; whoever still holds it must look the id up again.
    member val Removed = false with get, set

    /// Nothing queued, and neither the newest nor the visible value is live at <c>t</c>: nothing will ever serve it.
    member this.IsDeadAt(t: int64) =
        this.Pending = 0
        && (isNull this.Latest || this.LatestExpires <= t)
        && (isNull this.Visible || this.VisibleExpires <= t)

/// The sessions a file store holds by id, their index by user, and the size a freshly compacted file holding them would have.
[<Sealed>]
type internal FileSessions() =
    let sessions = ConcurrentDictionary<string, FileSession>(StringComparer.Ordinal)
    let users = ConcurrentDictionary<string, ConcurrentDictionary<string, byte>>(StringComparer.Ordinal)
    let mutable liveBytes = 0L

    /// Adds the session to its user's index. Call under the session's lock.
    member _.Index(id: string, session: FileSession, user: string) =
        session.User <- user
        if not (isNull user) then
            users.GetOrAdd(user, fun _ -> ConcurrentDictionary<string, byte>(StringComparer.Ordinal)).[id] <- 0uy

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

    member _.TryGetValue(id: string, session: outref<FileSession>) = sessions.TryGetValue(id, &session)

    /// The session of the id, added empty when there is none.
    member _.GetOrAdd(id: string) =
        sessions.GetOrAdd(id, fun id -> FileSession(Encoding.UTF8.GetBytes id))

    /// Adds a session replay rebuilt (before the store takes requests).
    member this.Add(id: string, session: FileSession, bytes: int64) =
        sessions[id] <- session
        this.SetLiveBytes(session, bytes)

    /// Sets what the session adds to the live size. Call under the session's lock.
    member _.SetLiveBytes(session: FileSession, bytes: int64) =
        Interlocked.Add(&liveBytes, bytes - session.LiveBytes) |> ignore
        session.LiveBytes <- bytes

    /// Drops a session from the map. Call under the session's lock.
    member this.Drop(id: string, session: FileSession) =
        session.Removed <- true
        sessions.TryRemove(KeyValuePair(id, session)) |> ignore
        this.Unindex(id, session)
        this.SetLiveBytes(session, 0L)

    /// Told of each session dropped because it expired (not deleted), with the facts it had; called under the session's lock.
    member val OnExpired: string -> Json -> unit = (fun _ _ -> ()) with get, set

    /// Drops a session that is dead at <c>t</c>, saying so when it expired. Call under the session's lock.
    member this.DropDead(id: string, session: FileSession) =
        let expired = session.Latest
        this.Drop(id, session)
        if not (isNull expired) then this.OnExpired id expired.Meta

    /// Drops the sessions dead at <c>t</c>; their bytes then count as dead in the file.
    member this.Sweep(t: int64) =
        for KeyValue(id, session) in sessions do
            lock session (fun () -> if not session.Removed && session.IsDeadAt t then this.DropDead(id, session))
