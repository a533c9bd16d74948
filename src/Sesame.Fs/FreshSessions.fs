namespace Sesame

open System
open System.Buffers.Binary
open System.Collections.Generic
open System.Runtime.InteropServices
open System.Threading

/// Each thread's room for the UTF-8 bytes of an id a ring is given.
[<AbstractClass; Sealed>]
type internal FreshIdBuffer =
    [<ThreadStatic; DefaultValue>]
    static val mutable private buffer: byte[]

    /// Room for the UTF-8 bytes of 255 UTF-16 characters.
    static member Get() =
        if isNull FreshIdBuffer.buffer then FreshIdBuffer.buffer <- Array.zeroCreate 1024
        FreshIdBuffer.buffer

/// <summary>
/// Sessions held without a .NET object each: one record per session, appended to a ring of large byte arrays, and found
/// through a map whose keys and values are numbers. The memory store holds here the sessions that only one request has
/// used so far (a first visit, a bot, every session of a flood); the file store, the sessions it replayed that no request
/// has used since it opened.
/// </summary>
/// <remarks>
/// <para><b>Why.</b> A session held as objects (its entry, its text, its array, its id, its node in the map and in the
/// eviction order) outlives the young generation, is copied into the old one, and dies there when it is evicted or
/// expires, so the collector pays for every session of a flood twice, in the pauses every request waits for. Measured on
/// the load test's app (wrk without cookies, 100,000 sessions held): the new-session p99 was 37-40 ms with the sessions
/// held as objects, against 4.4 ms when the same store held at most 1,000 of them. A record in an array is no object:
/// the collector never traces it, and the arrays themselves live as long as the store.</para>
/// <para><b>Why a ring.</b> A session that only one request used was touched once, when it was made, so the order it
/// was made in is its least-recently-used order: the oldest record is the next to evict, and eviction only moves the
/// ring's tail. A record whose session ends otherwise (it came back and moved to the store's map, it was deleted)
/// leaves a hole that the tail passes later. The ring's memory is therefore what lies between its tail and its head,
/// holes included, and that is what it counts against the store's byte bound: the bound holds for what is really
/// held, and evicting the one-request sessions (which the bound does first) frees the holes with them.</para>
/// <para>Not thread-safe: each store uses it under one lock (this object).</para>
/// </remarks>
[<Sealed>]
type internal FreshSessions(chunkBytes: int, capacity: int) =
    // A record: its length (0 ends the chunk's records), whether it is live (a byte), the id's length in UTF-8 bytes
    // (two bytes), the tree's JSON length, the value's length (tree and facts), the expiry and the last use (UTC ticks);
    // then the id (UTF-8) and the value. Records are 8-byte aligned and never span two arrays. The record's key in the
    // map is the id's hash, computed again when the record ends rather than kept.
    static let headerBytes = 32
    static let lengthAt = 0
    static let liveAt = 4
    static let idBytesAt = 6
    static let dataLengthAt = 8
    static let valueLengthAt = 12
    static let expiresAt = 16
    static let createdAt = 24

    /// The longest id a record holds, in UTF-8 bytes: a longer one goes to the store's map (server-made ids are 32).
    static let maxIdBytes = 255

    /// What a record's entry in the map costs besides the record: a Dictionary of two Int64s takes 28 bytes a slot
    /// (its entry and its bucket), and holds up to twice as many slots as entries after it grows.
    static let mapEntryBytes = 48L

    /// Writes the id's UTF-8 bytes; gives how many, or -1 for an id a record does not hold: longer than maxIdBytes, or
    /// not valid UTF-16 (ids with different lone surrogates would write the same bytes).
    static let encodeId (id: ReadOnlySpan<char>) (into: Span<byte>) : int =
        if id.Length > maxIdBytes then
            -1
        else
            let mutable read = 0
            let mutable written = 0
            match Text.Unicode.Utf8.FromUtf16(id, into, &read, &written, false, true) with
            | Buffers.OperationStatus.Done when written <= maxIdBytes -> written
            | _ -> -1

    /// Two independent randomly seeded 32-bit hashes of the id's bytes. Ids are the server's own random ones (a
    /// client's cookie is only looked up once its protection checked out), and a clash only sends a session to the
    /// store's map.
    static let keyOf (id: ReadOnlySpan<byte>) =
        let mutable first = HashCode()
        first.AddBytes id
        let mutable second = HashCode()
        second.Add 0x2545F491
        second.AddBytes id
        (int64 (first.ToHashCode()) <<< 32) ||| int64 (uint32 (second.ToHashCode()))

    let chunks = List<byte[]>()
    /// One array kept back when the tail leaves it, for the head's next array: a ring that slides keeps its arrays.
    let mutable spare: byte[] = null
    /// Where the head's next new array comes from while arrays are made ready ahead (see PrepareArraysAhead); null
    /// otherwise.
    let mutable ahead: ArraysAhead = null
    /// The ring's positions count bytes from the store's start and only grow; chunk n holds [n, n + 1) × chunkBytes.
    let mutable firstChunk = 0L
    let mutable head = 0L
    let mutable tail = 0L
    let records = Dictionary<int64, int64>(capacity)
    let mutable live = 0
    let mutable countedBytes = 0L
    /// The bytes of the live records alone (what lies between the tail and the head besides holes).
    let mutable recordBytes = 0L
    /// The bytes of the live records' ids and values, without their headers and padding.
    let mutable idAndValueBytes = 0L
    /// Whether the records were appended in the order of their last use, and none retimed: the ring is then in
    /// least-recently-used order.
    let mutable inOrder = true
    let mutable lastAdded = Int64.MinValue
    /// No record expires before this (UTC ticks); records that ended may have been the ones that did.
    let mutable earliestExpiry = Int64.MaxValue

    let chunkOf (position: int64) = chunks[int (position / int64 chunkBytes - firstChunk)]
    let offsetOf (position: int64) = int (position % int64 chunkBytes)
    let header (position: int64) = Span(chunkOf position, offsetOf position, headerBytes)
    let int32At (position: int64) (field: int) = BinaryPrimitives.ReadInt32LittleEndian(ReadOnlySpan(chunkOf position, offsetOf position + field, 4))
    let int64At (position: int64) (field: int) = BinaryPrimitives.ReadInt64LittleEndian(ReadOnlySpan(chunkOf position, offsetOf position + field, 8))

    let idBytesOf (position: int64) = int (BinaryPrimitives.ReadUInt16LittleEndian(ReadOnlySpan(chunkOf position, offsetOf position + idBytesAt, 2)))

    let idOf (position: int64) = ReadOnlySpan(chunkOf position, offsetOf position + headerBytes, idBytesOf position)

    let valueOf (position: int64) = ReadOnlySpan(chunkOf position, offsetOf position + headerBytes + idBytesOf position, int32At position valueLengthAt)

    let publish () = Volatile.Write(&countedBytes, head - tail + mapEntryBytes * int64 live)

    /// Requests waiting for the ring's lock (see Locked): a long walk lets them go first between its batches.
    let mutable waiting = 0
    /// How many requests have taken the ring's lock (written under it): a walk that gave way sees one got in.
    let mutable entered = 0L
    /// The earliest expiry given by a record added or retimed since the last sweep began (see SweepExpired).
    let mutable earliestSinceSweep = Int64.MaxValue
    /// How many sweeps have begun: one that another began after ends without setting EarliestExpiry.
    let mutable sweeps = 0L

    /// The start of the array after the one the position is in.
    let nextChunk (position: int64) = (position / int64 chunkBytes + 1L) * int64 chunkBytes

    /// Whether the array's records end at the position (what follows is unused).
    let endsChunk (position: int64) = offsetOf position + 4 > chunkBytes || int32At position lengthAt = 0

    /// Whether a live record starts at the position (one before the head).
    let isLive (position: int64) = not (endsChunk position) && (chunkOf position)[offsetOf position + liveAt] <> 0uy

    /// The position after the record (or the array's unused end) at the position: every walk of the ring steps so.
    let step (position: int64) = if endsChunk position then nextChunk position else position + int64 (int32At position lengthAt)

    /// Moves the tail past the holes and the chunk ends before the oldest live record, and lets go of the arrays it left.
    let advanceTail () =
        while tail < head && not (isLive tail) do
            tail <- step tail
        while chunks.Count > 0 && (firstChunk + 1L) * int64 chunkBytes <= tail do
            if isNull spare then spare <- chunks[0]
            chunks.RemoveAt 0
            firstChunk <- firstChunk + 1L

    /// A ring whose map grows as it needs.
    new(chunkBytes: int) = FreshSessions(chunkBytes, 0)

    /// <summary>Makes the ring's next new arrays ready on a pool thread, each before the head needs it, until
    /// StopArraysAhead: for a ring filled fast and long by one thread (replay).</summary>
    /// <remarks>See ArraysAhead: the page faults of the arrays' first writes then happen on another core.</remarks>
    member _.PrepareArraysAhead() = if isNull ahead then ahead <- ArraysAhead chunkBytes

    /// Makes no more arrays ready ahead; gives how many arrays the head took ready and how many on the spot meanwhile.
    member _.StopArraysAhead() : struct (int * int) =
        if isNull ahead then
            struct (0, 0)
        else
            ahead.Stop()
            let taken = struct (ahead.TakenReady, ahead.TakenOnTheSpot)
            ahead <- null
            taken

    /// Lets the map go of the room it has beyond its entries (as replay leaves it, for instance).
    member _.TrimExcess() = records.TrimExcess()

    /// Gives the map room for this many records, so that filling it does not grow it step by step.
    member _.EnsureCapacity(count: int) = records.EnsureCapacity count |> ignore

    /// The bytes of the live records' ids (UTF-8) and values, without the ring's headers and padding.
    member _.IdAndValueBytes = idAndValueBytes

    /// Whether every record was appended in the order of its last use and none was retimed since: the ring is then in
    /// least-recently-used order without a walk to check it.
    member _.InOrder = inOrder

    /// No live record expires before this (UTC ticks; <c>Int64.MaxValue</c> for a ring never given one): a lower
    /// bound, so that a ring all of whose records outlive a time needs no walk to find the expired.
    member _.EarliestExpiry = earliestExpiry

    /// The sessions held.
    member _.LiveCount = Volatile.Read &live

    /// Where the next record goes. Positions only grow, so every record added so far lies before it: a clock by which
    /// a store tells whether a session it holds elsewhere is older than a record of the ring.
    member _.Head = Volatile.Read &head

    /// What the ring counts against the store's byte bound: from its tail to its head, holes included, and the map.
    member _.CountedBytes = Volatile.Read &countedBytes

    /// What the ring holds between its tail and its head that no live record uses (holes, arrays' unused ends).
    member _.UnusedBytes = head - tail - recordBytes

    /// The arrays the ring holds, the spare one included (for tests and diagnostics).
    member _.ArrayCount = chunks.Count + (if isNull spare then 0 else 1)

    /// The position of the id's record, or -1.
    member _.Find(id: string) : int64 =
        let buffer = FreshIdBuffer.Get()
        match encodeId (id.AsSpan()) (Span buffer) with
        | -1 -> -1L
        | length ->
            let bytes = ReadOnlySpan(buffer, 0, length)
            match records.TryGetValue(keyOf bytes) with
            | true, position when MemoryExtensions.SequenceEqual(idOf position, bytes) -> position
            | _ -> -1L

    /// <summary>Appends a session; gives its position, or -1 when the ring does not take it (too large, or its key is
    /// taken by another id) and the store's map should.</summary>
    /// <remarks>The caller has checked that the id is held nowhere.</remarks>
    member this.TryAdd(id: string, value: SessionText, expires: int64, created: int64) : int64 =
        this.TryAdd(id.AsSpan(), ReadOnlySpan(value.Utf8), value.DataLength, expires, created)

    /// <summary>Appends a session whose value (tree, then facts) is given as its UTF-8 bytes and the tree's length in
    /// them; gives its position, or -1 when the ring does not take it.</summary>
    member this.TryAdd(id: ReadOnlySpan<char>, value: ReadOnlySpan<byte>, dataLength: int, expires: int64, created: int64) : int64 =
        let buffer = FreshIdBuffer.Get()
        match encodeId id (Span buffer) with
        | -1 -> -1L
        | idBytes -> this.TryAddUtf8(ReadOnlySpan(buffer, 0, idBytes), value, dataLength, expires, created)

    /// <summary>Appends a session whose id is given as its UTF-8 bytes, as replay reads it from a record (with no
    /// string made for it); gives its position, or -1 when the ring does not take it.</summary>
    /// <remarks>The caller has checked that the bytes are valid UTF-8 (then the id's string has no lone surrogate, and
    /// gives these very bytes again). An id the ring holds already is refused, as its key is taken.</remarks>
    member _.TryAddUtf8(id: ReadOnlySpan<byte>, value: ReadOnlySpan<byte>, dataLength: int, expires: int64, created: int64) : int64 =
        let length = (headerBytes + id.Length + value.Length + 7) &&& ~~~7
        // A larger session goes to the store's map, so that what a record that does not fit leaves unused at the end of
        // an array is at most an eighth of it.
        if id.Length > maxIdBytes || length > chunkBytes / 8 then
            -1L
        else
            let key = keyOf id
            let offset = offsetOf head
            let rolls = offset + length > chunkBytes
            let position = if rolls then nextChunk head else head
            // The array first: if it cannot be had (out of memory), nothing has changed. (Kept when the key turns out
            // taken, below: it is the head's next array, which the next record that rolls over uses.)
            if position / int64 chunkBytes - firstChunk = int64 chunks.Count then
                chunks.Add(
                    if not (isNull spare) then spare
                    elif isNull ahead then Array.zeroCreate chunkBytes
                    else ahead.Take()
                )
                spare <- null
            // One look-up finds the key taken or adds it (a look-up in a map of a million keys is a cache miss or two).
            let mutable taken = false
            let slot = &CollectionsMarshal.GetValueRefOrAddDefault(records, key, &taken)
            if taken then
                -1L
            else
                slot <- position
                if rolls && offset + 4 <= chunkBytes then BinaryPrimitives.WriteInt32LittleEndian(Span(chunkOf head, offset, 4), 0)
                let fields = header position
                BinaryPrimitives.WriteInt32LittleEndian(fields.Slice lengthAt, length)
                fields[liveAt] <- 1uy
                BinaryPrimitives.WriteUInt16LittleEndian(fields.Slice idBytesAt, uint16 id.Length)
                BinaryPrimitives.WriteInt32LittleEndian(fields.Slice dataLengthAt, dataLength)
                BinaryPrimitives.WriteInt32LittleEndian(fields.Slice valueLengthAt, value.Length)
                BinaryPrimitives.WriteInt64LittleEndian(fields.Slice expiresAt, expires)
                BinaryPrimitives.WriteInt64LittleEndian(fields.Slice createdAt, created)
                let body = Span(chunkOf position, offsetOf position + headerBytes, length - headerBytes)
                id.CopyTo body
                value.CopyTo(body.Slice id.Length)
                head <- position + int64 length
                inOrder <- inOrder && created >= lastAdded
                lastAdded <- created
                earliestExpiry <- min earliestExpiry expires
                earliestSinceSweep <- min earliestSinceSweep expires
                live <- live + 1
                recordBytes <- recordBytes + int64 length
                idAndValueBytes <- idAndValueBytes + int64 (id.Length + value.Length)
                publish ()
                position

    /// Ends the record's session (its space is freed when the tail passes it).
    member _.Remove(position: int64) =
        let fields = header position
        fields[liveAt] <- 0uy
        records.Remove(keyOf (idOf position)) |> ignore
        idAndValueBytes <- idAndValueBytes - int64 (idBytesOf position + BinaryPrimitives.ReadInt32LittleEndian(fields.Slice valueLengthAt))
        live <- live - 1
        recordBytes <- recordBytes - int64 (BinaryPrimitives.ReadInt32LittleEndian(fields.Slice lengthAt))
        advanceTail ()
        publish ()

    /// <summary>The oldest live record other than <paramref name="except"/> (the session being acknowledged), or -1.
    /// When that session is the oldest, the next is given only if <paramref name="pastExcept"/>: evicting it lowers the
    /// count but frees no space, as the tail stays where it is.</summary>
    member _.Oldest(except: int64, pastExcept: bool) : int64 =
        advanceTail ()
        if tail = except && not pastExcept then
            -1L
        else
            let mutable position = tail
            while position < head && (position = except || not (isLive position)) do
                position <- step position
            if position < head then position else -1L

    /// Whether a live record starts at the position: false once its session ended, even after the tail passed it.
    member _.IsLiveAt(position: int64) = position >= tail && position < head && isLive position

    /// Sets when the record's session expires and when a request last used it (UTC ticks).
    member _.Retime(position: int64, expires: int64, lastUsed: int64) =
        inOrder <- false
        earliestExpiry <- min earliestExpiry expires
        earliestSinceSweep <- min earliestSinceSweep expires
        let fields = header position
        BinaryPrimitives.WriteInt64LittleEndian(fields.Slice expiresAt, expires)
        BinaryPrimitives.WriteInt64LittleEndian(fields.Slice createdAt, lastUsed)

    /// The record's session id.
    member _.IdAt(position: int64) = Text.Encoding.UTF8.GetString(idOf position)

    /// Writes the record's id as characters (room for 255 is enough); gives how many, with no string made for it.
    member _.CopyIdChars(position: int64, into: Span<char>) : int =
        // A record's id is valid UTF-8 (TryAdd and TryAddUtf8 take no other).
        Text.Encoding.UTF8.GetChars(idOf position, into)

    /// The bytes of the record's session id in UTF-8.
    member _.IdUtf8LengthAt(position: int64) = idBytesOf position

    /// The bytes of the record's value (tree and facts).
    member _.ValueLengthAt(position: int64) = int32At position valueLengthAt

    /// The record's value, copied out.
    member _.ValueAt(position: int64) =
        let value = valueOf position
        let dataLength = int32At position dataLengthAt
        SessionText.OfParts(value.Slice(0, dataLength), value.Slice dataLength)

    /// The record's facts (JSON), where the ring holds them.
    member _.MetaAt(position: int64) : ReadOnlySpan<byte> = (valueOf position).Slice(int32At position dataLengthAt)

    /// The bytes of the record's tree JSON.
    member _.DataLengthAt(position: int64) = int32At position dataLengthAt

    /// When the record's session expires (UTC ticks).
    member _.ExpiresAt(position: int64) = int64At position expiresAt

    /// When the record's session was made, or retimed (UTC ticks): the last time a request used it.
    member _.CreatedAt(position: int64) = int64At position createdAt

    /// How many records a walk visits in one hold of the ring's lock (see WalkInBatches).
    static member WalkBatch = 256

    /// Takes the ring's lock (this object) as a request does, counted while it waits (see Locked).
    member this.EnterAsRequest() =
        Interlocked.Increment(&waiting) |> ignore
        try
            Monitor.Enter this
        finally
            Interlocked.Decrement(&waiting) |> ignore
        entered <- entered + 1L

    /// Lets the ring's lock go.
    member this.Exit() = Monitor.Exit this

    /// <summary>Runs <paramref name="action"/> under the ring's lock (this object), as a request does: a long walk of
    /// the ring (<c>WalkInBatches</c>) lets it in between its batches.</summary>
    member inline this.Locked([<InlineIfLambda>] action: unit -> 'result) : 'result =
        this.EnterAsRequest()
        try
            action ()
        finally
            this.Exit()

    /// <summary>Walks the whole ring (see Walk), a batch at a time under its lock; <paramref name="visit"/> runs under
    /// the lock and may end the record it is given.</summary>
    /// <remarks>The lock is not fair: a walker that lets it go and takes it again at once keeps the requests waiting
    /// for it (a new session's commit, a load of a session not in the store's map) out for the whole walk, some tens of
    /// milliseconds in a ring of a million sessions. So between batches, while requests wait (counted by Locked), the
    /// walk waits until one of them has got in, or a millisecond has passed, so that a stream of them cannot hold the
    /// walk back for ever.</remarks>
    member this.WalkInBatches(visit: int64 -> unit) =
        let mutable position = 0L
        while position >= 0L do
            let from = position
            let struct (next, enteredBefore) = lock this (fun () -> struct (this.Walk(from, FreshSessions.WalkBatch, visit), entered))
            position <- next
            if position >= 0L && Volatile.Read &waiting > 0 then
                let started = Diagnostics.Stopwatch.GetTimestamp()
                let mutable spin = SpinWait()
                while Volatile.Read &waiting > 0
                      && Volatile.Read &entered = enteredBefore
                      && Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds < 1.0 do
                    spin.SpinOnce()

    /// <summary>Ends the records expired at <paramref name="t"/> (UTC ticks), walking the ring a batch at a time (see
    /// WalkInBatches): <paramref name="ending"/> is given each, under the lock, and ends it (Remove). No walk while no
    /// record can have expired (EarliestExpiry is later than t).</summary>
    /// <remarks>Then EarliestExpiry is the earliest expiry of the records left (and of those added or retimed since the
    /// sweep began), so that the next sweep skips the walk until one of them may have expired: without this it would
    /// stay at the first expiry the ring ever had, and every sweep after that would walk the whole ring.</remarks>
    member this.SweepExpired(t: int64, ending: int64 -> unit) =
        let sweep =
            lock this (fun () ->
                if earliestExpiry > t then
                    -1L
                else
                    earliestSinceSweep <- Int64.MaxValue
                    sweeps <- sweeps + 1L
                    sweeps)
        if sweep >= 0L then
            let kept = ref Int64.MaxValue
            this.WalkInBatches(fun position ->
                let expires = int64At position expiresAt
                if expires <= t then ending position else kept.Value <- min kept.Value expires)
            lock this (fun () -> if sweeps = sweep then earliestExpiry <- min kept.Value earliestSinceSweep)

    /// <summary>Offers a listing's page the records unexpired at <paramref name="t"/> (UTC ticks), walking the ring a
    /// batch at a time (see WalkInBatches): only an id the page wants is read as a string, and taken with the item
    /// <paramref name="item"/> makes of it and its record's position (under the lock).</summary>
    member this.OfferUnexpired(page: IdPage<'item>, t: int64, item: string -> int64 -> 'item) =
        this.WalkInBatches(fun position ->
            if int64At position expiresAt > t then
                let length = this.CopyIdChars(position, Span page.IdChars)
                if page.Wants(ReadOnlySpan(page.IdChars, 0, length)) then
                    let id = this.IdAt position
                    page.Take(id, item id position))

    /// <summary>Visits up to <paramref name="count"/> live records from <paramref name="from"/> on (from the tail when
    /// the tail has passed it), oldest first; gives the position to go on from, or -1 once the walk reached the head.
    /// </summary>
    /// <remarks>A walk of a large ring (a listing, a sweep) goes a batch at a time, letting the ring's lock go between
    /// batches so that the requests waiting for it get in; it needs no list of every position. Records never move, so
    /// the position a batch stopped at stays good; <paramref name="visit"/> may end the record it is given.</remarks>
    member _.Walk(from: int64, count: int, visit: int64 -> unit) : int64 =
        let mutable position = max from tail
        let mutable visited = 0
        while visited < count && position < head do
            if isLive position then
                let next = step position
                visit position
                visited <- visited + 1
                // Ending the record may have moved the tail past the next one, and let its array go.
                position <- max next tail
            else
                position <- step position
        if position < head then position else -1L

    /// The positions of the live records, oldest first.
    member _.Positions() : List<int64> =
        let found = List<int64>(live)
        let mutable position = tail
        while position < head do
            if isLive position then found.Add position
            position <- step position
        found
