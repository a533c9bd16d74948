namespace Sesame

open System
open System.Diagnostics
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging
open Microsoft.Extensions.Logging.Abstractions

/// <summary>
/// A durable store: every session in one append-only file, so sessions survive restarts and
/// <c>kill -9</c> at any instant. A commit appends one record holding only its patch (or the session whole: for a new
/// session, and for many updates to a small one), and returns once the record is flushed to disk.
/// </summary>
/// <remarks>
/// <para><b>Commits.</b> A commit applies its patch to the session in memory first, under a lock of that session,
/// so a patch that conflicts (<see cref="T:Sesame.PathConflictException"/>) or a session that would grow too large
/// (<see cref="T:Sesame.SessionTooLargeException"/>) is refused before anything is written. The record then goes
/// to a single writer thread, which appends everything queued in one write, flushes it with one <c>fsync</c>
/// (group commit: concurrent commits share a flush), and only then makes the new values visible to loads and
/// completes the commits. If a write or flush fails, the pending commits fail with
/// <see cref="T:Sesame.SessionStoreException"/> and the store accepts no more changes (loads still serve what is
/// on disk) until it is reopened; a failed commit may or may not be found after reopening.</para>
/// <para><b>Memory.</b> Each session is held as its tree's and facts' compact UTF-8 JSON (a parsed tree takes several
/// times as much); the trees of the sessions in use (up to 2 MiB of their JSON) are kept beside them, so that a busy
/// session is not parsed again on every load and commit.</para>
/// <para><b>Expiry.</b> Sliding, as in the memory store. A commit's record holds its new expiry. A load slides the expiry in
/// memory and writes it only when the file lags by <see cref="P:Sesame.FileStoreOptions.SlideWriteInterval"/>,
/// without waiting for the flush; so after a restart a session that was only read may expire that much
/// earlier, never later. Expired sessions are never served, also after a restart; they are dropped from memory
/// every <see cref="P:Sesame.FileStoreOptions.SweepInterval"/> and left out by the next compaction.</para>
/// <para><b>Bounds.</b> The store keeps every live session in memory, so it is bounded as the memory store is:
/// <see cref="P:Sesame.FileStoreOptions.MaxSessions"/> and <see cref="P:Sesame.FileStoreOptions.MaxTotalBytes"/> (the
/// sessions' compact UTF-8 JSON, the form the store holds them in, and their bookkeeping) are checked on every commit and move that grows what is
/// held. Past either, sessions used by one request only are evicted first, least recently used first, and a session a
/// later request loaded again only when no such session is left (a segmented LRU, as in the memory store); eviction stops
/// 1/64 under the bound that was passed, and never takes the session whose commit it follows. An evicted session gets a
/// delete record, so it stays gone after a restart; its records are dead bytes that the next compaction leaves out.
/// Opening applies the bounds to what the file holds, keeping the most recently seen sessions.</para>
/// <para><b>Compaction.</b> When the file passes <see cref="P:Sesame.FileStoreOptions.CompactionMinBytes"/> and is more
/// than <see cref="P:Sesame.FileStoreOptions.CompactionRatio"/> times the live size, the writer takes a snapshot
/// of the live, unexpired sessions (references to their immutable values, no copying) and a background task
/// writes it to <c>PATH.compacting</c>, one record per session setting its whole value, flushing each megabyte.
/// Commits go on meanwhile: they are appended to the old file and remembered. When the snapshot is written,
/// the writer appends the remembered records to the new file, flushes it, renames it over the old one and
/// flushes the directory (<c>fsync</c> of the directory on Linux and macOS; Windows has no such call, and the
/// rename relies on NTFS's journal). So commits wait only while the writer takes the snapshot and while it
/// switches files, not while the snapshot is written. Measured on a busy 2-core VM with 8 writers committing
/// throughout: with 20,000 live sessions of 1 KB (21 MB) a compaction took 60 to 200 ms, of which commits
/// waited 10 to 40 ms; with 100,000 (105 MB) it took 0.7 s, of which commits waited 66 ms, and 7,580 commits
/// completed during it. Event 103 reports both times for each compaction. A crash at any point leaves the old
/// file or the new one, each complete.</para>
/// <para><b>Recovery.</b> Opening replays the file. A record that fails its length or checksum check at the end
/// of the file is an interrupted write: it is cut off (the file is truncated) and a warning (event 102) says
/// how many bytes were dropped; nothing before it is lost. Each record names how much of the file had been
/// flushed when it was written, so a damaged record followed by a valid one written after it was flushed is
/// told apart: that is a <see cref="T:Sesame.SessionStoreException"/> naming the byte offset, and the file is
/// left untouched. (Damage inside the very last flushed write cannot be told from an interrupted write.)</para>
/// <para><b>Ownership.</b> One store owns the file: it is opened exclusively (an advisory <c>flock</c> on Unix, a share
/// mode on Windows), so a second process or a second store on the same path gets a
/// <see cref="T:Sesame.SessionStoreException"/> saying the file is in use.</para>
/// <para><b>Users.</b> The index of sessions by user is rebuilt from the file on open and kept in memory; a move (sign-in),
/// a delete and an expiry change it together with the session, and a move is one record, so a crash leaves the session
/// at its old id or its new one, never both.</para>
/// <para><b>Format.</b> A 16-byte header (<c>SesameFS</c>, format version 2 as a little-endian uint32, 4 zero bytes),
/// then records. A record: payload length (uint32), CRC-32C of the rest of the record (uint32), the file length
/// known flushed when the record was written (int64), then the payload: kind (byte: 1 change, 2 change of a new
/// session, 3 delete, 4 expiry slide, 5 move), expiry in UTC ticks (int64), last seen in UTC ticks (int64), id length
/// (int32), the id in UTF-8, then for kinds 1 and 2 the change (<c>[data patch, facts patch]</c>, or with a shape upgrade
/// <c>[data, facts, from, to, upgrade patch]</c>, each patch as <see cref="M:Sesame.PatchModule.toUtf8(Sesame.Patch)"/>
/// writes it), and for kind 5 the old id's length (int32), the old id, then the change. All little-endian. A version 1
/// file (no last-seen field, data patches only) is read and compacted to version 2 when opened.</para>
/// <para><b>Logging.</b> Event ids 101 opened, 102 torn tail cut, 103 compacted, 104 compaction failed, 105 write failed,
/// 106 replay mismatch, 107 no directory flush on this platform, 108 stale compaction file deleted, 109 closed, 110 a
/// failed write could not be cut back.</para>
/// </remarks>
[<Sealed>]
type FileStore
    private (path: string, options: FileStoreOptions, time: TimeProvider, file: ActiveFile, sessions: FileSessions, compaction: Compaction, writer: LogWriter) as this
    =
    inherit SessionStore()

    let mutable disposed = 0
    /// Moves take this first, then the sessions' locks, so that binding a user is decided one move at a time.
    let moveLock = obj ()

    /// The trees of the sessions in use, so that a session is not parsed on every load and commit.
    let parsed = ParsedCache<SessionText, StoredSession>()

    do sessions.OnExpired <- fun id value -> this.ReportEndedValue(id, value, SessionEndReason.Expired)
    // A parked session's tree would only keep objects alive for a request that may never come.
    do sessions.OnParked <- fun id value -> parsed.Drop(id, value)

    let now () = time.GetUtcNow().UtcTicks

    let expiresAt (idle: TimeSpan) (t: int64) = if idle.Ticks >= Int64.MaxValue - t then Int64.MaxValue else t + idle.Ticks

    let sweep () =
        try
            sessions.Sweep(now ())
            if compaction.Due then writer.Wake()
        with _ ->
            // A sweep is an optimisation; the next one tries again.
            ()

    let sweeper = time.CreateTimer((fun _ -> sweep ()), null, options.SweepInterval, options.SweepInterval)

    let ensureOpen () = if Volatile.Read &disposed <> 0 then raise (file.ClosedError())

    let ensureWritable () =
        ensureOpen ()
        if not (isNull file.Faulted) then raise (file.FailedError())

    let live (session: FileSession) (t: int64) = not (isNull session.Latest) && session.LatestExpires > t

    /// A record the reader would refuse must never be written (about 1 GiB: far past any sane session).
    let checkRecordSize (id: string) (bodyLength: int64) =
        if bodyLength + int64 (FileLog.PayloadPrefixLength + 4 * id.Length + 4) > int64 FileLog.MaxPayloadLength then
            raise (SessionTooLargeException(bodyLength, FileLog.MaxPayloadLength))

    /// The tree of a session's value (null: none).
    let treeOf (id: string) (value: SessionText) = if isNull value then null else ParsedValues.get parsed id value

    /// Applies a change to a session's value as it stands (null: none), checking the tree's size limit and the store's
    /// byte bound; treeId is the id the value is cached under.
    let applyChecked (id: string) (change: SessionChange) (treeId: string) (beforeValue: SessionText) (limit: int) =
        let before = treeOf treeId beforeValue
        match change.ApplyTo before with
        | null -> ValueNone
        | after ->
            let value = SessionText.Of(after, before, beforeValue)
            if value.DataLength > limit then raise (SessionTooLargeException(int64 value.DataLength, limit))
            SessionText.CheckFacts(value, beforeValue, limit)
            let held = FileSessionMemory.ofValue id.Length value
            // One session the bound could never hold is refused, rather than evicting every other session first.
            if held > options.MaxTotalBytes then raise (SessionTooLargeException(held, int (min options.MaxTotalBytes (int64 Int32.MaxValue))))
            let live = FileLog.snapshotBytes (Text.Encoding.UTF8.GetByteCount id) (int64 value.Length)
            ValueSome { After = value; Tree = after; LiveBytes = live; HeldBytes = held }

    /// Queues a record of a change to this session (its lock held) and makes it the session's newest value.
    let queue (session: FileSession) (kind: byte) (payload: byte[]) (value: MeasuredValue) (expires: int64) (t: int64) (movedFrom: FileSession) =
        let completion = TaskCompletionSource<CommitResult>(TaskCreationOptions.RunContinuationsAsynchronously)
        let item = LogItem(session, kind, payload, value.After, expires, completion, movedFrom)
        if not (writer.Enqueue item) then raise (file.ClosedError())
        // The first record on its way: loads until it is flushed serve the visible value, whose tree (the cache's, as
        // nothing was pending) the put below takes out of the cache; keep it for them (FileSession.VisibleTree).
        if session.Pending = 0 && not (isNull session.Visible) then
            match parsed.TryGet(session.Id, session.Visible) with
            | ValueSome tree -> session.VisibleTree <- tree
            | ValueNone -> ()
        session.Latest <- value.After
        // The request that committed is likely to come back soon: keep the tree it made, and give it to the record for
        // loads while later commits of the session are on their way (the writer publishes it under this lock, so after).
        item.Tree <- ParsedValues.put parsed session.Id value.After value.Tree
        session.LatestExpires <- expires
        session.FileExpires <- expires
        session.LastSeen <- t
        session.UnusedSinceOpen <- false
        session.Pending <- session.Pending + 1
        sessions.SetLiveBytes(session, value.LiveBytes)
        sessions.SetHeldBytes(session, value.HeldBytes)
        completion.Task

    /// Queues the delete record of a session (its lock held), and takes its value away; false when it had none.
    /// Nobody waits for an eviction's record (null completion): it is written with the next batch. <c>written</c>
    /// (null for nothing) runs once the record is flushed: never, if writing it fails and the session stays.
    let queueDeleteRecord (id: string) (session: FileSession) (completion: TaskCompletionSource<CommitResult>) (written: Action) =
        if isNull session.Latest && isNull session.Visible && session.Pending = 0 then
            false
        else
            let item = LogItem(session, FileLog.KindDelete, FileLog.payload FileLog.KindDelete 0L 0L session.Id [||], null, 0L, completion)
            item.Written <- written
            if writer.Enqueue item then
                session.Latest <- null
                session.FileExpires <- 0L
                session.Pending <- session.Pending + 1
                sessions.Unindex(id, session)
                sessions.Vacate session
                true
            elif isNull completion then
                // The store is closing: an eviction it cannot write is left undone.
                false
            else
                raise (file.ClosedError())

    /// Queues the delete of a session (its lock held); nothing when there was nothing to delete. <c>written</c> as for
    /// queueDeleteRecord.
    let queueDelete (id: string) (session: FileSession) (written: Action) =
        let completion = TaskCompletionSource<CommitResult>(TaskCreationOptions.RunContinuationsAsynchronously)
        if queueDeleteRecord id session completion written then ValueSome completion.Task else ValueNone

    /// What reports a session the store ends by itself, once its delete record is flushed (see LogItem.Written).
    let reportOnceWritten (id: string) (value: SessionText) (reason: SessionEndReason) = Action(fun () -> this.ReportEndedValue(id, value, reason))

    /// Evicts the session of a node the eviction order gave up: a delete record, reported once it is written (an
    /// expired session as expired). Takes that session's lock only. False when writes fail: the store can delete
    /// nothing, so the session goes back in the order (as returning), still counted, and the bounds stop.
    let evict (node: EvictionNode) =
        match sessions.TryGetHeld node.Id with
        | session when not (isNull session) && obj.ReferenceEquals(session.Node, node) ->
            lock session (fun () ->
                if session.Removed || isNull session.Latest then
                    true
                elif not (isNull file.Faulted) then
                    sessions.Policy.Admit(node, true)
                    false
                else
                    let reason = if session.LatestExpires <= now () then SessionEndReason.Expired else SessionEndReason.Evicted
                    queueDeleteRecord node.Id session null (reportOnceWritten node.Id session.Latest reason) |> ignore
                    true)
        | _ -> true

    /// Evicts the replayed ring's least recently used session if it was last seen at or before the time.
    let evictReplayedBefore (before: int64) =
        match sessions.TakeOldestCold before with
        | null -> false
        | session -> evict session.Node

    /// When the replayed ring and the returning segment together hold more than the segment's capacity (80% of the
    /// bound, in sessions or bytes), evicts the oldest of them, as the segment's overflow would go, before any new
    /// session, wherever it is held: else a restart with a full file would leave new sessions no room, each evicted by
    /// the next. False when it evicts none.
    let evictReplayedOverflow (except: EvictionNode) =
        let policy = sessions.Policy
        sessions.ColdCount > 0
        && (int64 policy.ReturningCount + int64 sessions.ColdCount > int64 policy.ReturningCapacity
            || policy.ReturningBytes + sessions.ColdBytes > policy.ReturningBytesCapacity)
        && match policy.PeekReturning except with
           | :? FileSession as oldest ->
               // Older than every ring session, it was last seen before the store opened: it goes first.
               evictReplayedBefore oldest.LastSeen || (policy.Remove oldest.Node && evict oldest.Node)
           | _ -> evictReplayedBefore Int64.MaxValue

    /// Evicts the oldest of the sessions parked in the fresh ring (taken out first), unless the order's least recently
    /// used new session is older: new sessions go oldest first, wherever they are held. Never the session whose commit
    /// is being acknowledged (<c>except</c>), though the writer may have parked it before its commit enforces the
    /// bounds. False when it evicts none.
    let evictFresh (except: EvictionNode) (countOver: bool) =
        match sessions.TakeOldestFresh(except, countOver) with
        | null -> false
        | session -> evict session.Node

    /// Evicts a session held outside the order when one goes before the order's next: the oldest replayed one unused
    /// since (taken out of the ring first) when it was last seen before the order's next victim, itself replayed or
    /// returning (so the ring's sessions count as returning ones, and all the sessions replayed go least recently seen
    /// first, wherever they are held: in the ring, or as objects in either segment of the order, past its capacity the
    /// returning segment handing its least recently used to the new one); else the replayed ones past the returning
    /// share (evictReplayedOverflow), then the oldest parked new one (evictFresh). A parked new session goes before any
    /// returning one. False when it evicts none: the order's next victim goes first, or there is none outside it.
    let evictUnordered (except: EvictionNode) (countOver: bool) (orReturning: bool) =
        let policy = sessions.Policy
        match policy.PeekVictim(except, orReturning) with
        // Read without the session's lock: an order of eviction needs no more than a recent time.
        | :? FileSession as next when
            sessions.ColdCount > 0 && (next.UnusedSinceOpen || policy.IsReturning next) && (policy.IsNew next || sessions.FreshCount = 0)
            ->
            evictReplayedBefore next.LastSeen
        | null when orReturning && sessions.FreshCount = 0 -> sessions.ColdCount > 0 && evictReplayedBefore Int64.MaxValue
        | _ -> evictReplayedOverflow except || evictFresh except countOver

    let bounds =
        SessionBounds(
            sessions.Policy,
            int64 options.MaxSessions,
            options.MaxTotalBytes,
            (fun () -> sessions.LiveCount),
            (fun () -> sessions.HeldBytes),
            evict,
            (fun except _ countOver orReturning -> evictUnordered except countOver orReturning)
        )

    let withCancellation (cancellationToken: CancellationToken) (work: Task<'result>) =
        if cancellationToken.CanBeCanceled && not work.IsCompleted then work.WaitAsync cancellationToken else work

    /// A listing's entry for a session of this value, last used and expiring at these UTC ticks.
    let summaryFrom (id: string) (value: SessionText) (lastSeen: int64) (expires: int64) =
        SessionSummary(
            id,
            value.ParseMeta(),
            DateTimeOffset(lastSeen, TimeSpan.Zero),
            (if expires = Int64.MaxValue then DateTimeOffset.MaxValue else DateTimeOffset(expires, TimeSpan.Zero)),
            int64 value.DataLength
        )

    let summaryOf (id: string) (session: FileSession) = summaryFrom id session.Latest session.LastSeen session.LatestExpires

    /// Makes room for one more session of a user (the move lock held); false when the policy refuses.
    let admitUser (user: string) (movingFrom: string) (limit: UserLimit) (t: int64) =
        if limit.MaxSessions <= 0 then
            true
        else
            let others = [
                for id in sessions.IdsOf user do
                    if id <> movingFrom then
                        match sessions.TryGetValue id with
                        | true, session ->
                            let struct (alive, seen) = lock session (fun () -> struct (live session t, session.LastSeen))
                            if alive then struct (id, session, seen)
                        | _ -> ()
            ]
            let excess = others.Length + 1 - limit.MaxSessions
            if excess <= 0 then
                true
            elif limit.Policy = UserLimitPolicy.Refuse then
                false
            else
                let leastRecentFirst (struct (a, _, seenA)) (struct (b, _, seenB)) = LeastRecentFirst.compare a seenA b seenB
                for struct (id, session, _) in others |> List.sortWith leastRecentFirst |> List.truncate excess do
                    lock session (fun () ->
                        if not session.Removed then queueDelete id session (reportOnceWritten id session.Latest SessionEndReason.UserLimit) |> ignore)
                true

    do writer.Start()

    /// <summary>Opens (or creates) the session file at <paramref name="path"/>, replaying it.</summary>
    /// <param name="path">The file; its directory is created if missing. A file <c>PATH.compacting</c> next to it is the store's too.</param>
    /// <param name="options">The store's options (<c>null</c> for the defaults).</param>
    /// <param name="logger">Where the store logs (<c>null</c> for none).</param>
    /// <param name="time">The clock for expiry (<c>null</c> for the system clock).</param>
    /// <returns>The open store; dispose it to flush and release the file.</returns>
    /// <exception cref="T:Sesame.SessionStoreException">The file is in use by another process or store, cannot be opened, is not a regular file (a device, say) or not a Sesame session file, or is corrupt before its last write.</exception>
    /// <exception cref="System.ArgumentException">The path is empty or the options are out of range.</exception>
    static member Open(path: string, options: FileStoreOptions, logger: ILogger, time: TimeProvider) : FileStore =
        if String.IsNullOrWhiteSpace path then invalidArg (nameof path) "The session file's path is empty."
        let options = if isNull options then FileStoreOptions() else options
        let logger = if isNull logger then NullLogger.Instance :> ILogger else logger
        let time = if isNull time then TimeProvider.System else time
        options.Check()
        // A symbolic link is followed to the file it names: a compaction writes its file beside that one and renames it
        // over it, leaving the link in place.
        let given = IO.Path.GetFullPath path
        let path =
            let path = IO.Path.GetFullPath path
            match IO.FileInfo(path).LinkTarget with
            | null -> path
            | linked ->
                try
                    IO.File.ResolveLinkTarget(path, true).FullName
                with
                | :? IO.FileNotFoundException ->
                    // A link to a file not created yet: the store creates it where the link points.
                    IO.Path.GetFullPath(IO.Path.Combine(IO.Path.GetDirectoryName path, linked))
                | :? IO.IOException as e ->
                    // A loop of links, or one too long to follow.
                    raise (SessionStoreException($"The session file '{path}' cannot be opened: {e.Message}", e))
        let stopwatch = Stopwatch.StartNew()
        let handle = ActiveFile.OpenExclusive path
        let store =
            try
                if RegularFile.check handle = ValueSome false then raise (RegularFile.notRegular given path null)
                let created = IO.RandomAccess.GetLength handle = 0L
                Compaction.DeleteLeftover(path, logger)
                let replayed =
                    try
                        let replayed = FileReplay.run logger path handle
                        // What replay read may still sit in the page cache after a process crash: flush it, so
                        // that the records appended from now on rightly name all of it as flushed.
                        IO.RandomAccess.FlushToDisk handle
                        if created then DirectorySync.sync (IO.Path.GetDirectoryName path) |> ignore
                        replayed
                    with :? IO.IOException as e ->
                        raise (SessionStoreException($"The session file '{path}' cannot be read or flushed: {e.Message}", e))
                // Where the platform could not tell: a device keeps nothing of what replay wrote or read.
                if IO.RandomAccess.GetLength handle <> replayed.Length then raise (RegularFile.notRegular given path null)
                let sessions = FileReplay.live (time.GetUtcNow().UtcTicks) options.MaxSessions options.MaxTotalBytes replayed
                FileStoreLog.openedFile logger path sessions.Count replayed.Length stopwatch.ElapsedMilliseconds
                let file = ActiveFile(path, handle, replayed.Length)
                let compaction = Compaction(file, sessions, options, logger, time)
                struct (new FileStore(path, options, time, file, sessions, compaction, LogWriter(file, compaction, sessions, logger)), replayed.Version)
            with
            | :? NotSupportedException as e ->
                handle.Dispose()
                // Reading at an offset: a pipe or a socket, where the platform could not tell before.
                raise (RegularFile.notRegular given path e)
            | _ ->
                handle.Dispose()
                reraise ()
        let struct (store, version) = store
        if version <> FileLog.FormatVersion then
            // An older file: rewrite it in this version before anything is appended to it.
            try
                store.CompactAsync().GetAwaiter().GetResult()
            with e ->
                store.Dispose()
                raise (
                    SessionStoreException(
                        $"The session file '{path}' (format version {version}) could not be rewritten in version {FileLog.FormatVersion}: {e.Message}",
                        e
                    )
                )
        // The file may hold more than the bounds now allow (they were lowered, or the file is from before them).
        store.EnforceBounds()
        store

    /// <summary>Opens (or creates) the session file at <paramref name="path"/> with the system clock.</summary>
    /// <param name="path">The file; its directory is created if missing.</param>
    /// <param name="options">The store's options (<c>null</c> for the defaults).</param>
    /// <param name="logger">Where the store logs (<c>null</c> for none).</param>
    /// <returns>The open store; dispose it to flush and release the file.</returns>
    /// <exception cref="T:Sesame.SessionStoreException">The file is in use, cannot be opened, is not a regular file or not a Sesame session file, or is corrupt before its last write.</exception>
    static member Open(path: string, options: FileStoreOptions, logger: ILogger) : FileStore = FileStore.Open(path, options, logger, TimeProvider.System)

    /// <summary>Opens (or creates) the session file at <paramref name="path"/>, without logging.</summary>
    /// <param name="path">The file; its directory is created if missing.</param>
    /// <param name="options">The store's options (<c>null</c> for the defaults).</param>
    /// <returns>The open store; dispose it to flush and release the file.</returns>
    /// <exception cref="T:Sesame.SessionStoreException">The file is in use, cannot be opened, is not a regular file or not a Sesame session file, or is corrupt before its last write.</exception>
    static member Open(path: string, options: FileStoreOptions) : FileStore = FileStore.Open(path, options, null, TimeProvider.System)

    /// <summary>Opens (or creates) the session file at <paramref name="path"/> with default options and no logging.</summary>
    /// <param name="path">The file; its directory is created if missing.</param>
    /// <returns>The open store; dispose it to flush and release the file.</returns>
    /// <exception cref="T:Sesame.SessionStoreException">The file is in use, cannot be opened, is not a regular file or not a Sesame session file, or is corrupt before its last write.</exception>
    static member Open(path: string) : FileStore = FileStore.Open(path, null, null, TimeProvider.System)

    /// The full path of the session file.
    member _.Path = path

    /// The number of sessions held in memory (expired ones not yet swept included).
    member _.Count = sessions.Count

    /// The current length of the session file, in bytes.
    member _.FileLength = file.Length

    /// The size a freshly compacted file would have, in bytes (expired sessions not yet swept included).
    member _.LiveBytes = int64 FileLog.FileHeaderLength + sessions.LiveBytes

    /// The sessions replayed on open that no request has used since, held without objects of their own.
    member internal _.ReplayedUnusedCount = sessions.ColdCount

    /// The number of live sessions the bound counts (expired ones not yet swept included; deleted ones not).
    member _.LiveCount = int sessions.LiveCount

    /// The file commits are appended to (for tests: one that fails every write stands in for a full disk).
    member internal _.ActiveFile = file

    /// <summary>The memory the live sessions take, as the store counts it: their JSON and their bookkeeping (expired ones not
    /// yet swept included): what <see cref="P:Sesame.FileStoreOptions.MaxTotalBytes"/> bounds.</summary>
    member _.HeldBytes = sessions.HeldBytes

    /// The order the store evicts in (for tests and diagnostics).
    member internal _.Eviction = sessions.Policy

    /// The sessions made since the store opened that only the request that made them has used, held without objects.
    member internal _.ParkedCount = sessions.FreshCount

    /// Whether the store holds a value for the id, wherever it holds it (for tests: it takes nothing out of a ring).
    member internal _.Holds(id: string) =
        match sessions.Peek id with
        | struct (null, value, _, _) -> not (isNull value)
        | struct (session, _, _, _) -> lock session (fun () -> not (isNull session.Latest))

    /// Evicts until the store is within its bounds, if it is not (the store does this itself on every commit that grows it).
    member internal _.EnforceBounds() = bounds.Enforce null

    /// <summary>Compacts the file now, whatever its size: the result holds only the live, unexpired sessions.</summary>
    /// <returns>A task that completes when the compacted file has replaced the old one.</returns>
    /// <exception cref="T:Sesame.SessionStoreException">The compaction failed (the old file is kept and still in use).</exception>
    member _.CompactAsync() : Task = writer.CompactAsync()

    /// <summary>Drops expired sessions from memory now (so that the next compaction leaves them out).</summary>
    member _.Sweep() = sweep ()

    /// <inheritdoc />
    override _.ActiveSessionCount = Nullable(int64 sessions.Count)

    /// <inheritdoc />
    override _.LoadAsync(id, idleTimeout, _cancellationToken) =
        try
            if isNull id then nullArg (nameof id)
            ensureOpen ()
            // A loop, not a recursive closure: a load allocates nothing of its own for a session whose tree is kept.
            let mutable loaded: Task<StoredSession> = null
            while isNull loaded do
                match sessions.TryGetValue id with
                | true, session ->
                    let struct (removed, served, tree) =
                        lock session (fun () ->
                            let t = now ()
                            match session.Visible with
                            // Parked in the fresh ring (or dropped) while we waited for its lock: look it up again.
                            | _ when session.Removed -> struct (true, null, null)
                            // A session whose newest value is gone (a delete, a move away or an eviction on its way to
                            // disk) is not served, even before its record is written.
                            | visible when not (isNull visible) && not (isNull session.Latest) && session.VisibleExpires > t ->
                                let expires = expiresAt idleTimeout t
                                session.VisibleExpires <- expires
                                session.LastSeen <- t
                                session.UnusedSinceOpen <- false
                                if live session t then
                                    // A later request came back to the session: it is a returning one now.
                                    sessions.Policy.Touch(session.Node, true)
                                    session.LatestExpires <- expires
                                    // A shorter expiry is always written, so that a restart never serves the session longer.
                                    if
                                        isNull file.Faulted
                                        && (expires < session.FileExpires || expires - session.FileExpires >= options.SlideWriteInterval.Ticks)
                                    then
                                        let slide = FileLog.payload FileLog.KindTouch expires t session.Id [||]
                                        if writer.Enqueue(LogItem(session, FileLog.KindTouch, slide, null, expires, null)) then session.FileExpires <- expires
                                struct (false, visible, session.VisibleTree)
                            | _ -> struct (false, null, null))
                    if not removed then
                        // A load that took the session out of a ring holds it as an object now, while the ring counts the
                        // space it left until its tail passes: that may pass the byte bound.
                        bounds.Enforce session.Node
                        // Parsed (when not kept from a commit or an earlier load) outside the session's lock: the value is
                        // immutable.
                        loaded <-
                            if isNull served then Task.FromResult<StoredSession> null
                            elif not (isNull tree) then Task.FromResult tree
                            else ParsedValues.loaded parsed id served
                | _ -> loaded <- Task.FromResult<StoredSession> null
            loaded
        with e ->
            Task.FromException<StoredSession> e

    /// <inheritdoc />
    override _.CommitAsync(id, change, commit, cancellationToken) =
        if cancellationToken.IsCancellationRequested then
            Task.FromCanceled<CommitResult> cancellationToken
        else
            try
                SessionStore.CheckStorableId(id, nameof id)
                if isNull change then nullArg (nameof change)
                if change.BindsUser then
                    invalidArg (nameof change) "A commit cannot bind a session to a user or unbind it; a move does (sign-in rotates the session)."
                ensureWritable ()
                // The change's record body, made outside the session's lock, once; not made when the record holds the
                // session whole (FileLog.recordsWhole).
                let mutable body: byte[] = null
                let changeBody () =
                    if isNull body then
                        let made = FileLog.changeBody change
                        checkRecordSize id made.Length
                        body <- made
                    body
                let rec attempt () =
                    let session =
                        if commit.MustExist then
                            match sessions.TryGetValue id with
                            | true, session -> session
                            | _ -> null
                        else
                            sessions.GetOrAdd id
                    if isNull session then
                        Task.FromResult CommitResult.SessionGone
                    else
                        // Read without the lock: it only chooses the record's form, and either form replays to the
                        // value the commit makes. A new session's record holds it whole: the empty object's value is
                        // about the size of the change that made it, the commit has its JSON already, and replay reads it
                        // straight from the record (most records of a large file are new sessions').
                        let current = session.Latest
                        let whole = isNull current || FileLog.recordsWhole change (int64 current.Length)
                        if not whole then changeBody () |> ignore
                        let struct (committed, grew) =
                            lock session (fun () ->
                                if session.Removed then
                                    struct (null, false)
                                else
                                    let t = now ()
                                    let isLive = live session t
                                    if not isLive && commit.MustExist then
                                        struct (Task.FromResult CommitResult.SessionGone, false)
                                    else
                                        let applied =
                                            try
                                                applyChecked id change id (if isLive then session.Latest else null) commit.MaxSizeBytes
                                            with _ ->
                                                // A refused first commit leaves no empty session in the map: a client
                                                // sending new ids could otherwise fill it until the next sweep.
                                                sessions.DropIfVacant session
                                                reraise ()
                                        match applied with
                                        | ValueNone ->
                                            sessions.DropIfVacant session
                                            struct (Task.FromResult CommitResult.ShapeChanged, false)
                                        | ValueSome value ->
                                            let kind = if isLive then FileLog.KindPatch else FileLog.KindCreate
                                            let grew = not isLive || value.HeldBytes > session.HeldBytes
                                            let expires = expiresAt commit.IdleTimeout t
                                            let payload =
                                                if whole then
                                                    checkRecordSize id (int64 value.After.Length + int64 FileLog.snapshotOverhead)
                                                    FileLog.snapshotPayload kind expires t session.Id value.After.Data value.After.Meta
                                                else
                                                    FileLog.payload kind expires t session.Id body
                                            let written = queue session kind payload value expires t null
                                            if isLive then
                                                sessions.Policy.Touch(session.Node, false)
                                            else
                                                // Created (again, if it had expired): a new session, whatever it was before,
                                                // and nobody's (a commit binds no user), swept or not.
                                                sessions.Unindex(id, session)
                                                sessions.Policy.Remove session.Node |> ignore
                                                sessions.Policy.Admit(session.Node, false)
                                            struct (written, grew))
                        if isNull committed then
                            // The session was dropped while we waited for its lock: look it up again.
                            attempt ()
                        else
                            // Taking the session out of the ring of replayed ones grows what is held too.
                            if grew || bounds.IsOver then bounds.Enforce session.Node
                            committed
                attempt () |> withCancellation cancellationToken
            with e ->
                Task.FromException<CommitResult> e

    /// <inheritdoc />
    override this.MoveAsync(fromId, toId, change, commit, cancellationToken) =
        if cancellationToken.IsCancellationRequested then
            Task.FromCanceled<CommitResult> cancellationToken
        else
            try
                SessionStore.CheckStorableId(toId, nameof toId)
                if isNull change then nullArg (nameof change)
                ensureWritable ()
                let body = FileStore.MoveBody(fromId, change)
                checkRecordSize toId body.LongLength
                let struct (moved, admitted) = lock moveLock (fun () -> this.MoveLocked(fromId, toId, change, commit, body))
                if not (isNull admitted) then bounds.Enforce admitted
                moved |> withCancellation cancellationToken
            with e ->
                Task.FromException<CommitResult> e

    /// A move record's body: the old id's UTF-8 length and bytes (none for a new session), then the change.
    static member private MoveBody(fromId: string, change: SessionChange) : byte[] =
        let fromBytes = if isNull fromId then [||] else Text.Encoding.UTF8.GetBytes fromId
        let changeBody = FileLog.changeBody change
        let body = Array.zeroCreate<byte>(4 + fromBytes.Length + changeBody.Length)
        Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(Span(body, 0, 4), fromBytes.Length)
        Buffer.BlockCopy(fromBytes, 0, body, 4, fromBytes.Length)
        Buffer.BlockCopy(changeBody, 0, body, 4 + fromBytes.Length, changeBody.Length)
        body

    /// A move under the move lock: finds the session under its old id (none for a new session) and moves it under its
    /// lock. Gives the commit's task and, when a session was queued under the new id, its node for the bounds.
    member private this.MoveLocked(fromId: string, toId: string, change: SessionChange, commit: CommitOptions, body: byte[]) =
        let t = now ()
        if isNull fromId then
            this.MoveFrom(null, fromId, toId, change, commit, body, t)
        else
            match sessions.TryGetValue fromId with
            | false, _ -> struct (Task.FromResult CommitResult.SessionGone, null)
            | true, from ->
                let result =
                    lock from (fun () ->
                        if from.Removed then ValueNone
                        elif not (live from t) then ValueSome(struct (Task.FromResult CommitResult.SessionGone, null))
                        else ValueSome(this.MoveFrom(from, fromId, toId, change, commit, body, t)))
                match result with
                | ValueSome moved -> moved
                // Looked up again: the session was parked in the fresh ring while we waited for its lock.
                | ValueNone -> this.MoveLocked(fromId, toId, change, commit, body)

    /// Applies a move's change to the session `from` (null: a new session; held under its lock) and queues it under the
    /// new id, unless the change or the user's limit refuses it.
    member private this.MoveFrom(from: FileSession, fromId: string, toId: string, change: SessionChange, commit: CommitOptions, body: byte[], t: int64) =
        match applyChecked toId change fromId (if isNull from then null else from.Latest) commit.MaxSizeBytes with
        | ValueNone -> struct (Task.FromResult CommitResult.ShapeChanged, null)
        | ValueSome value ->
            let user =
                match SessionMeta.userOf value.Tree.Meta with
                | Some u -> u
                | None -> null
            if not (isNull user) && not (admitUser user fromId commit.UserLimit t) then
                struct (Task.FromResult CommitResult.UserLimitReached, null)
            else
                this.MoveInto(from, fromId, toId, value, user, commit, body, t)

    /// Queues a move's record under the new id, whose session must be fresh, and takes the session out of the old id.
    member private this.MoveInto
        (from: FileSession, fromId: string, toId: string, value: MeasuredValue, user: string, commit: CommitOptions, body: byte[], t: int64)
        =
        let target = sessions.GetOrAdd toId
        let moved =
            lock target (fun () ->
                if target.Removed then
                    null
                else
                    if not (isNull target.Latest) || target.Pending > 0 then invalidOp "The move's new id is already a session; a new id must be fresh."
                    let expires = expiresAt commit.IdleTimeout t
                    let moved = queue target FileLog.KindMove (FileLog.payload FileLog.KindMove expires t toId body) value expires t from
                    // The session keeps its segment under its new id, but one bound to a user is returning from its
                    // sign-in on (a login that is the visitor's first request is a user, not a crawler), so that a flood
                    // of new sessions cannot sign anyone out.
                    let cameBack = not (isNull from) && sessions.Policy.IsReturning from.Node || not (isNull user)
                    if not (isNull from) then
                        from.Latest <- null
                        from.FileExpires <- 0L
                        from.Pending <- from.Pending + 1
                        sessions.Unindex(fromId, from)
                        sessions.Vacate from
                    sessions.Index(toId, target, user)
                    sessions.Policy.Admit(target.Node, cameBack)
                    moved)
        // The new id's empty object was swept (it is dead) while we waited for its lock: looked up again.
        if isNull moved then this.MoveInto(from, fromId, toId, value, user, commit, body, t) else struct (moved, target.Node)

    /// <inheritdoc />
    override _.DeleteAsync(id, cancellationToken) =
        if cancellationToken.IsCancellationRequested then
            Task.FromCanceled<bool> cancellationToken
        else
            try
                if isNull id then nullArg (nameof id)
                ensureWritable ()
                let rec attempt () =
                    match sessions.TryGetValue id with
                    | true, session ->
                        let deleted =
                            lock session (fun () ->
                                if session.Removed then
                                    null
                                else
                                    let wasLive = live session (now ())
                                    match queueDelete id session null with
                                    | ValueSome written -> task {
                                        let! _ = written
                                        return wasLive
                                      }
                                    | ValueNone -> Task.FromResult false)
                        if isNull deleted then attempt () else deleted
                    | _ -> Task.FromResult false
                attempt () |> withCancellation cancellationToken
            with e ->
                Task.FromException<bool> e

    /// <inheritdoc />
    override _.ListAsync(query, _cancellationToken) =
        try
            if query.Limit <= 0 then invalidArg (nameof query) "A listing's Limit must be positive."
            ensureOpen ()
            let t = now ()
            let chosen = IdPage<SessionSummary>.ForListing(query.After, query.Limit)
            // The rings' sessions (replayed and unused since, or new and parked) are read where they are, not taken out;
            // none names a user. The rings' first, then the map's: a session taken out of a ring meanwhile is met in one
            // or the other, and the page takes an id once. The rings again after the map's, for a session parked
            // meanwhile.
            let offerRings () =
                if isNull query.UserId && sessions.AnyInRings then
                    sessions.OfferRings(chosen, t, fun id value expires lastUsed -> summaryFrom id value lastUsed expires)
            offerRings ()
            // A listing reads sessions where they are: it takes none out of a ring (a user's session is never in one).
            let offer (id: string) =
                if chosen.Wants id then
                    match sessions.TryGetHeld id with
                    | null -> ()
                    | session ->
                        match lock session (fun () -> if live session t then ValueSome(summaryOf id session) else ValueNone) with
                        | ValueSome summary -> chosen.Take(id, summary)
                        | ValueNone -> ()
            if isNull query.UserId then
                for KeyValue(id, _) in sessions.Items do
                    offer id
                offerRings ()
            else
                // From the cursor, in order, a slice at a time (the user's ids are copied out of their lock, which is
                // taken under sessions' locks), until the page is full: a page reads what it lists and the user's expired
                // sessions not swept yet on the way, not every session of the user. A slice starts at the page's size
                // (at least 16, at most 1,024) and doubles, up to 1,024, while such expired sessions leave it short.
                let mutable after = query.After
                let mutable size = max 16 (min query.Limit 1023 + 1)
                let mutable more = true
                while more && not chosen.IsFull do
                    let slice = sessions.IdsOf(query.UserId, after, size)
                    for id in slice do
                        offer id
                    more <- slice.Length = size
                    if more then
                        after <- slice[slice.Length - 1]
                        size <- min 1024 (size * 2)
            // Ordered by id, so a page continues where the last one stopped however the sessions change in between.
            let page = chosen.Sorted()
            let more = page.Length > query.Limit
            let shown = if more then Array.truncate query.Limit page else page
            let next = if more then (let struct (id, _) = shown[shown.Length - 1] in id) else null
            Task.FromResult(SessionPage(shown |> Array.map (fun (struct (_, summary)) -> summary), next))
        with e ->
            Task.FromException<SessionPage> e

    member private _.BeginClose() =
        if Interlocked.Exchange(&disposed, 1) = 0 then
            sweeper.Dispose()
            writer.Close()

    /// <summary>Writes what is queued, flushes it and releases the file.</summary>
    member this.Dispose() =
        this.BeginClose()
        writer.Exited.Wait()

    /// <summary>Writes what is queued, flushes it and releases the file, without blocking.</summary>
    member this.DisposeAsync() : ValueTask =
        this.BeginClose()
        ValueTask writer.Exited

    interface IDisposable with
        member this.Dispose() = this.Dispose()

    interface IAsyncDisposable with
        member this.DisposeAsync() = this.DisposeAsync()
