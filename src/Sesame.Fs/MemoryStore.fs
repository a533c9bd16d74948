namespace Sesame

open System
open System.Collections.Concurrent
open System.Collections.Generic
open System.Threading
open System.Threading.Tasks

/// <summary>Options of the in-memory store.</summary>
[<AllowNullLiteral>]
type MemoryStoreOptions() =

    /// <summary>The default bound on live sessions: 100,000.</summary>
    static member DefaultMaxSessions = 100_000

    /// <summary>The default bound on the sessions' total JSON size: 256 MiB.</summary>
    static member DefaultMaxTotalBytes = 256L * 1024L * 1024L

    /// <summary>The default interval between sweeps of expired sessions: one minute.</summary>
    static member DefaultSweepInterval = TimeSpan.FromMinutes 1.0

    /// The longest sweep interval (the memory and file stores'): a timer's period is at most 2^32 - 2 ms, about 49.7 days.
    static member internal MaxSweepInterval = TimeSpan.FromMilliseconds 4294967294.0

    /// The shortest sweep interval: a timer given a period under a millisecond fires once and never again.
    static member internal MinSweepInterval = TimeSpan.FromMilliseconds 1.0

    /// Whether a sweep interval is one a timer takes (the memory and file stores' check; the memory store also takes
    /// Timeout.InfiniteTimeSpan, for no sweeper).
    static member internal TimerTakes(interval: TimeSpan) = interval >= MemoryStoreOptions.MinSweepInterval && interval <= MemoryStoreOptions.MaxSweepInterval

    /// <summary>
    /// The most sessions kept, checked on every commit that creates one. Past it, sessions used by one request only
    /// are evicted first (least recently used first), sessions that came back only when no such session is left.
    /// At least 1. Default 100,000.
    /// </summary>
    member val MaxSessions = MemoryStoreOptions.DefaultMaxSessions with get, set

    /// <summary>
    /// The most memory the sessions may take in all, checked on every commit that grows what is held: each session's
    /// tree and facts as compact UTF-8 JSON (the form the store holds them in), and its bookkeeping: about 115 bytes for
    /// a session only one request has used, about 360 for one a later request came back to.
    /// Eviction is in the same order as for <see cref="P:Sesame.MemoryStoreOptions.MaxSessions"/>. A session larger
    /// than this on its own is refused (<see cref="T:Sesame.SessionTooLargeException"/>). At least 1. Default 256 MiB.
    /// </summary>
    member val MaxTotalBytes = MemoryStoreOptions.DefaultMaxTotalBytes with get, set

    /// <summary>How often expired sessions are swept out (they are never served in between). Default one minute; at least
    /// 1 millisecond and at most about 49.7 days.</summary>
    member val SweepInterval = MemoryStoreOptions.DefaultSweepInterval with get, set

    /// <summary>Sessions the store starts with, by id (node-sesame's <c>sessions</c> option). They do not expire until first used.</summary>
    member val InitialSessions = Dictionary<string, Json>() with get

/// One stored session: its tree and facts as compact UTF-8 JSON (see SessionText), the user it is bound to, and its
/// times. Compared by reference, so a compare-and-swap compares identities, not contents; a commit replaces the entry,
/// a load only slides its expiry.
[<Sealed; AllowNullLiteral>]
type private MemoryEntry(text: SessionText, user: string, expiresAt: int64, lastSeen: int64, node: EvictionNode) =
    let mutable expires = expiresAt
    let mutable seen = lastSeen

    /// What holding a session costs besides its JSON: this entry, its text and the text's array header, its node in
    /// the eviction order, its id and its slot in the map (measured with GC.GetTotalMemory: 100,000 sessions of a
    /// counter and Sesame's facts, ids of 43 characters, took 361 bytes each besides their 36 bytes of JSON).
    static member Overhead(idLength: int) = 275L + 2L * int64 idLength

    /// The session's tree and facts.
    member _.Text = text

    /// The bytes of the tree's compact JSON (what a session's own limit counts, and what listings report).
    member _.DataLength = int64 text.DataLength

    /// What the session counts against the byte bound: its tree's and facts' JSON and its bookkeeping.
    member _.Size = int64 text.Length + MemoryEntry.Overhead node.Id.Length

    /// The session's place in the eviction order: one node for the session's life at this id, passed from entry to entry.
    member _.Node = node

    /// The user the session is bound to, or null.
    member _.User = user

    /// UTC ticks of the last load or commit.
    member _.LastSeen
        with get () = Volatile.Read &seen
        and set (value: int64) = Volatile.Write(&seen, value)

    /// UTC ticks after which the session is dead; Int64.MaxValue for a seed not yet used.
    member _.ExpiresAt
        with get () = Volatile.Read &expires
        and set (value: int64) = Volatile.Write(&expires, value)

/// <summary>
/// The embedded default store: sessions in this process's memory, lost on restart. Commits are
/// atomic compare-and-swap loops, so concurrent commits never lose each other's changes.
/// </summary>
/// <remarks>
/// <para>Bounded: every commit or move that adds a session or grows one checks <c>MaxSessions</c> and
/// <c>MaxTotalBytes</c>, and evicts only as much as brings the store back under them (and 1/64 of the bound more,
/// so that the next commits pass without evicting), never the session whose commit it is acknowledging. Sessions used
/// by one request only (a new visitor, a bot, a flood) go first, least recently used first; a session a later request
/// loaded again goes only when no such session is left, so a flood of new sessions cannot log returning users out
/// (a segmented LRU: returning sessions keep up to 80% of <c>MaxSessions</c> and of <c>MaxTotalBytes</c>, so new
/// sessions keep a fifth of either). New sessions go oldest first, wherever they are held: the first visits, those too
/// large to be held with them, and returning sessions pushed out of their 80% (which count as new from then on). A
/// session bound to a user counts as returning from its sign-in on, even on its first visit (a login that is the
/// visitor's first request is a user, not a crawler), so a flood cannot sign anyone out.
/// A session larger than <c>MaxTotalBytes</c> on its own is refused. Evicted sessions leave the user index in the
/// same step and are reported to the store's observer (<see cref="F:Sesame.SessionEndReason.Evicted"/>).
/// Expired sessions are never served and are swept out every <c>SweepInterval</c>; they are reported too.</para>
/// <para>Sessions are held as compact UTF-8 JSON, so the store's memory follows <c>MaxTotalBytes</c>
/// closely; the parsed trees of the sessions in use (up to 2 MiB of their JSON) are kept beside them,
/// so a busy session is not parsed again on every request. A session only one request has used is held with no .NET
/// object of its own, as a record in a ring of large arrays (see FreshSessions), so that a flood of first visits costs
/// the garbage collector nothing to keep or to evict; a later request that loads it moves it to the store's map.</para>
/// <para>The index of sessions by user changes under one lock together with the sessions it names (moves,
/// deletes, expiry, eviction); commits, which never change a binding, do not take it.</para>
/// </remarks>
[<Sealed>]
type MemoryStore(options: MemoryStoreOptions, time: TimeProvider) as this =
    inherit SessionStore()
    let options = if isNull options then MemoryStoreOptions() else options
    do
        if options.MaxSessions < 1 then invalidArg (nameof options) $"MaxSessions must be at least 1 (it is {options.MaxSessions})."
        if options.SweepInterval <> Threading.Timeout.InfiniteTimeSpan && not (MemoryStoreOptions.TimerTakes options.SweepInterval) then
            invalidArg (nameof options) $"SweepInterval must be at least 1 millisecond and at most about 49.7 days (it is {options.SweepInterval})."
        if options.MaxTotalBytes < 1L then invalidArg (nameof options) $"MaxTotalBytes must be at least 1 (it is {options.MaxTotalBytes})."
    /// The sessions a later request came back to, the ones too large for the ring, and the ones bound to a user.
    let sessions = ConcurrentDictionary<string, MemoryEntry>(StringComparer.Ordinal)
    /// The sessions one request has used so far, in a ring of arrays; its lock is the only one that adds an id to
    /// either place, so no id is ever in both.
    let fresh = FreshSessions(int (max (64L * 1024L) (min (1024L * 1024L) (options.MaxTotalBytes / 64L)) &&& ~~~7))
    let parsed = ParsedCache<SessionText, StoredSession>()
    /// What the map's sessions count against the byte bound (the ring counts its own).
    let mutable totalBytes = 0L
    /// Sessions in the map (ConcurrentDictionary.Count takes every lock of the map).
    let mutable count = 0L
    /// The map's sessions in eviction order; its new segment stamped with the ring's head, so that the ring's sessions
    /// and the order's new ones go oldest first, wherever they are held.
    let policy = SegmentedLru(options.MaxSessions, options.MaxTotalBytes, fun () -> fresh.Head)
    /// Guards `users` and every change of a bound session's presence (a move, a delete, an expiry, an eviction).
    let userLock = obj ()
    // Each user's ids in ordinal order, so that a page of a user's listing starts at its cursor.
    let users = Dictionary<string, SortedSet<string>>(StringComparer.Ordinal)

    do
        for KeyValue(id, data) in options.InitialSessions do
            let entry = MemoryEntry(SessionText.Of(StoredSession data), null, Int64.MaxValue, 0L, EvictionNode id)
            sessions[id] <- entry
            totalBytes <- totalBytes + entry.Size
            count <- count + 1L
            // Seeds are the app's own sessions: they start as returning ones.
            policy.Resize(entry.Node, entry.Size)
            policy.Admit(entry.Node, true)

    let now () = time.GetUtcNow().UtcTicks

    let heldCount () = Volatile.Read &count + int64 fresh.LiveCount
    let heldBytes () = Volatile.Read &totalBytes + fresh.CountedBytes

    let expiresAt (ticks: int64) (idle: TimeSpan) = if idle.Ticks >= Int64.MaxValue - ticks then Int64.MaxValue else ticks + idle.Ticks

    let index (user: string) (id: string) =
        match users.TryGetValue user with
        | true, ids -> ids.Add id |> ignore
        | _ -> users[user] <- SortedSet<string>([ id ], StringComparer.Ordinal)

    let unindex (user: string) (id: string) =
        match users.TryGetValue user with
        | true, ids ->
            ids.Remove id |> ignore
            if ids.Count = 0 then users.Remove user |> ignore
        | _ -> ()

    /// Takes a removed entry out of the counts, the cache and the eviction order (its user's index is the caller's).
    let forgetRemoved (id: string) (entry: MemoryEntry) =
        Interlocked.Add(&totalBytes, -entry.Size) |> ignore
        Interlocked.Decrement &count |> ignore
        parsed.Drop(id, entry.Text)
        policy.Remove entry.Node |> ignore

    /// Removes exactly this entry (a concurrent commit may have replaced it); true when it did.
    let removeEntry (id: string) (entry: MemoryEntry) =
        let remove () =
            if sessions.TryRemove(KeyValuePair(id, entry)) then
                forgetRemoved id entry
                if not (isNull entry.User) then unindex entry.User id
                true
            else
                false
        if isNull entry.User then remove () else lock userLock remove

    /// Ends a session the store decided to end, and says so.
    let forget (id: string) (entry: MemoryEntry) (reason: SessionEndReason) = if removeEntry id entry then this.ReportEndedValue(id, entry.Text, reason)

    /// The entry's tree and facts: kept from its commit or an earlier load, or parsed now (and kept).
    let sessionOf (id: string) (entry: MemoryEntry) = ParsedValues.get parsed id entry.Text

    let live (entry: MemoryEntry) (t: int64) = not (isNull entry) && entry.ExpiresAt > t

    /// What to report of a ring record ended under the ring's lock, once it is let go: its id, its value when the
    /// observer reads the facts, and why (nothing without an observer).
    let endedOf (position: int64) (reason: SessionEndReason) =
        if isNull this.Observer then
            ValueNone
        else
            ValueSome(struct (fresh.IdAt position, (if this.ObserverReadsFacts then fresh.ValueAt position else null), reason))

    /// Ends a ring record under the ring's lock: what to report once it is let go (a flood evicts one record a new
    /// session, so nothing is allocated for it that the report does not need).
    let endFresh (position: int64) (t: int64) =
        let ended = endedOf position (if fresh.ExpiresAt position <= t then SessionEndReason.Expired else SessionEndReason.Evicted)
        fresh.Remove position
        ended

    let report (ended: struct (string * SessionText * SessionEndReason) voption) =
        match ended with
        | ValueSome(struct (id, value, reason)) -> this.ReportEndedValue(id, value, reason)
        | ValueNone -> ()

    let sweep () =
        let t = now ()
        for KeyValue(id, entry) in sessions do
            if entry.ExpiresAt <= t then forget id entry SessionEndReason.Expired
        // The ring a batch at a time (new sessions wait for its lock), and not at all while none of it can be expired.
        if fresh.LiveCount > 0 then
            let reports = if isNull this.Observer then null else List<struct (string * SessionText * SessionEndReason) voption>()
            fresh.SweepExpired(
                t,
                fun position ->
                    if not (isNull reports) then reports.Add(endedOf position SessionEndReason.Expired)
                    fresh.Remove position
            )
            if not (isNull reports) then
                for ended in reports do
                    report ended

    let sweeper = time.CreateTimer((fun _ -> sweep ()), null, options.SweepInterval, options.SweepInterval)

    /// Evicts the session of a node the eviction order gave up (an expired one is reported as expired).
    let evict (node: EvictionNode) =
        let rec attempt () =
            match sessions.TryGetValue node.Id with
            | true, entry when obj.ReferenceEquals(entry.Node, node) ->
                if removeEntry node.Id entry then
                    this.ReportEndedValue(node.Id, entry.Text, (if entry.ExpiresAt <= now () then SessionEndReason.Expired else SessionEndReason.Evicted))
                else
                    // A commit replaced the entry meanwhile: evict what it left.
                    attempt ()
            | _ -> ()
        attempt ()
        true

    /// A session deleted between its creation and its admission to the eviction order leaves the order again.
    let leaveOrderIfGone (id: string) (node: EvictionNode) =
        match sessions.TryGetValue id with
        | true, entry when obj.ReferenceEquals(entry.Node, node) -> ()
        | _ -> policy.Remove node |> ignore

    /// Evicts the ring's oldest session (never the one at exceptPosition, the session being acknowledged; past it only
    /// when the count is over), and reports it once the ring's lock is let go; false when there is none to evict, or
    /// the order's least recently used new session went there before it (then that one goes first: a session that
    /// came back and was pushed out of the returning 80% outlives the new sessions made before it, not every one made
    /// after it too, else those would leave new sessions no room).
    let evictFromRing (except: EvictionNode) (exceptPosition: int64) (countOver: bool) (_: bool) =
        if fresh.LiveCount = 0 then
            false
        else
            let struct (evicted, reports) =
                fresh.Locked(fun () ->
                    match fresh.Oldest(exceptPosition, countOver) with
                    | -1L -> struct (false, ValueNone)
                    | oldest ->
                        match (if policy.NewCount = 0 then null else policy.PeekVictim(except, false)) with
                        | null -> struct (true, endFresh oldest (now ()))
                        | first when first.FreshSince <= oldest -> struct (false, ValueNone)
                        | _ -> struct (true, endFresh oldest (now ())))
            report reports
            evicted

    /// Keeps the store within its bounds after a change that grew it, never evicting the session being acknowledged
    /// (its node in the map's order, or its position in the ring): the ring's sessions go first, oldest first, then the
    /// map's, in the order of the segmented LRU.
    let bounds = SessionBounds(policy, int64 options.MaxSessions, options.MaxTotalBytes, heldCount, heldBytes, evict, evictFromRing)

    let enforce (exceptNode: EvictionNode) (exceptPosition: int64) = bounds.Enforce(exceptNode, exceptPosition)

    /// <summary>
    /// Moves the id's session from the ring to the map: for a later request's load (<paramref name="cameBack"/>: it
    /// becomes a returning session, its expiry slid) or for a commit of the request that made it (it stays new).
    /// Gives the entry and whether this call moved it; null when the id is in neither place, or its session expired
    /// (which is reported). An entry this call did not move is one that reached the map meanwhile.
    /// </summary>
    let fromRing (id: string) (t: int64) (cameBack: bool) (idleTimeout: TimeSpan) : struct (MemoryEntry * bool) =
        let struct (entry, moved, ended) =
            fresh.Locked(fun () ->
                match fresh.Find id with
                | -1L ->
                    // Read again under the lock that moves sessions to the map: a move that began after the caller
                    // looked in the map has finished.
                    match sessions.TryGetValue id with
                    | true, entry -> struct (entry, false, ValueNone)
                    | _ -> struct (null, false, ValueNone)
                | position when fresh.ExpiresAt position <= t -> struct (null, false, endFresh position t)
                | position ->
                    let expires = if cameBack then expiresAt t idleTimeout else fresh.ExpiresAt position
                    let seen = if cameBack then t else fresh.CreatedAt position
                    let entry = MemoryEntry(fresh.ValueAt position, null, expires, seen, EvictionNode id)
                    // In the order before it is in the map, so that a later request's load, which may find it there at
                    // once, makes it returning rather than touching a node not yet in the order.
                    policy.Resize(entry.Node, entry.Size)
                    policy.Admit(entry.Node, cameBack)
                    fresh.Remove position
                    if not (sessions.TryAdd(id, entry)) then invalidOp $"The session {id} is in the store's ring and its map at once."
                    Interlocked.Add(&totalBytes, entry.Size) |> ignore
                    Interlocked.Increment &count |> ignore
                    struct (entry, true, ValueNone))
        report ended
        if moved then
            // Until the ring's tail passes the hole it left, the session is counted twice.
            enforce entry.Node -1L
        struct (entry, moved)

    /// The session after a change: the entry to store, or a result that stores nothing.
    let applyChange (id: string) (current: MemoryEntry) (change: SessionChange) (commit: CommitOptions) (t: int64) (node: EvictionNode) =
        let before = if isNull current then null else sessionOf id current
        match change.ApplyTo before with
        | null -> Error CommitResult.ShapeChanged
        | after ->
            let text = SessionText.Of(after, before, (if isNull current then null else current.Text))
            if text.DataLength > commit.MaxSizeBytes then raise (SessionTooLargeException(int64 text.DataLength, commit.MaxSizeBytes))
            SessionText.CheckFacts(text, (if isNull current then null else current.Text), commit.MaxSizeBytes)
            let user =
                match SessionMeta.userOf after.Meta with
                | Some user -> user
                | None -> null
            let next = MemoryEntry(text, user, expiresAt t commit.IdleTimeout, t, node)
            // One session the bound could never hold is refused, rather than evicting every other session first.
            if next.Size > options.MaxTotalBytes then raise (SessionTooLargeException(next.Size, int (min options.MaxTotalBytes (int64 Int32.MaxValue))))
            Ok(struct (next, after))

    let summary (id: string) (value: SessionText) (lastSeen: int64) (expires: int64) =
        SessionSummary(
            id,
            value.ParseMeta(),
            DateTimeOffset(lastSeen, TimeSpan.Zero),
            (if expires = Int64.MaxValue then DateTimeOffset.MaxValue else DateTimeOffset(expires, TimeSpan.Zero)),
            // The tree's compact JSON, as every store reports it (not what the session counts against the bounds).
            int64 value.DataLength
        )

    let summaryOf (id: string) (entry: MemoryEntry) =
        if isNull entry then
            fresh.Locked(fun () ->
                match fresh.Find id with
                | -1L ->
                    // A load moved it to the map since the listing looked (read again under the lock that moves).
                    match sessions.TryGetValue id with
                    | true, entry when entry.ExpiresAt > now () -> Some(struct (entry.Text, entry.LastSeen, entry.ExpiresAt))
                    | _ -> None
                | position -> Some(struct (fresh.ValueAt position, fresh.CreatedAt position, fresh.ExpiresAt position)))
            |> Option.map (fun (struct (value, seen, expires)) -> summary id value seen expires)
        else
            Some(summary id entry.Text entry.LastSeen entry.ExpiresAt)

    /// Makes room for one more session of a user, under the user lock; false when the policy refuses.
    let admitUser (user: string) (movingFrom: string) (limit: UserLimit) (t: int64) =
        if limit.MaxSessions <= 0 then
            true
        else
            let others =
                match users.TryGetValue user with
                | true, ids -> [
                    for id in ids do
                        if id <> movingFrom then
                            match sessions.TryGetValue id with
                            | true, entry when live entry t -> struct (id, entry)
                            | _ -> ()
                  ]
                | _ -> []
            let excess = others.Length + 1 - limit.MaxSessions
            if excess <= 0 then
                true
            elif limit.Policy = UserLimitPolicy.Refuse then
                false
            else
                // Last-seen times read once: a load may move one while this sorts (loads do not take the user lock).
                let leastRecentFirst (struct (a, _, seenA)) (struct (b, _, seenB)) = LeastRecentFirst.compare a seenA b seenB
                let seen = others |> List.map (fun (struct (id, entry: MemoryEntry)) -> struct (id, entry, entry.LastSeen))
                // The user lock is held: remove directly, then report.
                let rec endSession (id: string) (entry: MemoryEntry) =
                    if sessions.TryRemove(KeyValuePair(id, entry)) then
                        forgetRemoved id entry
                        unindex user id
                        this.ReportEndedValue(id, entry.Text, SessionEndReason.UserLimit)
                    else
                        // A commit replaced the entry meanwhile (commits do not take the user lock): end what it left,
                        // else the user would keep one session more than the limit. Gone meanwhile: nothing to end.
                        match sessions.TryGetValue id with
                        | true, current -> endSession id current
                        | _ -> ()
                for struct (id, entry, _) in seen |> List.sortWith leastRecentFirst |> List.truncate excess do
                    endSession id entry
                true

    /// The answers that are always the same, made once.
    static member val private NotFound: Task<StoredSession> = Task.FromResult<StoredSession> null
    static member val private Committed: Task<CommitResult> = Task.FromResult CommitResult.Committed

    /// <summary>A memory store with default options and the system clock.</summary>
    new() = new MemoryStore(MemoryStoreOptions(), TimeProvider.System)

    /// <summary>A memory store with the given options and the system clock.</summary>
    new(options: MemoryStoreOptions) = new MemoryStore(options, TimeProvider.System)

    /// The number of sessions held, expired ones not yet swept included.
    member _.Count = int (heldCount ())

    /// The memory the sessions held take, as the store counts it (their compact JSON, their facts and their
    /// bookkeeping): what <c>MaxTotalBytes</c> bounds.
    member _.TotalBytes = heldBytes ()

    /// The order the store evicts in (for tests and diagnostics).
    member internal _.Eviction = policy

    /// Evicts until the store is within its bounds, if it is not (the store does this itself on every commit that grows it).
    member internal _.EnforceBounds() = enforce null -1L

    /// Removes the expired sessions now.
    member _.Sweep() = sweep ()

    /// <inheritdoc />
    override _.ActiveSessionCount = Nullable(heldCount ())

    /// <inheritdoc />
    override this.LoadAsync(id, idleTimeout, _cancellationToken) =
        let t = now ()
        match sessions.TryGetValue id with
        | false, _ ->
            // A session a request made is in the ring until a later request comes back to it: this one.
            match fromRing id t true idleTimeout with
            | struct (null, _) -> MemoryStore.NotFound
            | struct (entry, true) ->
                try
                    ParsedValues.loaded parsed id entry.Text
                with e ->
                    Task.FromException<StoredSession>(e)
            | struct (_, false) -> this.LoadAsync(id, idleTimeout, _cancellationToken)
        | true, entry when entry.ExpiresAt <= t ->
            forget id entry SessionEndReason.Expired
            MemoryStore.NotFound
        | true, entry ->
            // Slid in place: the entry stays the one a concurrent commit compares against, and
            // a commit that replaces it meanwhile sets an expiry of its own.
            entry.ExpiresAt <- expiresAt t idleTimeout
            entry.LastSeen <- t
            // A later request came back to the session: it is a returning one now.
            policy.Touch(entry.Node, true)
            try
                ParsedValues.loaded parsed id entry.Text
            with e ->
                Task.FromException<StoredSession>(e)

    /// <inheritdoc />
    override _.CommitAsync(id, change, commit, _cancellationToken) =
        let rec attempt () =
            let t = now ()
            let current =
                match sessions.TryGetValue id with
                | true, entry when entry.ExpiresAt > t -> entry
                | true, entry ->
                    forget id entry SessionEndReason.Expired
                    null
                | _ ->
                    match fromRing id t false TimeSpan.Zero with
                    | struct (entry, _) when live entry t -> entry
                    | _ -> null
            if isNull current && commit.MustExist then
                CommitResult.SessionGone
            else
                let node = if isNull current then EvictionNode id else current.Node
                match applyChange id current change commit t node with
                | Error result -> result
                | Ok(struct (next, _)) when isNull current ->
                    // A new session goes to the ring, unless it is too large for it: then to the map, as a new session
                    // of the eviction order. Its tree is not kept: most first visits never come back (crawlers,
                    // floods), and a tree kept for them outlives the young generation only to die in an older one,
                    // which costs the GC far more than parsing a returning visitor's session once on its next load.
                    let placed =
                        fresh.Locked(fun () ->
                            if sessions.ContainsKey id || fresh.Find id >= 0L then
                                -2L
                            else
                                match fresh.TryAdd(id, next.Text, next.ExpiresAt, t) with
                                | -1L ->
                                    // In the order before it is in the map (see fromRing); the add cannot fail under
                                    // this lock, as the map was just read under it.
                                    policy.Resize(node, next.Size)
                                    policy.Admit(node, false)
                                    if not (sessions.TryAdd(id, next)) then invalidOp $"The session {id} appeared in the map under the ring's lock."
                                    -1L
                                | position -> position)
                    match placed with
                    | -2L ->
                        // Made meanwhile: commit onto it.
                        attempt ()
                    | -1L ->
                        Interlocked.Add(&totalBytes, next.Size) |> ignore
                        Interlocked.Increment &count |> ignore
                        enforce node -1L
                        CommitResult.Committed
                    | position ->
                        enforce null position
                        CommitResult.Committed
                | Ok(struct (next, tree)) ->
                    if sessions.TryUpdate(id, next, current) then
                        let previous = current.Size
                        Interlocked.Add(&totalBytes, next.Size - previous) |> ignore
                        policy.Resize(node, next.Size - previous)
                        // A session in use is likely to come back soon: keep the tree this commit made.
                        ParsedValues.put parsed id next.Text tree |> ignore
                        policy.Touch(node, false)
                        if next.Size > previous then enforce node -1L
                        CommitResult.Committed
                    else
                        attempt ()
        try
            SessionStore.CheckStorableId(id, nameof id)
            if isNull change then nullArg (nameof change)
            if change.BindsUser then
                invalidArg (nameof change) "A commit cannot bind a session to a user or unbind it; a move does (sign-in rotates the session)."
            match attempt () with
            | CommitResult.Committed -> MemoryStore.Committed
            | result -> Task.FromResult result
        with e ->
            Task.FromException<CommitResult> e

    /// <inheritdoc />
    override _.MoveAsync(fromId, toId, change, commit, _cancellationToken) =
        let rec attempt () =
            let t = now ()
            let current =
                if isNull fromId then
                    null
                else
                    match sessions.TryGetValue fromId with
                    | true, entry when live entry t -> entry
                    | true, _ -> null
                    | _ ->
                        // A session in the ring moves as a new one (unless the move binds a user: see below).
                        match fromRing fromId t false TimeSpan.Zero with
                        | struct (entry, _) when live entry t -> entry
                        | _ -> null
            if not (isNull fromId) && isNull current then
                CommitResult.SessionGone
            else
                match applyChange (if isNull fromId then toId else fromId) current change commit t (EvictionNode toId) with
                | Error result -> result
                | Ok(struct (next, tree)) ->
                    let moved =
                        lock userLock (fun () ->
                            if not (isNull next.User) && not (admitUser next.User fromId commit.UserLimit t) then
                                ValueSome CommitResult.UserLimitReached
                            elif
                                // Under the ring's lock, as every id added to the map: the new id is checked first, so
                                // that a move to an id in use changes nothing.
                                not (
                                    fresh.Locked(fun () ->
                                        if sessions.ContainsKey toId || fresh.Find toId >= 0L then
                                            invalidOp $"The move's new id is already a session; a new id must be fresh."
                                        (isNull current || sessions.TryRemove(KeyValuePair(fromId, current))) && sessions.TryAdd(toId, next))
                                )
                            then
                                // A commit replaced the session meanwhile: move what it left.
                                ValueNone
                            else
                                if not (isNull current) then
                                    parsed.Drop(fromId, current.Text)
                                    if not (isNull current.User) then unindex current.User fromId
                                if not (isNull next.User) then index next.User toId
                                let previous = if isNull current then 0L else current.Size
                                Interlocked.Add(&totalBytes, next.Size - previous) |> ignore
                                if isNull current then Interlocked.Increment &count |> ignore
                                ParsedValues.put parsed toId next.Text tree |> ignore
                                // The session keeps its segment under its new id, but one bound to a user is returning
                                // from its sign-in on (a login that is the visitor's first request is a user, not a
                                // crawler), so that a flood of new sessions cannot sign anyone out.
                                let cameBack = not (isNull current) && policy.IsReturning current.Node
                                if not (isNull current) then policy.Remove current.Node |> ignore
                                policy.Resize(next.Node, next.Size)
                                policy.Admit(next.Node, cameBack || not (isNull next.User))
                                leaveOrderIfGone toId next.Node
                                ValueSome CommitResult.Committed)
                    match moved with
                    | ValueSome result ->
                        if result = CommitResult.Committed then enforce next.Node -1L
                        result
                    | ValueNone -> attempt ()
        try
            SessionStore.CheckStorableId(toId, nameof toId)
            if isNull change then nullArg (nameof change)
            match attempt () with
            | CommitResult.Committed -> MemoryStore.Committed
            | result -> Task.FromResult result
        with e ->
            Task.FromException<CommitResult> e

    /// <inheritdoc />
    override _.DeleteAsync(id, _cancellationToken) =
        let rec attempt () =
            match sessions.TryGetValue id with
            | true, entry -> if removeEntry id entry then entry.ExpiresAt > now () else attempt ()
            | _ ->
                let struct (inMap, wasLive) =
                    fresh.Locked(fun () ->
                        match fresh.Find id with
                        | -1L -> struct (sessions.ContainsKey id, false)
                        | position ->
                            let wasLive = fresh.ExpiresAt position > now ()
                            fresh.Remove position
                            struct (false, wasLive))
                // Moved to the map meanwhile: delete it there.
                if inMap then attempt () else wasLive
        try
            if isNull id then nullArg (nameof id)
            Task.FromResult(attempt ())
        with e ->
            Task.FromException<bool> e

    /// <inheritdoc />
    override _.ListAsync(query, _cancellationToken) =
        try
            if query.Limit <= 0 then invalidArg (nameof query) "A listing's Limit must be positive."
            let t = now ()
            let chosen = IdPage<MemoryEntry>.ForListing(query.After, query.Limit)
            if isNull query.UserId then
                // The ring's first (they are bound to no user; null: its summary is read from there, if it is still
                // there), then the map's: a session a load moves from the ring to the map meanwhile is met in one or the
                // other, and the page takes an id once.
                fresh.OfferUnexpired(chosen, t, fun _ _ -> null)
                for KeyValue(id, entry) in sessions do
                    if live entry t then chosen.Offer(id, entry)
            else
                // From the cursor, in order, until the page is full: a page reads what it lists (and the user's
                // expired sessions not swept yet on the way), not every session of the user, which a client signing in
                // again and again can make many.
                lock userLock (fun () ->
                    match users.TryGetValue query.UserId with
                    | true, ids ->
                        use walk = (OrderedIds.after ids query.After).GetEnumerator()
                        while not chosen.IsFull && walk.MoveNext() do
                            let id = walk.Current
                            match sessions.TryGetValue id with
                            | true, entry when live entry t -> chosen.Offer(id, entry)
                            | _ -> ()
                    | _ -> ())
            // Ordered by id, so a page continues where the last one stopped however the map changes in between.
            let page = chosen.Sorted()
            let more = page.Length > query.Limit
            let shown = if more then Array.truncate query.Limit page else page
            let summaries = shown |> Array.choose (fun (struct (id, entry)) -> summaryOf id entry)
            let next = if more then (let struct (id, _) = shown[shown.Length - 1] in id) else null
            Task.FromResult(SessionPage(summaries, next))
        with e ->
            Task.FromException<SessionPage> e

    interface IDisposable with
        member _.Dispose() = sweeper.Dispose()
