namespace Sesame

open System
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging

/// One record on its way to the file, and what to do once it is flushed.
[<Sealed; AllowNullLiteral>]
type internal LogItem
    (
        session: FileSession,
        kind: byte,
        payload: byte[],
        data: SessionText,
        expires: int64,
        completion: TaskCompletionSource<CommitResult>,
        movedFrom: FileSession
    ) =
    member _.Session = session
    member _.Kind = kind
    member _.Payload = payload
    /// The session's value once the record is flushed (null for a delete or a slide).
    member _.Data = data
    member _.Expires = expires
    /// Null for a load's slide, which nobody waits for.
    member _.Completion = completion
    /// For a move, the session it left (null otherwise): gone for loads once the record is flushed.
    member _.MovedFrom = movedFrom
    /// What to do once the record is flushed, before any commit of its batch completes (null for nothing): an eviction
    /// reports the session it ended then, so a session whose delete record fails is never reported ended.
    member val Written: Action = null with get, set
    /// The tree of Data, when the commit made one (null otherwise): loads serve it while later records of the session
    /// are on their way (FileSession.VisibleTree).
    member val Tree: StoredSession = null with get, set

    /// A record of one session.
    new(session, kind, payload, data, expires, completion) = LogItem(session, kind, payload, data, expires, completion, null)

/// <summary>
/// The file store's single writer thread, doing group commit: it takes everything queued at once, appends it in
/// one write, flushes it with one <c>fsync</c> (concurrent commits share a flush), and only then makes the new
/// values visible to loads and completes the commits. Between batches it starts and finishes compactions; on
/// close it writes what is queued and closes the file.
/// </summary>
[<Sealed>]
type internal LogWriter(file: ActiveFile, compaction: Compaction, sessions: FileSessions, logger: ILogger) =
    let path = file.Path
    let mutable batchBuffer: byte[] = Array.zeroCreate 65536

    // The queue to the writer, and what else wakes it, under queueLock.
    let queueLock = obj ()
    let mutable queue = ResizeArray<LogItem>()
    let mutable draining = ResizeArray<LogItem>()
    let mutable closing = false
    let mutable signalled = true
    let compactWaiters = ResizeArray<TaskCompletionSource>()
    let exited = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)

    let wake () =
        lock queueLock (fun () ->
            signalled <- true
            Monitor.Pulse queueLock)

    /// Takes back what queueing a record changed, once a session has no record left on its way (see
    /// FileSessions.Restore), so that listings, counts and the bounds do not show a change that failed.
    let unqueue (session: FileSession) =
        lock session (fun () ->
            session.Pending <- session.Pending - 1
            if session.Pending = 0 then sessions.Restore session)

    /// Fails a record that was not written: its commit fails, and its sessions go back to what the file holds.
    let fail (item: LogItem) (error: exn) =
        if item.Kind <> FileLog.KindTouch then
            unqueue item.Session
            if not (isNull item.MovedFrom) then unqueue item.MovedFrom
        if not (isNull item.Completion) then item.Completion.TrySetException error |> ignore

    /// Makes a flushed batch visible to loads, then completes its commits.
    let publish (batch: ResizeArray<LogItem>) (first: int) (count: int) =
        for i in first .. first + count - 1 do
            let item = batch[i]
            if item.Kind <> FileLog.KindTouch then
                let session = item.Session
                lock session (fun () ->
                    session.Pending <- session.Pending - 1
                    if item.Kind = FileLog.KindDelete then
                        session.Visible <- null
                        session.VisibleTree <- null
                        // Deleted or evicted, and written: nothing holds it in memory any more (not until the next sweep).
                        sessions.DropIfVacant session
                    else
                        session.Visible <- item.Data
                        // Latest is a later value while records are pending; it is Visible again once none is.
                        session.VisibleTree <- if session.Pending = 0 then null else item.Tree
                        // The last pending record also carries any slide loads made meanwhile.
                        session.VisibleExpires <- if session.Pending = 0 then session.LatestExpires else item.Expires
                        // A new session that only the request that made it has used is held without objects from now
                        // on, until a later request uses it (FileSessions.TryPark).
                        if session.Pending = 0 then sessions.TryPark session)
                match item.MovedFrom with
                | null -> ()
                | from ->
                    lock from (fun () ->
                        from.Pending <- from.Pending - 1
                        from.Visible <- null
                        from.VisibleTree <- null
                        sessions.DropIfVacant from)
        // Reported before the commits complete: a commit queued after an eviction finds it reported when it returns.
        for i in first .. first + count - 1 do
            match batch[i].Written with
            | null -> ()
            | written ->
                try
                    written.Invoke()
                with e ->
                    FileStoreLog.reportError logger path e
        for i in first .. first + count - 1 do
            let item = batch[i]
            if not (isNull item.Completion) then item.Completion.TrySetResult CommitResult.Committed |> ignore

    /// Appends records [first, first + count) in one write and, unless they are all slides, one flush.
    let writeRecords (batch: ResizeArray<LogItem>) (first: int) (count: int) (bytes: int) =
        if batchBuffer.Length < bytes then batchBuffer <- Array.zeroCreate (max bytes (batchBuffer.Length * 2))
        let mutable mustFlush = false
        for i in first .. first + count - 1 do
            // A commit waits for its record to be on disk; an eviction is reported only once its record is.
            if not (isNull batch[i].Completion) || not (isNull batch[i].Written) then mustFlush <- true
        // Slides written earlier without a flush are flushed first, so that these records name them as flushed:
        // damage to them is then told from an interrupted write, and never cuts an acknowledged commit after them.
        if mustFlush && file.DurableLength < file.Length then file.Flush()
        let mutable at = 0
        for i in first .. first + count - 1 do
            at <- at + FileLog.frame batchBuffer at file.DurableLength batch[i].Payload
        file.Append(ReadOnlySpan(batchBuffer, 0, bytes))
        // Slides alone are not worth a flush: nobody waits for them, and the next flush covers them.
        if mustFlush then file.Flush()
        if compaction.IsRunning then
            for i in first .. first + count - 1 do
                compaction.Remember batch[i].Session
                if not (isNull batch[i].MovedFrom) then compaction.Remember batch[i].MovedFrom
        if batchBuffer.Length > 4 * 1024 * 1024 then batchBuffer <- Array.zeroCreate 65536

    let writeBatch (batch: ResizeArray<LogItem>) =
        let mutable first = 0
        while first < batch.Count do
            // Gather up to MaxBatchBytes (at least one record) into one write.
            let mutable count = 0
            let mutable bytes = 0
            while first + count < batch.Count
                  && (count = 0 || bytes + FileLog.RecordHeaderLength + batch[first + count].Payload.Length <= FileLog.MaxBatchBytes) do
                bytes <- bytes + FileLog.RecordHeaderLength + batch[first + count].Payload.Length
                count <- count + 1
            if isNull file.Faulted then
                let before = file.Length
                try
                    writeRecords batch first count bytes
                with e ->
                    file.Faulted <- e
                    FileStoreLog.writeError logger path e
                    // These commits fail: none of their records may come back when the file is replayed.
                    try
                        file.CutBack before
                    with cut ->
                        FileStoreLog.cutBackError logger path before cut
            if isNull file.Faulted then
                publish batch first count
            else
                let error = file.FailedError()
                for i in first .. first + count - 1 do
                    fail batch[i] error
            first <- first + count

    let shutDown () =
        compaction.Stop()
        for waiter in lock queueLock (fun () -> compactWaiters.ToArray()) do
            waiter.TrySetException(file.ClosedError()) |> ignore
        file.Close logger

    let run () =
        try
            try
                let mutable running = true
                while running do
                    Monitor.Enter queueLock
                    let batch, waiters =
                        try
                            while queue.Count = 0 && not closing && not signalled do
                                Monitor.Wait queueLock |> ignore
                            signalled <- false
                            let taken = queue
                            queue <- draining
                            draining <- taken
                            let waiters =
                                if compactWaiters.Count > 0 && not compaction.IsRunning && not closing then
                                    let w = compactWaiters.ToArray()
                                    compactWaiters.Clear()
                                    w
                                else
                                    [||]
                            if taken.Count = 0 && closing then running <- false
                            taken, waiters
                        finally
                            Monitor.Exit queueLock
                    if batch.Count > 0 then
                        writeBatch batch
                        batch.Clear()
                    if compaction.SnapshotDone then compaction.Finish()
                    if not (isNull file.Faulted) then
                        for waiter in waiters do
                            waiter.TrySetException(file.FailedError()) |> ignore
                    elif running && not compaction.IsRunning && (waiters.Length > 0 || compaction.Due) then
                        compaction.Start(waiters, wake)
                    // Requests that arrived while a compaction ran start the next one.
                    lock queueLock (fun () -> if compactWaiters.Count > 0 && not compaction.IsRunning then signalled <- true)
            with e ->
                // Not expected: stop taking changes rather than lose them silently.
                if isNull file.Faulted then file.Faulted <- e
                FileStoreLog.writeError logger path e
                lock queueLock (fun () ->
                    closing <- true
                    for item in queue do
                        fail item (file.FailedError())
                    queue.Clear())
        finally
            (try
                shutDown ()
             with e ->
                 FileStoreLog.writeError logger path e)
            exited.TrySetResult() |> ignore

    let thread = Thread(ThreadStart run, IsBackground = true, Name = "Sesame file store writer")

    /// Starts the thread (once).
    member _.Start() = thread.Start()

    /// Queues a record for the writer: false when the store is closing.
    member _.Enqueue(item: LogItem) =
        lock queueLock (fun () ->
            if closing then
                false
            else
                queue.Add item
                if queue.Count = 1 then Monitor.Pulse queueLock
                true)

    /// Has the writer look again whether the file is due for compaction.
    member _.Wake() = wake ()

    /// Has the writer compact the file at its next turn, whatever its size.
    member _.CompactAsync() : Task =
        let waiter = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
        lock queueLock (fun () ->
            if closing then
                waiter.TrySetException(file.ClosedError()) |> ignore
            else
                compactWaiters.Add waiter
                signalled <- true
                Monitor.Pulse queueLock)
        waiter.Task

    /// Has the writer write what is queued, flush it and close the file; <c>Exited</c> completes then.
    member _.Close() =
        lock queueLock (fun () ->
            closing <- true
            Monitor.Pulse queueLock)

    /// Completes when the writer has closed the file.
    member _.Exited: Task = exited.Task
