namespace Sesame

open System
open System.Diagnostics
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging
open Microsoft.Extensions.Logging.Abstractions

/// <summary>
/// A durable store: every session in one append-only file, so sessions survive restarts and
/// <c>kill -9</c> at any instant. A commit appends one record holding only its patch, and returns once
/// the record is flushed to disk.
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
/// <para><b>Expiry.</b> Sliding, as in the memory store. A commit's record holds its new expiry. A load slides the expiry in
/// memory and writes it only when the file lags by <see cref="P:Sesame.FileStoreOptions.SlideWriteInterval"/>,
/// without waiting for the flush; so after a restart a session that was only read may expire that much
/// earlier, never later. Expired sessions are never served, also after a restart; they are dropped from memory
/// every <see cref="P:Sesame.FileStoreOptions.SweepInterval"/> and left out by the next compaction.</para>
/// <para><b>Compaction.</b> When the file passes <see cref="P:Sesame.FileStoreOptions.CompactionMinBytes"/> and is more
/// than <see cref="P:Sesame.FileStoreOptions.CompactionRatio"/> times the live size, the writer takes a snapshot
/// of the live, unexpired sessions (references to their immutable trees, no copying) and a background task
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
/// <para><b>Format.</b> A 16-byte header (<c>SesameFS</c>, format version 1 as a little-endian uint32, 4 zero bytes),
/// then records. A record: payload length (uint32), CRC-32C of the rest of the record (uint32), the file length
/// known flushed when the record was written (int64), then the payload: kind (byte: 1 patch, 2 patch of a new
/// session, 3 delete, 4 expiry slide), expiry in UTC ticks (int64), id length (int32), the id in UTF-8, and for
/// kinds 1 and 2 the patch as <see cref="M:Sesame.PatchModule.toUtf8(Sesame.Patch)"/> writes it. All little-endian.</para>
/// <para><b>Logging.</b> Event ids 101 opened, 102 torn tail cut, 103 compacted, 104 compaction failed, 105 write failed,
/// 106 replay mismatch, 107 no directory flush on this platform, 108 stale compaction file deleted, 109 closed.</para>
/// </remarks>
[<Sealed>]
type FileStore private (path: string, options: FileStoreOptions, time: TimeProvider, file: ActiveFile, sessions: FileSessions, compaction: Compaction, writer: LogWriter) =

    let mutable disposed = 0

    let now () = time.GetUtcNow().UtcTicks

    let expiresAt (idle: TimeSpan) (t: int64) =
        if idle.Ticks >= Int64.MaxValue - t then Int64.MaxValue else t + idle.Ticks

    let sweep () =
        try
            sessions.Sweep(now ())
            if compaction.Due then writer.Wake()
        with _ ->
            // A sweep is an optimisation; the next one tries again.
            ()

    let sweeper = time.CreateTimer((fun _ -> sweep ()), null, options.SweepInterval, options.SweepInterval)

    let ensureOpen () =
        if Volatile.Read &disposed <> 0 then raise (file.ClosedError())

    let ensureWritable () =
        ensureOpen ()
        if not (isNull file.Faulted) then raise (file.FailedError())

    do writer.Start()

    /// <summary>Opens (or creates) the session file at <paramref name="path"/>, replaying it.</summary>
    /// <param name="path">The file; its directory is created if missing. A file <c>PATH.compacting</c> next to it is the store's too.</param>
    /// <param name="options">The store's options (<c>null</c> for the defaults).</param>
    /// <param name="logger">Where the store logs (<c>null</c> for none).</param>
    /// <param name="time">The clock for expiry (<c>null</c> for the system clock).</param>
    /// <returns>The open store; dispose it to flush and release the file.</returns>
    /// <exception cref="T:Sesame.SessionStoreException">The file is in use by another process or store, cannot be opened, is not a Sesame session file, or is corrupt before its last write.</exception>
    /// <exception cref="System.ArgumentException">The path is empty or the options are out of range.</exception>
    static member Open(path: string, options: FileStoreOptions, logger: ILogger, time: TimeProvider) : FileStore =
        if String.IsNullOrWhiteSpace path then invalidArg (nameof path) "The session file's path is empty."
        let options = if isNull options then FileStoreOptions() else options
        let logger = if isNull logger then NullLogger.Instance :> ILogger else logger
        let time = if isNull time then TimeProvider.System else time
        options.Check()
        let path = IO.Path.GetFullPath path
        let stopwatch = Stopwatch.StartNew()
        let handle = ActiveFile.OpenExclusive path
        try
            let created = IO.RandomAccess.GetLength handle = 0L
            Compaction.DeleteLeftover(path, logger)
            let replayed, length =
                try
                    let replayed = FileReplay.run logger path handle
                    // What replay read may still sit in the page cache after a process crash: flush it, so
                    // that the records appended from now on rightly name all of it as flushed.
                    IO.RandomAccess.FlushToDisk handle
                    if created then DirectorySync.sync (IO.Path.GetDirectoryName path) |> ignore
                    replayed
                with :? IO.IOException as e ->
                    raise (SessionStoreException($"The session file '{path}' cannot be read or flushed: {e.Message}", e))
            let sessions = FileReplay.live (time.GetUtcNow().UtcTicks) replayed
            FileStoreLog.openedFile logger path sessions.Count length stopwatch.ElapsedMilliseconds
            let file = ActiveFile(path, handle, length)
            let compaction = Compaction(file, sessions, options, logger, time)
            new FileStore(path, options, time, file, sessions, compaction, LogWriter(file, compaction, logger))
        with _ ->
            handle.Dispose()
            reraise ()

    /// <summary>Opens (or creates) the session file at <paramref name="path"/> with the system clock.</summary>
    /// <param name="path">The file; its directory is created if missing.</param>
    /// <param name="options">The store's options (<c>null</c> for the defaults).</param>
    /// <param name="logger">Where the store logs (<c>null</c> for none).</param>
    /// <returns>The open store; dispose it to flush and release the file.</returns>
    /// <exception cref="T:Sesame.SessionStoreException">The file is in use, cannot be opened, is not a Sesame session file, or is corrupt before its last write.</exception>
    static member Open(path: string, options: FileStoreOptions, logger: ILogger) : FileStore =
        FileStore.Open(path, options, logger, TimeProvider.System)

    /// <summary>Opens (or creates) the session file at <paramref name="path"/>, without logging.</summary>
    /// <param name="path">The file; its directory is created if missing.</param>
    /// <param name="options">The store's options (<c>null</c> for the defaults).</param>
    /// <returns>The open store; dispose it to flush and release the file.</returns>
    /// <exception cref="T:Sesame.SessionStoreException">The file is in use, cannot be opened, is not a Sesame session file, or is corrupt before its last write.</exception>
    static member Open(path: string, options: FileStoreOptions) : FileStore = FileStore.Open(path, options, null, TimeProvider.System)

    /// <summary>Opens (or creates) the session file at <paramref name="path"/> with default options and no logging.</summary>
    /// <param name="path">The file; its directory is created if missing.</param>
    /// <returns>The open store; dispose it to flush and release the file.</returns>
    /// <exception cref="T:Sesame.SessionStoreException">The file is in use, cannot be opened, is not a Sesame session file, or is corrupt before its last write.</exception>
    static member Open(path: string) : FileStore = FileStore.Open(path, null, null, TimeProvider.System)

    /// The full path of the session file.
    member _.Path = path

    /// The number of sessions held in memory (expired ones not yet swept included).
    member _.Count = sessions.Count

    /// The current length of the session file, in bytes.
    member _.FileLength = file.Length

    /// The size a freshly compacted file would have, in bytes (expired sessions not yet swept included).
    member _.LiveBytes = int64 FileLog.FileHeaderLength + sessions.LiveBytes

    /// <summary>Compacts the file now, whatever its size: the result holds only the live, unexpired sessions.</summary>
    /// <returns>A task that completes when the compacted file has replaced the old one.</returns>
    /// <exception cref="T:Sesame.SessionStoreException">The compaction failed (the old file is kept and still in use).</exception>
    member _.CompactAsync() : Task = writer.CompactAsync()

    /// <summary>Drops expired sessions from memory now (so that the next compaction leaves them out).</summary>
    member _.Sweep() = sweep ()

    interface ISessionStore with
        member _.LoadAsync(id, idleTimeout, _cancellationToken) =
            try
                if isNull id then nullArg (nameof id)
                ensureOpen ()
                match sessions.TryGetValue id with
                | true, session ->
                    lock session (fun () ->
                        let t = now ()
                        match session.Visible with
                        | ValueSome data when session.VisibleExpires > t ->
                            let expires = expiresAt idleTimeout t
                            session.VisibleExpires <- expires
                            if session.Latest.IsSome && session.LatestExpires > t then
                                session.LatestExpires <- expires
                                // A shorter expiry is always written, so that a restart never serves the session longer.
                                if isNull file.Faulted
                                   && (expires < session.FileExpires || expires - session.FileExpires >= options.SlideWriteInterval.Ticks) then
                                    let slide = FileLog.payload FileLog.KindTouch expires session.IdBytes [||]
                                    if writer.Enqueue(LogItem(session, FileLog.KindTouch, slide, ValueNone, expires, null)) then
                                        session.FileExpires <- expires
                            Task.FromResult(Some data)
                        | _ -> Task.FromResult None)
                | _ -> Task.FromResult None
            with e ->
                Task.FromException<Json option> e

        member _.CommitAsync(id, patch, commit, cancellationToken) =
            if cancellationToken.IsCancellationRequested then
                Task.FromCanceled<CommitResult> cancellationToken
            else
                try
                    if isNull id then nullArg (nameof id)
                    if obj.ReferenceEquals(patch, null) then nullArg (nameof patch)
                    ensureWritable ()
                    let patchBytes = Patch.toUtf8 patch
                    // A record the reader would refuse must never be written (about 1 GiB: far past any sane session).
                    if int64 patchBytes.Length + int64 (FileLog.PayloadPrefixLength + 4 * id.Length) > int64 FileLog.MaxPayloadLength then
                        raise (SessionTooLargeException(int64 patchBytes.Length, FileLog.MaxPayloadLength))
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
                            let committed =
                                lock session (fun () ->
                                    if session.Removed then
                                        null
                                    else
                                        let t = now ()
                                        let live = session.Latest.IsSome && session.LatestExpires > t
                                        if not live && commit.MustExist then
                                            Task.FromResult CommitResult.SessionGone
                                        else
                                            let before = if live then session.Latest.Value else Json.emptyObject
                                            let after = Patch.apply patch before
                                            let size = JsonSize.utf8Length after
                                            if size > int64 commit.MaxSizeBytes then
                                                raise (SessionTooLargeException(size, commit.MaxSizeBytes))
                                            let expires = expiresAt commit.IdleTimeout t
                                            let kind = if live then FileLog.KindPatch else FileLog.KindCreate
                                            let completion = TaskCompletionSource<CommitResult>(TaskCreationOptions.RunContinuationsAsynchronously)
                                            let item =
                                                LogItem(session, kind, FileLog.payload kind expires session.IdBytes patchBytes, ValueSome after, expires, completion)
                                            if not (writer.Enqueue item) then raise (file.ClosedError())
                                            session.Latest <- ValueSome after
                                            session.LatestExpires <- expires
                                            session.FileExpires <- expires
                                            session.Pending <- session.Pending + 1
                                            sessions.SetLiveBytes(session, FileLog.snapshotBytes session.IdBytes.Length size)
                                            completion.Task)
                            // The session was dropped while we waited for its lock: look it up again.
                            if isNull committed then attempt () else committed
                    let committed = attempt ()
                    if cancellationToken.CanBeCanceled && not committed.IsCompleted then
                        committed.WaitAsync cancellationToken
                    else
                        committed
                with e ->
                    Task.FromException<CommitResult> e

        member _.DeleteAsync(id, cancellationToken) =
            if cancellationToken.IsCancellationRequested then
                Task.FromCanceled cancellationToken
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
                                    elif session.Latest.IsNone && session.Visible.IsNone && session.Pending = 0 then
                                        Task.CompletedTask
                                    else
                                        let completion = TaskCompletionSource<CommitResult>(TaskCreationOptions.RunContinuationsAsynchronously)
                                        let item =
                                            LogItem(session, FileLog.KindDelete, FileLog.payload FileLog.KindDelete 0L session.IdBytes [||], ValueNone, 0L, completion)
                                        if not (writer.Enqueue item) then raise (file.ClosedError())
                                        session.Latest <- ValueNone
                                        session.FileExpires <- 0L
                                        session.Pending <- session.Pending + 1
                                        sessions.SetLiveBytes(session, 0L)
                                        completion.Task :> Task)
                            if isNull deleted then attempt () else deleted
                        | _ -> Task.CompletedTask
                    let deleted = attempt ()
                    if cancellationToken.CanBeCanceled && not deleted.IsCompleted then
                        deleted.WaitAsync cancellationToken
                    else
                        deleted
                with e ->
                    Task.FromException e

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
