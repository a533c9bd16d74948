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
    /// The newest value, including commits still on their way to disk (what the next commit applies to); none when deleted.
    member val Latest: Json voption = ValueNone with get, set
    member val LatestExpires = 0L with get, set
    /// What loads serve: the value as of the last record flushed to disk.
    member val Visible: Json voption = ValueNone with get, set
    member val VisibleExpires = 0L with get, set
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
        && (this.Latest.IsNone || this.LatestExpires <= t)
        && (this.Visible.IsNone || this.VisibleExpires <= t)

/// The sessions a file store holds by id, and the size a freshly compacted file holding them would have.
[<Sealed>]
type internal FileSessions() =
    let sessions = ConcurrentDictionary<string, FileSession>(StringComparer.Ordinal)
    let mutable liveBytes = 0L

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
        this.SetLiveBytes(session, 0L)

    /// Drops the sessions dead at <c>t</c>; their bytes then count as dead in the file.
    member this.Sweep(t: int64) =
        for KeyValue(id, session) in sessions do
            lock session (fun () -> if not session.Removed && session.IsDeadAt t then this.Drop(id, session))
