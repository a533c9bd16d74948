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
    /// The tree of Visible while records of the session are on their way, when it was at hand (null otherwise, and
    /// always once none is): set as the first is queued (the cache's tree) and as each but the last is flushed (the tree
    /// its commit made). Loads meanwhile serve it as it is, rather than parse Visible and put it in the parsed cache in
    /// place of Latest's tree, which the next commit needs (concurrent requests on one session would otherwise parse it
    /// on every load and every commit).
    member val VisibleTree: StoredSession = null with get, set
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
    /// Replayed on open and not used by a request since (its LastSeen is from before the store opened).
    member val UnusedSinceOpen = false with get, set

    /// Nothing queued, and neither the newest nor the visible value is live at <c>t</c>: nothing will ever serve it.
    member this.IsDeadAt(t: int64) = this.Pending = 0 && (isNull this.Latest || this.LatestExpires <= t) && (isNull this.Visible || this.VisibleExpires <= t)

/// The sessions a file store holds by id, their index by user, the size a freshly compacted file holding them would
/// have, the memory their values take (what the byte bound counts) and the order they are evicted in. Built from the
/// sessions replay left (the map sized to them once); their sizes and places in the order are then set one by one.
/// <para>The sessions replay read straight from one record, that name no user, and that no request has used since the
/// store opened (after a flood, nearly all of them) are held without objects, in a ring (<c>cold</c>, locked on itself;
/// see <c>FreshSessions</c> for why). The first lookup of one takes it out into a <c>FileSession</c>, under that lock,
/// and every lookup that misses the map looks again under it, so a session is never in neither place (and in both only
/// while that lock is held, within the take-out). They
/// count as returning sessions that are older than any session used since the store opened: the bounds evict them
/// once no new session is left to evict, before any other returning one.</para>
/// <para>The sessions made since the store opened that no request but the one that made them has used are held the
/// same way once their records are flushed, in a ring of their own (<c>fresh</c>): a flood's sessions then cost the
/// collector nothing to keep or to evict, as the memory store's do. The writer parks such a session there as it
/// publishes its last record (<c>TryPark</c>, under the session's lock and the ring's; the object is marked
/// <c>Removed</c>, so whoever still holds it looks the id up again), and the first lookup takes it out again, as a new
/// session. Every lookup that misses the map looks again under the fresh ring's lock, and adds an id to the map only
/// under it, so an id is never in two places. Locks are taken in this order: a session's, the fresh ring's, the
/// replayed ring's, the eviction order's.</para>
[<Sealed>]
type internal FileSessions(maxSessions: int, maxBytes: int64, replayed: ICollection<KeyValuePair<string, FileSession>>, cold: FreshSessions) as this =
    let sessions = ConcurrentDictionary<string, FileSession>(Environment.ProcessorCount, replayed, StringComparer.Ordinal)
    let users = ConcurrentDictionary<string, UserSessionIds>(StringComparer.Ordinal)
    let mutable liveBytes = 0L
    let mutable heldBytes = 0L
    /// The sessions made since the store opened that only the request that made them has used, their records flushed
    /// (see TryPark); its arrays sized as the memory store's ring sizes them for the same byte bound.
    let fresh = FreshSessions(int (max (64L * 1024L) (min (1024L * 1024L) (maxBytes / 64L)) &&& ~~~7))
    // The new segment is stamped with the fresh ring's head, so that the ring's sessions and the order's new ones are
    // evicted oldest first wherever they are held. The replayed ring's sessions are older than all of them (the bounds
    // tell those apart by when they were last seen).
    let policy = SegmentedLru(maxSessions, maxBytes, fun () -> fresh.Head)

    /// What a record of a ring adds to a compacted file.
    let ringLiveBytes (ring: FreshSessions) (position: int64) = FileLog.snapshotBytes (ring.IdUtf8LengthAt position) (int64 (ring.ValueLengthAt position))

    // What the replayed ring's records add to a compacted file (each what ringLiveBytes counts), without a walk of it.
    do liveBytes <- int64 cold.LiveCount * int64 FileLog.snapshotOverhead + cold.IdAndValueBytes

    /// Ends a ring's record; call under that ring's lock.
    let removeFrom (ring: FreshSessions) (position: int64) =
        Interlocked.Add(&liveBytes, -(ringLiveBytes ring position)) |> ignore
        ring.Remove position

    let removeCold (position: int64) = removeFrom cold position

    /// Takes the ring's session at the position out into a FileSession in the map, as a returning one; call under the
    /// ring's lock (the id is in neither the map nor elsewhere in the ring).
    let takeCold (position: int64) : FileSession =
        let session = FileSession(cold.IdAt position)
        session.Latest <- cold.ValueAt position
        session.LatestExpires <- cold.ExpiresAt position
        session.LastSeen <- cold.CreatedAt position
        // Counted and in the order before it is in the map (whoever finds it there may delete it at once, and a delete
        // takes it out of the order), and in the map before it leaves the ring (a lookup that misses the map skips the
        // ring's lock only when the ring is empty): it is never in neither place, and never found half made.
        this.AdmitReplayed session
        sessions[session.Id] <- session
        removeCold position
        session

    /// Takes the fresh ring's session at the position out into a FileSession in the map, as a new one; call under the
    /// fresh ring's lock (the id is in neither the map nor the other ring).
    let takeFresh (position: int64) : FileSession =
        let session = FileSession(fresh.IdAt position)
        let value = fresh.ValueAt position
        let expires = fresh.ExpiresAt position
        session.Latest <- value
        session.Visible <- value
        session.LatestExpires <- expires
        session.VisibleExpires <- expires
        session.FileExpires <- expires
        session.LastSeen <- fresh.CreatedAt position
        // Counted and in the order before it is in the map, and in the map before it leaves the ring (as takeCold).
        this.CountAsFileHolds(session, value)
        policy.Admit(session.Node, false)
        sessions[session.Id] <- session
        removeFrom fresh position
        session

    /// Both rings, in the order lookups, walks and sweeps visit them.
    let rings = [| fresh; cold |]

    /// <summary>Where the id is, after a miss in the map: looked for again in the map under the fresh ring's lock (the
    /// only one under which an id goes into the map or into that ring, so a session parked or taken out meanwhile is
    /// found where it went), then in the fresh ring, then in the replayed one (under its lock too, as another thread may
    /// have just taken it out). Gives what <c>ofObject</c> makes of the map's object, what <c>inRing</c> makes of a
    /// ring's record (under that ring's lock), or what <c>absent</c> makes (under the fresh ring's lock).</summary>
    let lookUpLocked (id: string) (ofObject: FileSession -> 'result) (inRing: FreshSessions -> int64 -> 'result) (absent: unit -> 'result) =
        fresh.Locked(fun () ->
            match sessions.TryGetValue id with
            | true, session -> ofObject session
            | _ ->
                match (if fresh.LiveCount = 0 then -1L else fresh.Find id) with
                | -1L ->
                    let replayed =
                        if cold.LiveCount = 0 then
                            ValueNone
                        else
                            cold.Locked(fun () ->
                                match sessions.TryGetValue id with
                                | true, session -> ValueSome(ofObject session)
                                | _ ->
                                    match cold.Find id with
                                    | -1L -> ValueNone
                                    | position -> ValueSome(inRing cold position))
                    match replayed with
                    | ValueSome found -> found
                    | ValueNone -> absent ()
                | position -> inRing fresh position)

    /// The session of the id in the map, taken out of a ring first if one holds it (as a new one from the fresh ring,
    /// as a returning one from the replayed); when none holds it, added empty if <c>orAdd</c>, else null.
    let find (id: string) (orAdd: bool) : FileSession =
        match sessions.TryGetValue id with
        | true, session -> session
        | _ ->
            lookUpLocked
                id
                (fun session -> session)
                (fun ring position -> if obj.ReferenceEquals(ring, fresh) then takeFresh position else takeCold position)
                (fun () -> if orAdd then sessions.GetOrAdd(id, fun id -> FileSession id) else null)

    /// The order sessions are evicted in: those with a live value are in it.
    member _.Policy = policy

    /// Adds the session to its user's index (out of another's it was in). Call under the session's lock.
    member this.Index(id: string, session: FileSession, user: string) =
        if not (isNull session.User) && not (String.Equals(session.User, user, StringComparison.Ordinal)) then this.Unindex(id, session)
        session.User <- user
        if not (isNull user) then
            let mutable added = false
            while not added do
                let ids = users.GetOrAdd(user, fun _ -> UserSessionIds())
                added <- ids.TryAdd id
                // Retired as its last session left, which takes it out of the index: out here too, then a new one.
                if not added then users.TryRemove(KeyValuePair(user, ids)) |> ignore

    /// Takes the session out of its user's index. Call under the session's lock.
    member _.Unindex(id: string, session: FileSession) =
        match session.User with
        | null -> ()
        | user ->
            session.User <- null
            match users.TryGetValue user with
            | true, ids when ids.Remove id -> users.TryRemove(KeyValuePair(user, ids)) |> ignore
            | _ -> ()

    /// The ids indexed under a user now.
    member _.IdsOf(user: string) : string[] =
        match users.TryGetValue user with
        | true, ids -> ids.All()
        | _ -> [||]

    /// Up to <c>count</c> ids indexed under a user after <c>after</c> (null: from the first), in ordinal order.
    member _.IdsOf(user: string, after: string, count: int) : string[] =
        match users.TryGetValue user with
        | true, ids -> ids.After(after, count)
        | _ -> [||]
    /// Every session held as an object, for a sweep or a snapshot (safe while others change the map); the rings' are
    /// walked with <c>RingSessions</c>.
    member _.Items: seq<KeyValuePair<string, FileSession>> = sessions

    /// The number of sessions held (expired ones not yet swept included).
    member _.Count = sessions.Count + cold.LiveCount + fresh.LiveCount

    /// The sessions in the eviction order or in a ring: what the count bound counts.
    member _.LiveCount = int64 policy.Count + int64 cold.LiveCount + int64 fresh.LiveCount

    /// The sessions held in the fresh ring (new, used by the request that made them only, their records flushed).
    member _.FreshCount = fresh.LiveCount

    /// The sessions held in the ring.
    member _.ColdCount = cold.LiveCount

    /// What the ring's sessions count against the byte bound.
    member _.ColdBytes = cold.CountedBytes

    /// What the sessions add to a compacted file, beyond its header.
    member _.LiveBytes = Volatile.Read &liveBytes

    /// The memory the sessions' newest values take, as estimated, and what the rings hold: what the byte bound counts.
    member _.HeldBytes = Volatile.Read &heldBytes + cold.CountedBytes + fresh.CountedBytes

    /// The session of the id (taken out of a ring if one held it, so that whoever uses it holds an object).
    member _.TryGetValue(id: string, session: outref<FileSession>) =
        session <- find id false
        not (isNull session)

    /// The session of the id, added empty when there is none.
    member _.GetOrAdd(id: string) = find id true

    /// The session of the id if the map holds it (a ring's is left where it is), else null: for a node the eviction
    /// order gave up, whose session is in the map if anywhere.
    member _.TryGetHeld(id: string) : FileSession =
        match sessions.TryGetValue id with
        | true, session -> session
        | _ -> null

    /// What holds the session of the id, without taking it out of a ring: its object (the rest then empty), or a ring's
    /// record of it (its value, expiry and last use; all empty when nothing holds it). For the writer thread, which
    /// alone parks sessions, so that an object given stays out of the rings until the caller is done with it.
    member _.Peek(id: string) : struct (FileSession * SessionText * int64 * int64) =
        match sessions.TryGetValue id with
        | true, session -> struct (session, null, 0L, 0L)
        | _ ->
            lookUpLocked
                id
                (fun session -> struct (session, null, 0L, 0L))
                (fun ring position -> struct (null, ring.ValueAt position, ring.ExpiresAt position, ring.CreatedAt position))
                (fun () -> struct (null, null, 0L, 0L))

    /// Told of each session parked in the fresh ring, with the value its object held; called under the session's lock
    /// and the ring's (the store lets go of the value's parsed tree).
    member val OnParked: string -> SessionText -> unit = (fun _ _ -> ()) with get, set

    /// <summary>Parks a session in the fresh ring if only the request that made it has used it and none of its records
    /// is on its way: new, of no user, not replayed, its newest value flushed and small enough for the ring. The object
    /// is then dropped from the map and marked <c>Removed</c>, and the ring counts the session. Call under the session's
    /// lock, on the writer thread.</summary>
    member this.TryPark(session: FileSession) =
        if
            not session.Removed
            && session.Pending = 0
            && isNull session.User
            && not session.UnusedSinceOpen
            && policy.IsNew session.Node
            && not (isNull session.Visible)
            && obj.ReferenceEquals(session.Visible, session.Latest)
        then
            fresh.Locked(fun () ->
                match fresh.TryAdd(session.Id, session.Visible, session.VisibleExpires, session.LastSeen) with
                | -1L -> ()
                | position ->
                    Interlocked.Add(&liveBytes, ringLiveBytes fresh position) |> ignore
                    session.Removed <- true
                    sessions.TryRemove(KeyValuePair(session.Id, session)) |> ignore
                    this.Vacate session
                    session.VisibleTree <- null
                    this.OnParked session.Id session.Visible)

    /// <summary>Takes the fresh ring's least recently used session out into the map (for the bounds to evict it),
    /// unless the order's least recently used new session other than <c>except</c> is older; null when it takes none.
    /// Never <c>except</c>'s session (the one whose commit is being acknowledged), which the writer may have parked
    /// already; past it only when <c>countOver</c> (when only the bytes are over, evicting a newer one frees nothing
    /// while it holds the ring's tail).</summary>
    member _.TakeOldestFresh(except: EvictionNode, countOver: bool) : FileSession =
        if fresh.LiveCount = 0 then
            null
        else
            fresh.Locked(fun () ->
                let exceptPosition = if isNull except then -1L else fresh.Find except.Id
                match fresh.Oldest(exceptPosition, countOver) with
                | -1L -> null
                | oldest ->
                    match (if policy.NewCount = 0 then null else policy.PeekVictim(except, false)) with
                    | first when not (isNull first) && first.FreshSince <= oldest -> null
                    | _ -> takeFresh oldest)

    /// Takes the ring's least recently used session out into the map (for the bounds to evict it), if it was last
    /// used at or before <c>before</c> (UTC ticks); null when there is none, or it was used later.
    member _.TakeOldestCold(before: int64) : FileSession =
        if cold.LiveCount = 0 then
            null
        else
            cold.Locked(fun () ->
                match cold.Oldest(-1L, true) with
                | -1L -> null
                | position when cold.CreatedAt position > before -> null
                | position -> takeCold position)

    /// The rings' sessions that <c>keep</c> keeps (given the id and the expiry), the fresh ring's then the replayed
    /// ring's, oldest first, each with its id, value, expiry and last use: read a batch at a time as the sequence is
    /// enumerated (the caller works on each batch with the lock let go), with a ring's lock taken as a request takes
    /// it. A walk sees every session that stays in its ring while it goes on; one taken out meanwhile is in the map from
    /// then on. One parked meanwhile may be missed: the writer parks a session only as it publishes a record of it.
    member _.RingSessions(keep: string -> int64 -> bool) : seq<struct (string * SessionText * int64 * int64)> = seq {
        for ring in rings do
            let position = ref 0L
            while position.Value >= 0L do
                let batch = ResizeArray<struct (string * SessionText * int64 * int64)>()
                let from = position.Value
                position.Value <-
                    ring.Locked(fun () ->
                        ring.Walk(
                            from,
                            FreshSessions.WalkBatch,
                            fun at ->
                                let id = ring.IdAt at
                                let expires = ring.ExpiresAt at
                                if keep id expires then batch.Add(struct (id, ring.ValueAt at, expires, ring.CreatedAt at))
                        ))
                yield! batch
    }

    /// Whether a ring holds any session.
    member _.AnyInRings = fresh.LiveCount > 0 || cold.LiveCount > 0

    /// Offers a listing's page the rings' sessions unexpired at <c>t</c> (see FreshSessions.OfferUnexpired), with the
    /// item <c>make</c> makes of a session's id, value, expiry and last use.
    member _.OfferRings(page: IdPage<'item>, t: int64, make: string -> SessionText -> int64 -> int64 -> 'item) =
        for ring in rings do
            if ring.LiveCount > 0 then ring.OfferUnexpired(page, t, fun id at -> make id (ring.ValueAt at) (ring.ExpiresAt at) (ring.CreatedAt at))

    /// Ends the rings' sessions that are expired at <c>t</c> (see FreshSessions.SweepExpired), and tells OnExpired of
    /// each once the rings' locks are let go.
    member this.SweepRings(t: int64) =
        let ended = ResizeArray<struct (string * SessionText)>()
        for ring in rings do
            if ring.LiveCount > 0 then
                ring.SweepExpired(
                    t,
                    fun position ->
                        ended.Add(struct (ring.IdAt position, ring.ValueAt position))
                        removeFrom ring position
                )
        for struct (id, value) in ended do
            this.OnExpired id value

    /// Makes a replayed session (its newest value, expiry and last-seen time set) what loads serve and what the file
    /// holds, counts it, and admits it to the order as a returning session not used since the store opened.
    member this.AdmitReplayed(session: FileSession) =
        let value = session.Latest
        session.Visible <- value
        session.VisibleTree <- null
        session.VisibleExpires <- session.LatestExpires
        session.FileExpires <- session.LatestExpires
        session.UnusedSinceOpen <- true
        this.CountAsFileHolds(session, value)
        policy.Admit(session.Node, true)

    /// Counts the session as holding this value and nothing queued: what its snapshot adds to a compacted file, and
    /// what the value counts against the byte bound. Call under the session's lock.
    member this.CountAsFileHolds(session: FileSession, value: SessionText) =
        this.SetLiveBytes(session, FileLog.snapshotBytes (Text.Encoding.UTF8.GetByteCount session.Id) (int64 value.Length))
        this.SetHeldBytes(session, FileSessionMemory.ofValue session.Id.Length value)

    /// Sets what the session adds to the live size. Call under the session's lock.
    member _.SetLiveBytes(session: FileSession, bytes: int64) =
        Interlocked.Add(&liveBytes, bytes - session.LiveBytes) |> ignore
        session.LiveBytes <- bytes

    /// Sets what the session's newest value counts against the byte bound. Call under the session's lock.
    member _.SetHeldBytes(session: FileSession, bytes: int64) =
        Interlocked.Add(&heldBytes, bytes - session.HeldBytes) |> ignore
        policy.Resize(session.Node, bytes - session.HeldBytes)
        session.HeldBytes <- bytes

    /// The session has no live value any more (deleted, moved away, evicted): it counts for nothing and leaves the
    /// eviction order. Call under the session's lock.
    member this.Vacate(session: FileSession) =
        this.SetLiveBytes(session, 0L)
        this.SetHeldBytes(session, 0L)
        policy.Remove session.Node |> ignore

    /// Puts a session back to what the file holds, once none of its records is on its way and the last ones failed:
    /// its newest value is again the one loads serve, counted as that value, in its user's index and in the eviction
    /// order (as a returning session) when it has one; dropped when it has none. A failed commit, delete, move or
    /// eviction thereby leaves no trace in listings, counts or the bounds. Call under the session's lock.
    member this.Restore(session: FileSession) =
        session.Latest <- session.Visible
        // Nothing is on its way any more: the parsed cache serves the value again.
        session.VisibleTree <- null
        session.LatestExpires <- session.VisibleExpires
        session.FileExpires <- session.VisibleExpires
        match session.Visible with
        | null -> this.DropIfVacant session
        | _ when session.Removed -> ()
        | value ->
            this.CountAsFileHolds(session, value)
            let user =
                match SessionMeta.userOf (value.ParseMeta()) with
                | Some user -> user
                | None -> null
            this.Index(session.Id, session, user)
            policy.Admit(session.Node, true)

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
        this.SweepRings t
