namespace Sesame

open System
open System.Threading

/// <summary>
/// One session's place in a store's eviction order (<see cref="T:Sesame.SegmentedLru"/>). A store keeps one node per
/// live session; the node outlives the store's entries for that session (a commit replaces the entry, not the node).
/// A store whose session object lives as long as the session makes that object its node (one object a session fewer).
/// </summary>
[<AllowNullLiteral>]
type internal EvictionNode(id: string) =
    /// The session id.
    member _.Id = id

    /// Towards the more recently used end of the node's segment (the segment's sentinel at the end).
    [<DefaultValue>]
    val mutable Newer: EvictionNode

    /// Towards the less recently used end (the segment's sentinel at the end).
    [<DefaultValue>]
    val mutable Older: EvictionNode

    /// In no segment (0), new (1) or returning (2). Written under the policy's lock; read without it only as a hint.
    [<DefaultValue>]
    val mutable Segment: int

    /// The count of nodes put at the head of its segment when this one was put there: how far from the head it can be.
    [<DefaultValue>]
    val mutable Stamp: int64

    /// What the session counts against the store's byte bound, as its segment counts it (changed under the policy's lock).
    [<DefaultValue>]
    val mutable Bytes: int64

    /// The policy's clock when the node was last put at the head of the new segment: a store that holds new sessions
    /// outside the order too tells by it which of them is older.
    [<DefaultValue>]
    val mutable FreshSince: int64

/// One segment: a doubly linked list from most to least recently used, around a sentinel. Changed under the policy's lock.
[<Sealed>]
type internal EvictionSegment(kind: int) =
    let sentinel = EvictionNode null
    do
        sentinel.Newer <- sentinel
        sentinel.Older <- sentinel
    let mutable count = 0
    let mutable pushes = 0L
    let mutable bytes = 0L

    member _.Kind = kind
    member _.Count = Volatile.Read &count

    /// What the segment's sessions count against the byte bound (the sum of their nodes' Bytes).
    member _.Bytes = Volatile.Read &bytes

    /// A node of the segment counts delta bytes more.
    member _.Grow(delta: int64) = Volatile.Write(&bytes, bytes + delta)

    /// How many nodes were ever put at the head: a node stamped with this, with no push since, is the head.
    member _.Pushes = Volatile.Read &pushes

    member _.PushHead(node: EvictionNode) =
        let head = sentinel.Older
        node.Newer <- sentinel
        node.Older <- head
        head.Newer <- node
        sentinel.Older <- node
        node.Segment <- kind
        pushes <- pushes + 1L
        Volatile.Write(&node.Stamp, pushes)
        Volatile.Write(&count, count + 1)
        Volatile.Write(&bytes, bytes + node.Bytes)

    member _.Unlink(node: EvictionNode) =
        node.Newer.Older <- node.Older
        node.Older.Newer <- node.Newer
        node.Newer <- null
        node.Older <- null
        node.Segment <- 0
        Volatile.Write(&count, count - 1)
        Volatile.Write(&bytes, bytes - node.Bytes)

    /// The least recently used node other than <c>except</c>, or null.
    member _.Coldest(except: EvictionNode) =
        let tail = sentinel.Newer
        let candidate = if obj.ReferenceEquals(tail, except) then tail.Newer else tail
        if obj.ReferenceEquals(candidate, sentinel) then null else candidate

    /// The ids from least to most recently used.
    member _.Ids() = [
        let mutable node = sentinel.Newer
        while not (obj.ReferenceEquals(node, sentinel)) do
            yield node.Id
            node <- node.Newer
    ]

/// <summary>
/// The order in which a store evicts sessions: a segmented LRU. A session starts in the <em>new</em> segment; a later
/// request that loads it again moves it to the <em>returning</em> segment. Eviction takes the least recently used new
/// session first, and a returning session only when no new one is left; the returning segment holds at most
/// <c>maxEntries - max(1, maxEntries / 5)</c> sessions and <c>maxBytes - max(1, maxBytes / 5)</c> bytes (80% of each
/// bound), and its least recently used sessions past either go back to the head of the new segment, where they outlive
/// the next fifth of the bound in new sessions. So new sessions keep a fifth of both bounds, whichever binds: sessions
/// that came back cannot fill the store until each new session is evicted by the next.
/// </summary>
/// <remarks>
/// <para><b>Why a segmented LRU.</b> Session ids are random and never reused, so a newcomer has no history an
/// admission filter could weigh: W-TinyLFU's frequency sketch would see every flood session once and every real
/// user's session a few times, which is exactly the one-request/returning split this makes directly, without a
/// sketch to size and age. 2Q's extra queue remembers ids it evicted so that they come back hot; an evicted session is
/// gone for good, so nothing would ever come back through it. A segmented LRU gives the guarantee that matters
/// (a flood of one-request sessions evicts only its own kind) with two linked lists.</para>
/// <para><b>Cost.</b> Every operation is O(1): a few pointer writes under one short lock. A touch of a session that
/// is already among the most recently used sixteenth of its segment takes no lock at all (its stamp says so), so a
/// busy session's loads and commits stay lock-free; the order is then exact to within a sixteenth of the segment,
/// which never matters for which sessions are evicted first.</para>
/// </remarks>
[<Sealed>]
type internal SegmentedLru
    (
        maxEntries: int,
        maxBytes: int64,
        /// The clock a node put at the head of the new segment is stamped with (its FreshSince); read under the lock.
        freshClock: unit -> int64
    ) =
    let gate = obj ()
    let fresh = EvictionSegment 1
    let returning = EvictionSegment 2
    let returningCapacity = max 0 (maxEntries - max 1 (maxEntries / 5))
    let returningBytesCapacity = max 0L (maxBytes - max 1L (maxBytes / 5L))

    let segmentOf (kind: int) = if kind = 2 then returning else fresh

    /// Puts the node at the head of the new segment, stamped with the clock. Call under the gate.
    let pushFresh (node: EvictionNode) =
        node.FreshSince <- freshClock ()
        fresh.PushHead node

    /// The least recently used new session, or, when none is left and orReturning, the least recently used returning
    /// one; never except. Call under the gate.
    let nextVictim (except: EvictionNode) (orReturning: bool) =
        match fresh.Coldest except with
        | null when orReturning -> returning.Coldest except
        | found -> found

    /// Moves the least recently used returning sessions past the segment's capacity, in sessions or bytes, to the
    /// head of the new segment.
    let rebalance () =
        while returning.Count > returningCapacity || (returning.Bytes > returningBytesCapacity && returning.Count > 0) do
            let coldest = returning.Coldest null
            returning.Unlink coldest
            pushFresh coldest

    /// An order for a store bounded in sessions only, whose new sessions are all in the order.
    new(maxEntries: int) = SegmentedLru(maxEntries, Int64.MaxValue, (fun () -> 0L))

    /// The most sessions the returning segment keeps (80% of the bound).
    member _.ReturningCapacity = returningCapacity

    /// The most bytes the returning segment's sessions count (80% of the byte bound).
    member _.ReturningBytesCapacity = returningBytesCapacity

    /// What the returning sessions count against the byte bound.
    member _.ReturningBytes = returning.Bytes

    /// The number of sessions in the order.
    member _.Count = fresh.Count + returning.Count

    /// The number of new sessions (used by one request so far).
    member _.NewCount = fresh.Count

    /// The number of returning sessions.
    member _.ReturningCount = returning.Count

    /// <summary>Puts a session in the order as the most recently used of its segment; nothing if it is in it already.</summary>
    /// <param name="node">The session's node.</param>
    /// <param name="isReturning">Whether it goes to the returning segment (a session moved to a new id keeps its segment,
    /// and one bound to a user at its sign-in counts as returning; sessions replayed from a file count as returning).</param>
    member _.Admit(node: EvictionNode, isReturning: bool) =
        lock gate (fun () ->
            if node.Segment = 0 then
                if isReturning then
                    returning.PushHead node
                    rebalance ()
                else
                    pushFresh node)

    /// <summary>A request used the session: it becomes the most recently used of its segment.</summary>
    /// <param name="node">The session's node (nothing happens if it is in no segment).</param>
    /// <param name="cameBack">A later request loaded it: a new session becomes a returning one. False for a commit,
    /// which follows a load of the same request (or creates the session).</param>
    member _.Touch(node: EvictionNode, cameBack: bool) =
        match Volatile.Read &node.Segment with
        | 0 -> ()
        | 1 when cameBack ->
            lock gate (fun () ->
                if node.Segment = 1 then
                    fresh.Unlink node
                    returning.PushHead node
                    rebalance ())
        | kind ->
            let segment = segmentOf kind
            // Fewer pushes than a sixteenth of the segment since the node was put at the head: it is still among the
            // most recent sixteenth, and stays where it is (at least 1: the head itself never moves).
            let window = max 1L (int64 segment.Count / 16L)
            if segment.Pushes - Volatile.Read &node.Stamp >= window then
                lock gate (fun () ->
                    if node.Segment = kind then
                        segment.Unlink node
                        if kind = 1 then pushFresh node else segment.PushHead node)

    /// <summary>The session counts <paramref name="delta"/> bytes more against the byte bound (less when negative): a
    /// store says so each time what it counts for the session changes, whether or not it is in the order (a node
    /// admitted later brings its bytes with it).</summary>
    member _.Resize(node: EvictionNode, delta: int64) =
        if delta <> 0L then
            lock gate (fun () ->
                node.Bytes <- node.Bytes + delta
                match node.Segment with
                | 0 -> ()
                | 1 -> fresh.Grow delta
                | _ ->
                    returning.Grow delta
                    if delta > 0L then rebalance ())

    /// <summary>Takes a session out of the order (deleted, expired, moved away); false when it was in none.</summary>
    member _.Remove(node: EvictionNode) : bool =
        if Volatile.Read &node.Segment = 0 then
            false
        else
            lock gate (fun () ->
                if node.Segment = 0 then
                    false
                else
                    (segmentOf node.Segment).Unlink node
                    true)

    /// <summary>
    /// Takes the next session to evict out of the order: the least recently used new session, or, when no new session
    /// is left and <paramref name="orReturning"/> is true, the least recently used returning one. Never
    /// <paramref name="except"/> (the session whose commit is being acknowledged).
    /// </summary>
    /// <returns>The node taken out of the order, or null when there is none to take.</returns>
    member _.TakeVictim(except: EvictionNode, orReturning: bool) : EvictionNode =
        lock gate (fun () ->
            let victim = nextVictim except orReturning
            if not (isNull victim) then (segmentOf victim.Segment).Unlink victim
            victim)

    /// <summary>The session <c>TakeVictim</c> would take, left in the order; null when there is none.</summary>
    member _.PeekVictim(except: EvictionNode, orReturning: bool) : EvictionNode = lock gate (fun () -> nextVictim except orReturning)

    /// <summary>The least recently used returning session other than <paramref name="except"/>, left in the order; null
    /// when there is none.</summary>
    member _.PeekReturning(except: EvictionNode) : EvictionNode = lock gate (fun () -> returning.Coldest except)

    /// <summary>Whether the session is in the returning segment.</summary>
    member _.IsReturning(node: EvictionNode) = Volatile.Read &node.Segment = 2

    /// <summary>Whether the session is in the new segment (used by one request so far, or handed down from the
    /// returning one past its capacity).</summary>
    member _.IsNew(node: EvictionNode) = Volatile.Read &node.Segment = 1

    /// <summary>The ids in eviction order: new sessions from least to most recently used, then returning ones.</summary>
    member _.EvictionOrder() : string list = lock gate (fun () -> fresh.Ids() @ returning.Ids())

/// <summary>
/// Keeps a store within its bounds on session count and bytes, evicting in the order of a
/// <see cref="T:Sesame.SegmentedLru"/>. A store calls <c>Enforce</c> after every change that grows what it holds.
/// </summary>
/// <remarks>
/// <para>New sessions are evicted until the store is a little under the bound that was passed (by 1/64 of it: the
/// hysteresis, so that the next commits pass without evicting, and the lock is taken once for a batch); returning
/// sessions only as far as the bound itself requires. The session being acknowledged is never evicted.</para>
/// <para>One thread evicts at a time; a thread that finds another evicting leaves it the work, and the evicting thread
/// looks again after it stops, so a bound passed meanwhile is not missed.</para>
/// </remarks>
[<Sealed>]
type internal SessionBounds
    (
        policy: SegmentedLru,
        maxCount: int64,
        maxBytes: int64,
        count: unit -> int64,
        bytes: unit -> int64,
        /// Evicts the session of a node taken out of the order; false when the store keeps it (put back in the order)
        /// and can evict nothing now (a store whose writes fail): the pass then stops.
        evict: EvictionNode -> bool,
        /// Evicts the oldest of the sessions the store holds outside the order (the memory store's ring of new
        /// sessions, the file store's of sessions replayed and unused since), never the session being acknowledged
        /// (given as its node in the order or null, and as its position outside it or -1), and past that one only when
        /// the count (true) and not only the bytes are over; in a pass that evicts new sessions only, or returning ones
        /// too (true). False when it evicts none: there is none, the order's next victim goes first, or the store can evict nothing now.
        evictUnordered: EvictionNode -> int64 -> bool -> bool -> bool
    ) =
    let lowCount = maxCount - maxCount / 64L
    let lowBytes = maxBytes - maxBytes / 64L
    let mutable evicting = 0

    /// Evicts while a bound (count or bytes, each only if it was passed) is above its target; gives how many were taken.
    let pass (except: EvictionNode) (exceptUnordered: int64) (orReturning: bool) (countTarget: int64) (bytesTarget: int64) =
        let mutable taken = 0
        let mutable more = true
        while more && (count () > countTarget || bytes () > bytesTarget) do
            // The store's sessions held outside the order go first, when the store says so.
            if evictUnordered except exceptUnordered (count () > countTarget) orReturning then
                taken <- taken + 1
            else
                match policy.TakeVictim(except, orReturning) with
                | null -> more <- false
                | victim when evict victim -> taken <- taken + 1
                | _ -> more <- false
        taken

    /// The target below which a pass stops: the low-water mark of a bound that was passed, else the bound.
    let target (over: bool) (bound: int64) (low: int64) = if over then low else bound

    /// Whether the store holds more than its bounds allow.
    member _.IsOver = count () > maxCount || bytes () > maxBytes

    /// Bounds for a store that holds every session in the order.
    new(policy, maxCount, maxBytes, count, bytes, evict) = SessionBounds(policy, maxCount, maxBytes, count, bytes, evict, (fun _ _ _ _ -> false))

    /// <summary>Evicts until the store is within its bounds again, if it is not; never <paramref name="except"/>.</summary>
    /// <param name="except">The session whose commit is being acknowledged, or null.</param>
    member this.Enforce(except: EvictionNode) = this.Enforce(except, -1L)

    /// <summary>Evicts until the store is within its bounds again, if it is not; never the session being acknowledged.</summary>
    /// <param name="except">The session whose commit is being acknowledged, if it is in the order, or null.</param>
    /// <param name="exceptUnordered">Its position outside the order, or -1.</param>
    member this.Enforce(except: EvictionNode, exceptUnordered: int64) =
        let mutable progress = true
        while progress && this.IsOver && Interlocked.CompareExchange(&evicting, 1, 0) = 0 do
            try
                let countOver = count () > maxCount
                let bytesOver = bytes () > maxBytes
                let fresh = pass except exceptUnordered false (target countOver maxCount lowCount) (target bytesOver maxBytes lowBytes)
                let returning = pass except exceptUnordered true maxCount maxBytes
                progress <- fresh + returning > 0
            finally
                Volatile.Write(&evicting, 0)
