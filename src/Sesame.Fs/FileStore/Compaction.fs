namespace Sesame

open System
open System.Collections.Generic
open System.Diagnostics
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging
open Microsoft.Win32.SafeHandles

/// A compaction in progress: the snapshot being written, and the records appended meanwhile.
[<Sealed; AllowNullLiteral>]
type internal CompactionJob(task: Task<struct (SafeFileHandle * int64)>, cancel: CancellationTokenSource, waiters: TaskCompletionSource[], sessionCount: int) =
    member _.Task = task
    member _.Cancel = cancel
    member _.Waiters = waiters
    member _.SessionCount = sessionCount
    member val Stopwatch = Stopwatch.StartNew()
    /// How long the writer spent on this compaction itself (taking the snapshot, switching files), holding commits back.
    member val Held = TimeSpan.Zero with get, set
    /// Payloads appended to the old file after the snapshot was taken, in order.
    member val Tail = ResizeArray<byte[]>()

/// <summary>
/// Rewriting the file with only the live sessions, while commits go on: the writer takes a snapshot (no
/// copying: the trees are immutable), a background task writes it to <c>PATH.compacting</c>, then the writer
/// appends the records committed meanwhile, renames the new file over the old one and goes on with it.
/// </summary>
/// <remarks>Started, finished and stopped by the writer thread only; <c>Due</c> is read by any thread.</remarks>
[<Sealed>]
type internal Compaction(file: ActiveFile, sessions: FileSessions, options: FileStoreOptions, logger: ILogger, time: TimeProvider) =
    let path = file.Path
    let directory = IO.Path.GetDirectoryName path
    let tempPath = path + ".compacting"
    let mutable job: CompactionJob = null
    let mutable floor = 0L
    let mutable directorySyncReported = false

    let writeSnapshot (snapshot: ResizeArray<struct (string * SessionText * int64 * int64)>) (token: CancellationToken) : struct (SafeFileHandle * int64) =
        let target = IO.File.OpenHandle(tempPath, IO.FileMode.Create, IO.FileAccess.ReadWrite, ActiveFile.Share, IO.FileOptions.None)
        try
            IO.RandomAccess.Write(target, ReadOnlySpan(FileLog.fileHeader ()), 0L)
            // The whole snapshot is flushed before it can matter, so its records name the header as flushed.
            let writer = RecordWriter(target, int64 FileLog.FileHeaderLength, int64 FileLog.FileHeaderLength, true)
            for struct (id, value, expires, lastSeen) in snapshot do
                token.ThrowIfCancellationRequested()
                writer.Append(FileLog.snapshotPayload expires lastSeen id value.Data value.Meta)
            writer.Flush()
            IO.RandomAccess.FlushToDisk target
            struct (target, writer.Position)
        with _ ->
            target.Dispose()
            (try
                IO.File.Delete tempPath
             with _ ->
                 ())
            reraise ()

    let syncDirectory () =
        if not (DirectorySync.sync directory) && not directorySyncReported then
            directorySyncReported <- true
            FileStoreLog.directorySyncUnavailable logger path

    /// Deletes the file a compaction that did not finish left beside <paramref name="path"/>.
    static member DeleteLeftover(path: string, logger: ILogger) =
        let tempPath = path + ".compacting"
        if IO.File.Exists tempPath then
            IO.File.Delete tempPath
            FileStoreLog.deletedStaleTemp logger tempPath

    member _.IsRunning = not (isNull job)

    /// A compaction runs and its snapshot is written (or failed): time to finish it.
    member _.SnapshotDone = not (isNull job) && job.Task.IsCompleted

    /// Whether the file is past the minimum size and too much of it is dead.
    member _.Due =
        let length = file.Length
        length >= options.CompactionMinBytes
        && length >= Volatile.Read &floor
        && float length > options.CompactionRatio * float (int64 FileLog.FileHeaderLength + sessions.LiveBytes)

    /// Keeps a record just appended to the old file, for the new one; nothing while none runs.
    member _.Remember(payload: byte[]) = if not (isNull job) then job.Tail.Add payload

    /// Takes the snapshot and starts writing it; <paramref name="wake"/> is called when it is written.
    member _.Start(waiters: TaskCompletionSource[], wake: unit -> unit) =
        let capturing = Stopwatch.StartNew()
        let t = time.GetUtcNow().UtcTicks
        let snapshot = ResizeArray<struct (string * SessionText * int64 * int64)>()
        for KeyValue(id, session) in sessions.Items do
            lock session (fun () ->
                if not session.Removed then
                    match session.Visible with
                    // A session with records still queued is kept even if expired: those records apply to it.
                    | visible when not (isNull visible) && (session.VisibleExpires > t || session.Pending > 0) ->
                        snapshot.Add(struct (id, visible, session.VisibleExpires, session.LastSeen))
                    | _ when session.IsDeadAt t -> sessions.DropDead(id, session)
                    | _ -> ())
        let cancel = new CancellationTokenSource()
        let task = Task.Run(fun () -> writeSnapshot snapshot cancel.Token)
        job <- CompactionJob(task, cancel, waiters, snapshot.Count)
        job.Held <- capturing.Elapsed
        (task :> Task).ContinueWith(fun (_: Task) -> wake ()) |> ignore

    /// Appends the records committed meanwhile to the written snapshot and puts it in the old file's place;
    /// or, when the snapshot failed, deletes it and keeps the old file.
    member _.Finish() =
        let switching = Stopwatch.StartNew()
        let finished = job
        job <- null
        finished.Cancel.Dispose()
        let abandon (error: exn) =
            (try
                IO.File.Delete tempPath
             with _ ->
                 ())
            FileStoreLog.compactionError logger path error
            // Not again until the file has grown by another minimum.
            Volatile.Write(&floor, file.Length + max options.CompactionMinBytes 1L)
            let failure = SessionStoreException($"Compacting the session file '{path}' failed: {error.Message}", error)
            for waiter in finished.Waiters do
                waiter.TrySetException failure |> ignore
        if finished.Task.IsCompletedSuccessfully then
            let struct (target, snapshotLength) = finished.Task.Result
            let mutable newLength = -1L
            try
                // The commits made while the snapshot was written; they follow it, flushed with it.
                let writer = RecordWriter(target, snapshotLength, snapshotLength, false)
                for payload in finished.Tail do
                    writer.Append payload
                writer.Flush()
                IO.RandomAccess.FlushToDisk target
                IO.File.Move(tempPath, path, true)
                newLength <- writer.Position
            with e ->
                target.Dispose()
                abandon e
            if newLength >= 0L then
                let before = file.Length
                file.Replace(target, newLength)
                try
                    syncDirectory ()
                    let held = finished.Held + switching.Elapsed
                    FileStoreLog.compactedFile logger path before newLength finished.SessionCount finished.Stopwatch.ElapsedMilliseconds held.TotalMilliseconds
                    for waiter in finished.Waiters do
                        waiter.TrySetResult() |> ignore
                with e ->
                    // The rename may not survive a power cut; acknowledging more commits could lose them.
                    file.Faulted <- e
                    FileStoreLog.writeError logger path e
                    for waiter in finished.Waiters do
                        waiter.TrySetException(file.FailedError()) |> ignore
        else
            abandon (
                match finished.Task.Exception with
                | null -> OperationCanceledException() :> exn
                | e -> e.GetBaseException()
            )

    /// Stops a running compaction as the store closes: its file is deleted and whoever waits for it fails.
    member _.Stop() =
        if not (isNull job) then
            job.Cancel.Cancel()
            (try
                job.Task.Wait()
             with _ ->
                 ())
            if job.Task.IsCompletedSuccessfully then
                let struct (target, _) = job.Task.Result
                target.Dispose()
                (try
                    IO.File.Delete tempPath
                 with _ ->
                     ())
            for waiter in job.Waiters do
                waiter.TrySetException(file.ClosedError()) |> ignore
            job.Cancel.Dispose()
            job <- null
