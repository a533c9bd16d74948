namespace Sesame

open System
open System.Buffers
open System.Buffers.Binary
open System.Collections.Generic
open System.Text
open System.Text.Json
open Microsoft.Extensions.Logging
open Microsoft.Win32.SafeHandles

/// The change bodies replay read for a session and has not applied yet, each with its record's offset. Replay keeps a
/// session as the store will hold it (a <c>FileSession</c> whose newest value is what replay has applied so far, null
/// for the empty session), and its changes beside it, only while it has some. Changes are applied in batches: when
/// what is pending outweighs half the value (see <c>FileReplay</c>), and the rest once, when the store is built, only to
/// the sessions still live then. A session's many records cost a few parses of its value, and replay never holds much
/// more than the values.
[<Sealed; AllowNullLiteral>]
type internal ReplayChanges() =
    member val Bodies = ResizeArray<struct (int64 * byte[])>(2)
    /// The bytes of the change bodies pending.
    member val PendingBytes = 0L with get, set
    /// Set once applying these changes during reading failed: they wait for the end, where the failure is raised only
    /// if the session is still live (as if nothing had been applied early).
    member val Deferred = false with get, set

    /// Adds a change to apply after what the session has.
    member this.Add(offset: int64, body: byte[]) =
        this.Bodies.Add(struct (offset, body))
        this.PendingBytes <- this.PendingBytes + int64 body.Length

/// What replay read from a file: the sessions held as objects (their newest values, expiries and last-seen times set;
/// nothing else), the changes still to apply to some of them, the sessions held in a ring (those whose value a record
/// gave whole, and no later record changed: see <c>FileSessions</c>), the file's length (a torn tail cut) and its format
/// version. An id is in the objects or in the ring, never in both. Also how many of the ring's arrays were made ready
/// ahead and how many were allocated on the spot (see <c>ArraysAhead</c>).
[<NoComparison; NoEquality>]
type internal Replayed = {
    Sessions: Dictionary<string, FileSession>
    Changes: Dictionary<string, ReplayChanges>
    Cold: FreshSessions
    Length: int64
    Version: uint32
    Path: string
    ArraysReady: int
    ArraysOnTheSpot: int
}

/// Each thread's scratch space for replay.
[<AbstractClass; Sealed>]
type internal ReplayBuffers =
    /// The text of a new session's value, read from its record.
    [<ThreadStatic; DefaultValue>]
    static val mutable private created: ArrayBufferWriter<byte>

    /// The UTF-16 characters of a new session's id, read from its record without making a string of them.
    [<ThreadStatic; DefaultValue>]
    static val mutable private idChars: char[]

    static member Created
        with get () = ReplayBuffers.created
        and set (value: ArrayBufferWriter<byte>) = ReplayBuffers.created <- value

    static member IdChars
        with get () = ReplayBuffers.idChars
        and set (value: char[]) = ReplayBuffers.idChars <- value

/// Rebuilding the sessions from the file on open.
module internal FileReplay =

    let private corrupt (path: string) (offset: int64) (why: string) =
        SessionStoreException $"The session file '{path}' holds a record it cannot use at byte offset {offset}: {why}. The file was left as it is."

    /// A session as replay holds it: its newest value (null: the empty session), expiry and last-seen time.
    let private replayedSession (id: string) (value: SessionText) (expires: int64) (lastSeen: int64) =
        let session = FileSession id
        session.Latest <- value
        session.LatestExpires <- expires
        session.LastSeen <- lastSeen
        session

    /// The value of a replayed session: its changes applied to what it had, in order, as the commits applied them.
    let private materialize (path: string) (version: uint32) (value: SessionText) (changes: ReplayChanges) : SessionText =
        let mutable current = if isNull value then null else value.Parse()
        for struct (offset, body) in changes.Bodies do
            let change =
                try
                    if version = FileLog.FormatVersion1 then
                        SessionChange(Patch.parseUtf8Unchecked (ReadOnlySpan body))
                    else
                        FileLog.readChange (ReadOnlySpan body)
                with :? JsonException as e ->
                    raise (
                        SessionStoreException(
                            $"The session file '{path}' holds a record it cannot use at byte offset {offset}: its change is not valid ({e.Message}). The file was left as it is.",
                            e
                        )
                    )
            let after =
                try
                    change.ApplyTo current
                with :? PathConflictException as e ->
                    raise (
                        SessionStoreException(
                            $"The session file '{path}' holds a record it cannot use at byte offset {offset}: its change does not fit the session ({e.Message}). The file was left as it is.",
                            e
                        )
                    )
            if isNull after then raise (corrupt path offset "its shape upgrade does not fit the session")
            current <- after
        SessionText.Of current

    /// What a session's pending changes must reach, at least, before reading applies them.
    let private EagerPendingBytes = 16384L

    /// Applies a session's pending changes while reading, once they outweigh half its value (and EagerPendingBytes):
    /// holding every change body to the end took replay to twice the held bytes and more, so a store could not reopen
    /// under the memory limit it ran under. Each early apply parses the value once, and comes only after the value's
    /// worth has grown by half, so a session's records still cost a few parses, not one each. A change that fails to
    /// apply here is left for the end, where it is raised only if its session is still live, as before.
    let private settle (path: string) (version: uint32) (pending: Dictionary<string, ReplayChanges>) (session: FileSession) (changes: ReplayChanges) =
        if not changes.Deferred then
            let valueLength = if isNull session.Latest then 0L else int64 session.Latest.Length
            if changes.PendingBytes >= max EagerPendingBytes (valueLength / 2L) then
                try
                    session.Latest <- materialize path version session.Latest changes
                    pending.Remove session.Id |> ignore
                with e when not (e :? OutOfMemoryException) ->
                    changes.Deferred <- true

    /// Adds a change to a session's pending ones.
    let private addChange (pending: Dictionary<string, ReplayChanges>) (id: string) (offset: int64) (body: byte[]) =
        let changes =
            match pending.TryGetValue id with
            | true, changes -> changes
            | _ ->
                let changes = ReplayChanges()
                pending[id] <- changes
                changes
        changes.Add(offset, body)
        changes

    /// The size of the arrays of the ring replay holds sessions in: large enough that a session of up to 128 KiB is
    /// held there (a record takes at most an eighth of an array), small enough that a small file takes little.
    let ColdChunkBytes = 1 <<< 20

    /// A file longer than this makes the ring's arrays ready ahead as replay fills them (FreshSessions.PrepareArraysAhead):
    /// a few arrays' worth, so that a small file starts no pool work for arrays it may never fill.
    let ArraysAheadFromBytes = 4 * ColdChunkBytes

    /// Takes the id's session out of the ring into an object (null: the ring does not hold it).
    let private takeCold (cold: FreshSessions) (sessions: Dictionary<string, FileSession>) (id: string) : FileSession =
        match cold.Find id with
        | -1L -> null
        | position ->
            let session = replayedSession id (cold.ValueAt position) (cold.ExpiresAt position) (cold.CreatedAt position)
            cold.Remove position
            sessions[id] <- session
            session

    /// The longest id, in UTF-8 bytes, that holdCreated takes (the ring's own limit).
    let private MaxHeldIdBytes = 255

    /// The facts' key that names a session's user, as JSON writes it.
    let private userKey = Encoding.UTF8.GetBytes $"\"{SessionMeta.User}\""

    /// Whether a value's facts (after the tree's dataLength bytes) may name a user: such a session is held as an object,
    /// never in the ring, as the user index holds sessions as objects (a false positive only costs an object).
    let private mayNameUser (value: ReadOnlySpan<byte>) (dataLength: int) = value.Slice(dataLength).IndexOf(ReadOnlySpan userKey) >= 0

    /// Holds a new session in the ring, its id read from the record's UTF-8 bytes with no string made for it (most
    /// records of a large file are new sessions, each its own id); false, having changed nothing but the session's
    /// earlier life in the map, when that does not do: an id that is not valid UTF-8 (the record's string then decodes
    /// to other bytes) or longer than the ring holds, facts that may name a user, or a ring that refuses it (its key
    /// taken, a session too large).
    let private holdCreated
        (sessions: Dictionary<string, FileSession>)
        (pending: Dictionary<string, ReplayChanges>)
        (cold: FreshSessions)
        (idUtf8: ReadOnlySpan<byte>)
        (value: ReadOnlySpan<byte>)
        (dataLength: int)
        (expires: int64)
        (lastSeen: int64)
        : bool =
        if idUtf8.Length > MaxHeldIdBytes || mayNameUser value dataLength then
            false
        else
            if isNull ReplayBuffers.IdChars then ReplayBuffers.IdChars <- Array.zeroCreate MaxHeldIdBytes
            let mutable read = 0
            let mutable written = 0
            match Unicode.Utf8.ToUtf16(idUtf8, Span ReplayBuffers.IdChars, &read, &written, false, true) with
            | Buffers.OperationStatus.Done ->
                // The session starts over: what the map held under this id (it was created again) ends.
                let id = ReadOnlySpan(ReplayBuffers.IdChars, 0, written)
                if sessions.Count > 0 && sessions.GetAlternateLookup<ReadOnlySpan<char>>().Remove id then
                    pending.GetAlternateLookup<ReadOnlySpan<char>>().Remove id |> ignore
                cold.TryAddUtf8(idUtf8, value, dataLength, expires, lastSeen) >= 0L
            | _ -> false

    /// Applies a record whose session id is needed as a string (every record but most new sessions').
    let private applyWithId
        (logger: ILogger)
        (path: string)
        (version: uint32)
        (sessions: Dictionary<string, FileSession>)
        (pending: Dictionary<string, ReplayChanges>)
        (cold: FreshSessions)
        (offset: int64)
        (buffer: byte[])
        (kind: byte)
        (expires: int64)
        (lastSeen: int64)
        (idAt: int)
        (idLength: int)
        (bodyAt: int)
        (bodyLength: int)
        (createdLength: int)
        =
        let id = Encoding.UTF8.GetString(buffer, idAt, idLength)
        // A session held in the ring under this id ends there (it starts over, or goes on as an object); true when
        // there was one.
        let dropCold () =
            cold.LiveCount > 0
            && match cold.Find id with
               | -1L -> false
               | position ->
                   cold.Remove position
                   true
        // A session that starts over (created, or moved here) leaves no changes of what was there before.
        let replace (value: SessionText) =
            dropCold () |> ignore
            let session = replayedSession id value expires lastSeen
            sessions[id] <- session
            pending.Remove id |> ignore
            session
        // The session as it stands: an object, taken out of the ring if it was there; null when there is none.
        let current () =
            match sessions.TryGetValue id with
            | true, session -> session
            | _ when cold.LiveCount = 0 -> null
            | _ -> takeCold cold sessions id
        let whole =
            if kind = FileLog.KindPatch && version <> FileLog.FormatVersion1 then
                FileLog.trySnapshotParts (ReadOnlySpan(buffer, bodyAt, bodyLength))
            else
                ValueNone
        // The session whose pending changes the record added to, if any: settled once, whatever the record's kind.
        let struct (grown, changes) =
            match kind with
            | FileLog.KindCreate ->
                let created = ReplayBuffers.Created
                match createdLength with
                | -1 ->
                    let session = replace null
                    struct (session, addChange pending id offset buffer[bodyAt .. bodyAt + bodyLength - 1])
                | dataLength ->
                    // Held in the ring, unless it does not take it (too large, or its key taken by another id). A ring
                    // that refuses it may hold the id already (created again): that record ends, and it is tried again.
                    if sessions.Remove id then pending.Remove id |> ignore
                    let add () = cold.TryAdd(id.AsSpan(), created.WrittenSpan, dataLength, expires, lastSeen) >= 0L
                    let held = not (mayNameUser created.WrittenSpan dataLength) && (add () || dropCold () && add ())
                    if not held then replace (SessionText(created.WrittenSpan.ToArray(), dataLength)) |> ignore
                    struct (null, null)
            // A change that sets the whole session (a commit of many updates to a small session; FileLog.recordsWhole)
            // is the session's value from here on: read straight from the record, whatever came before it.
            | FileLog.KindPatch when whole.IsSome ->
                let struct (dataAt, dataLength, metaAt, metaLength) = whole.Value
                let body = ReadOnlySpan(buffer, bodyAt, bodyLength)
                replace (SessionText.OfParts(body.Slice(dataAt, dataLength), body.Slice(metaAt, metaLength))) |> ignore
                struct (null, null)
            | FileLog.KindPatch ->
                let session =
                    match current () with
                    | null ->
                        FileStoreLog.mismatch logger offset path
                        replace null
                    | session ->
                        session.LatestExpires <- expires
                        session.LastSeen <- lastSeen
                        session
                struct (session, addChange pending id offset buffer[bodyAt .. bodyAt + bodyLength - 1])
            | FileLog.KindMove when version <> FileLog.FormatVersion1 ->
                if bodyLength < 4 then raise (corrupt path offset "its old id is missing")
                let fromLength = BinaryPrimitives.ReadInt32LittleEndian(ReadOnlySpan(buffer, bodyAt, 4))
                if fromLength < 0 || fromLength > bodyLength - 4 then raise (corrupt path offset "its old id length is out of range")
                let changeAt = bodyAt + 4 + fromLength
                let change = buffer[changeAt .. bodyAt + bodyLength - 1]
                // The session goes on at its new id, with its changes not yet applied.
                let struct (fromValue, fromChanges) =
                    if fromLength = 0 then
                        struct (null, null)
                    else
                        let fromId = Encoding.UTF8.GetString(buffer, bodyAt + 4, fromLength)
                        if cold.LiveCount > 0 && not (sessions.ContainsKey fromId) then takeCold cold sessions fromId |> ignore
                        match sessions.TryGetValue fromId with
                        | true, from ->
                            let fromChanges =
                                match pending.TryGetValue fromId with
                                | true, fromChanges -> fromChanges
                                | _ -> null
                            sessions.Remove fromId |> ignore
                            pending.Remove fromId |> ignore
                            struct (from.Latest, fromChanges)
                        | _ ->
                            FileStoreLog.mismatch logger offset path
                            struct (null, null)
                let moved = replace fromValue
                if not (isNull fromChanges) then pending[id] <- fromChanges
                struct (moved, addChange pending id offset change)
            | FileLog.KindDelete ->
                dropCold () |> ignore
                sessions.Remove id |> ignore
                pending.Remove id |> ignore
                struct (null, null)
            | FileLog.KindTouch ->
                match sessions.TryGetValue id with
                | true, session ->
                    session.LatestExpires <- expires
                    session.LastSeen <- lastSeen
                | _ ->
                    match (if cold.LiveCount > 0 then cold.Find id else -1L) with
                    | -1L -> ()
                    | position -> cold.Retime(position, expires, lastSeen)
                struct (null, null)
            | other -> raise (corrupt path offset $"its kind {other} is unknown (written by a newer Sesame?)")
        if not (isNull grown) then settle path version pending grown changes

    /// Applies the record at `at` in the buffer to the sessions replay holds.
    let private applyRecord
        (logger: ILogger)
        (path: string)
        (version: uint32)
        (sessions: Dictionary<string, FileSession>)
        (pending: Dictionary<string, ReplayChanges>)
        (cold: FreshSessions)
        (offset: int64)
        (buffer: byte[])
        (at: int)
        (length: int)
        =
        let kind = buffer[at]
        let expires = BinaryPrimitives.ReadInt64LittleEndian(ReadOnlySpan(buffer, at + 1, 8))
        let struct (prefix, lastSeen, idLength) =
            if version = FileLog.FormatVersion1 then
                // Version 1 kept no last-seen time: the record's expiry is the closest bound there is.
                struct (FileLog.PayloadPrefixLengthV1, 0L, BinaryPrimitives.ReadInt32LittleEndian(ReadOnlySpan(buffer, at + 9, 4)))
            elif length < FileLog.PayloadPrefixLength then
                raise (corrupt path offset "it is shorter than a record's prefix")
            else
                struct (FileLog.PayloadPrefixLength,
                        BinaryPrimitives.ReadInt64LittleEndian(ReadOnlySpan(buffer, at + 9, 8)),
                        BinaryPrimitives.ReadInt32LittleEndian(ReadOnlySpan(buffer, at + 17, 4)))
        if idLength < 0 || idLength > length - prefix then raise (corrupt path offset "its id length is out of range")
        let bodyAt = at + prefix + idLength
        let bodyLength = length - prefix - idLength
        // A new session's value, read straight from its record where it can be (-1: its change is applied instead).
        let createdLength =
            if kind <> FileLog.KindCreate then
                -1
            else
                if isNull ReplayBuffers.Created then ReplayBuffers.Created <- ArrayBufferWriter<byte>(256)
                CreatedValue.write (ReadOnlySpan(buffer, bodyAt, bodyLength)) version ReplayBuffers.Created
        if
            not (
                createdLength >= 0
                && holdCreated
                    sessions
                    pending
                    cold
                    (ReadOnlySpan(buffer, at + prefix, idLength))
                    ReplayBuffers.Created.WrittenSpan
                    createdLength
                    expires
                    lastSeen
            )
        then
            applyWithId logger path version sessions pending cold offset buffer kind expires lastSeen (at + prefix) idLength bodyAt bodyLength createdLength

    /// How many records replay reads before it sizes the ring's map for the whole file.
    let private EstimateAfterRecords = 4096

    /// Checks the header, replays every record, and cuts a torn tail. Gives the sessions, the file's length and its format version.
    let run (logger: ILogger) (path: string) (handle: SafeFileHandle) : Replayed =
        let length = IO.RandomAccess.GetLength handle
        // The map holds the sessions that records changed after they were created (most go to the ring, below): room
        // for one per 2 KiB of file to start with; it grows as it needs.
        let sessions = Dictionary<string, FileSession>(int (min (length / 2048L) (1L <<< 24)), StringComparer.Ordinal)
        let pending = Dictionary<string, ReplayChanges>(StringComparer.Ordinal)
        // Room in its map for the first records (the loop below sizes it for the whole file once it has read them);
        // what a file of often changed sessions leaves unused is given back at the end (coldHeld).
        let cold = FreshSessions(ColdChunkBytes, int (min (length / 128L) (int64 EstimateAfterRecords)))
        let expected = FileLog.fileHeader ()
        let header = Array.zeroCreate<byte>(int (min length (int64 FileLog.FileHeaderLength)))
        if header.Length > 0 then IO.RandomAccess.Read(handle, Span header, 0L) |> ignore
        if length < int64 FileLog.FileHeaderLength then
            // A new file, or one whose creation was cut short: nothing was ever committed to it.
            if not (MemoryExtensions.SequenceEqual(ReadOnlySpan(header), ReadOnlySpan(expected, 0, header.Length))) then
                raise (
                    SessionStoreException
                        $"The file '{path}' is not a Sesame session file (its first bytes are not a Sesame header). The file was left as it is."
                )
            IO.RandomAccess.Write(handle, ReadOnlySpan expected, 0L)
            IO.RandomAccess.FlushToDisk handle
            {
                Sessions = sessions
                Changes = pending
                Cold = cold
                Length = int64 FileLog.FileHeaderLength
                Version = FileLog.FormatVersion
                Path = path
                ArraysReady = 0
                ArraysOnTheSpot = 0
            }
        elif not (MemoryExtensions.SequenceEqual(ReadOnlySpan(header, 0, 8), ReadOnlySpan(expected, 0, 8))) then
            raise (
                SessionStoreException $"The file '{path}' is not a Sesame session file (its first bytes are not a Sesame header). The file was left as it is."
            )
        else
            let version = BinaryPrimitives.ReadUInt32LittleEndian(ReadOnlySpan(header, 8, 4))
            if version <> FileLog.FormatVersion && version <> FileLog.FormatVersion1 then
                raise (
                    SessionStoreException
                        $"The session file '{path}' has format version {version}; this Sesame reads versions 1 and {FileLog.FormatVersion}. The file was left as it is."
                )
            let reader = LogReader(handle, length)
            // A file that will fill the ring's arrays one after another: each next one is made ready on another core.
            if length > int64 ArraysAheadFromBytes then cold.PrepareArraysAhead()
            let mutable offset = int64 FileLog.FileHeaderLength
            let mutable reading = true
            let mutable records = 0
            while reading && offset < length do
                let payloadLength = reader.TryRecord offset
                if payloadLength < 0 then
                    reading <- false
                else
                    let at = reader.Fetch(offset, FileLog.RecordHeaderLength + payloadLength)
                    applyRecord logger path version sessions pending cold offset reader.Buffer (at + FileLog.RecordHeaderLength) payloadLength
                    offset <- offset + int64 (FileLog.RecordHeaderLength + payloadLength)
                    records <- records + 1
                    if records = EstimateAfterRecords then
                        // Room in the ring's map for as many sessions as the file has records at the size of these
                        // first ones (at most what a file of that length could hold), rather than growing it by
                        // doubling, which rehashes every session held so far each time.
                        let estimate = (length - int64 FileLog.FileHeaderLength) * int64 records / (offset - int64 FileLog.FileHeaderLength)
                        if estimate > int64 cold.LiveCount then cold.EnsureCapacity(int (min estimate (1L <<< 24)))
            let struct (arraysReady, arraysOnTheSpot) = cold.StopArraysAhead()
            if offset < length then
                // The record at `offset` is torn or corrupt. Every record names the end of what was on
                // disk when it was written; a valid record after this one that names a point past it
                // proves this one had been flushed: that is damage, not an interrupted write.
                let bad = offset
                let mutable candidate = bad + 1L
                let mutable proof = -1L
                while proof < 0L && candidate < length do
                    let payloadLength = reader.TryRecord candidate
                    if payloadLength < 0 then candidate <- candidate + 1L
                    elif reader.DurableEnd candidate > bad then proof <- candidate
                    else candidate <- candidate + int64 (FileLog.RecordHeaderLength + payloadLength)
                if proof >= 0L then
                    raise (
                        SessionStoreException
                            $"The session file '{path}' is corrupt at byte offset {bad}: the record there fails its length or checksum check, yet the valid record at byte offset {proof} shows it had been flushed to disk, so it is damage, not an interrupted write. The file was left as it is; restore it from a backup or move it aside."
                    )
                IO.RandomAccess.SetLength(handle, bad)
                IO.RandomAccess.FlushToDisk handle
                FileStoreLog.cutTornTail logger (length - bad) bad path
            {
                Sessions = sessions
                Changes = pending
                Cold = cold
                Length = offset
                Version = version
                Path = path
                ArraysReady = arraysReady
                ArraysOnTheSpot = arraysOnTheSpot
            }

    /// The ring of sessions the store starts with: the replayed ring's sessions live at <c>t</c>, least recently used
    /// first (the order the bounds evict them in). (None names a user: replay held those as objects.) The ring is walked
    /// only when some of its sessions may have expired by <c>t</c> or it may be out of that order (touch records retime
    /// sessions, a compacted file is in no order), and written anew when it is out of order or more than a quarter of it
    /// is holes.
    let private coldHeld (t: int64) (cold: FreshSessions) (objects: Dictionary<string, FileSession>) : FreshSessions =
        let mutable ordered = cold.InOrder
        // The live positions the walk found, oldest first (null: no walk), for a rewrite to use without another.
        let mutable kept: List<int64> = null
        if not ordered || cold.EarliestExpiry <= t then
            ordered <- true
            kept <- List<int64>(cold.LiveCount)
            let mutable last = Int64.MinValue
            for position in cold.Positions() do
                if cold.ExpiresAt position <= t then
                    cold.Remove position
                else
                    let seen = cold.CreatedAt position
                    if seen < last then ordered <- false
                    last <- max last seen
                    kept.Add position
        if ordered && cold.UnusedBytes * 4L <= cold.CountedBytes then
            cold.TrimExcess()
            cold
        else
            let positions = (if isNull kept then cold.Positions() else kept).ToArray()
            let seen = positions |> Array.map cold.CreatedAt
            Array.Sort(seen, positions)
            let rewritten = FreshSessions(ColdChunkBytes, positions.Length)
            for position in positions do
                let id = cold.IdAt position
                let value = cold.ValueAt position
                // The ring took it before, so it takes it again (same size, a key no other id of it has); were it not
                // to, the session would go on as an object.
                if rewritten.TryAdd(id, value, cold.ExpiresAt position, cold.CreatedAt position) < 0L then
                    objects[id] <- replayedSession id value (cold.ExpiresAt position) (cold.CreatedAt position)
            rewritten

    /// The sessions still live at <c>t</c>, as the store holds them: what they read is what the file holds (their changes
    /// applied now; a change that cannot be applied is a <see cref="T:Sesame.SessionStoreException"/> naming its offset).
    /// They enter the eviction order as returning sessions (a file does not record which sessions came back; those
    /// that lived through a restart are taken to be established), least recently seen first, so that past the
    /// returning segment's share the least recently seen are the first to go.
    let live (t: int64) (maxSessions: int) (maxBytes: int64) (replayed: Replayed) : FileSessions =
        let all = replayed.Sessions
        // Removing while enumerating is allowed for a Dictionary: it does not move the other entries.
        for KeyValue(id, session) in all do
            if session.LatestExpires <= t then
                all.Remove id |> ignore
                replayed.Changes.Remove id |> ignore
        let cold = coldHeld t replayed.Cold all
        // The sessions whose changes are still to apply take the time (parsing, applying, writing): on every core,
        // as nothing else runs yet. The first failure, least recently seen first, is the one raised.
        let changed = Array.zeroCreate<FileSession> replayed.Changes.Count
        let mutable n = 0
        for KeyValue(id, _) in replayed.Changes do
            changed[n] <- all[id]
            n <- n + 1
        Array.sortInPlaceBy (fun (session: FileSession) -> session.LastSeen) changed
        let failures = Array.zeroCreate<exn> changed.Length
        Threading.Tasks.Parallel.For(
            0,
            changed.Length,
            fun i ->
                let session = changed[i]
                try
                    session.Latest <- materialize replayed.Path replayed.Version session.Latest replayed.Changes[session.Id]
                with e ->
                    failures[i] <- e
        )
        |> ignore
        match Array.tryFind (fun (e: exn) -> not (isNull e)) failures with
        | Some e -> Runtime.ExceptionServices.ExceptionDispatchInfo.Throw e
        | None -> ()
        replayed.Changes.Clear()
        let sessions = FileSessions(maxSessions, maxBytes, all, cold)
        let order = Array.zeroCreate<FileSession> all.Count
        let seen = Array.zeroCreate<int64> all.Count
        n <- 0
        for KeyValue(_, session) in all do
            order[n] <- session
            seen[n] <- session.LastSeen
            n <- n + 1
        // The map holds the sessions now: let replay's go.
        all.Clear()
        all.TrimExcess()
        Array.Sort(seen, order)
        for session in order do
            let id = session.Id
            let value = session.Latest
            sessions.AdmitReplayed session
            // Only facts that name a user are parsed.
            if value.Meta.IndexOf(ReadOnlySpan userKey) >= 0 then
                match SessionMeta.userOf (value.ParseMeta()) with
                | Some user -> sessions.Index(id, session, user)
                | None -> ()
        sessions
