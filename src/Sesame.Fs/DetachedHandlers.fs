namespace Sesame

open System
open System.Threading
open System.Threading.Channels
open System.Threading.Tasks
open Microsoft.Extensions.Logging

/// <summary>
/// Runs the app's handlers for the ends a store made by itself (expiry, eviction) off the store's thread: the store
/// calls from a sweep or its writer, sometimes under its locks, which a slow handler, or one that waits on the store,
/// must not hold up. One reader takes them from a bounded queue in order and starts each (its task is not waited for),
/// so a flood of evictions with a slow handler holds at most <c>capacity</c> waiting, and never the thread pool's
/// queue that requests share: past that, events are dropped (event 16 when it starts) and counted (event 17 once the
/// reader has caught up), as telemetry exporters drop. When the app stops, <c>DrainAsync</c> waits for the handlers of
/// the events queued so far, so that they run before the app's services are disposed.
/// </summary>
[<Sealed>]
type internal DetachedHandlers(capacity: int, run: string -> (unit -> Task) -> Task, logger: ILogger) =
    let queue =
        Channel.CreateBounded<struct (string * (unit -> Task))>(
            BoundedChannelOptions(capacity, FullMode = BoundedChannelFullMode.Wait, SingleReader = true, SingleWriter = false)
        )
    let mutable dropped = 0L
    let mutable started = 0
    /// Events queued, or whose handler has not finished: what a drain waits for.
    let mutable unfinished = 0L
    /// Completed when the unfinished events fall to none; set by a drain that waits.
    let mutable idle: TaskCompletionSource = null

    let finished () =
        if Interlocked.Decrement &unfinished = 0L then
            match Volatile.Read &idle with
            | null -> ()
            | waiting -> waiting.TrySetResult() |> ignore

    /// Starts one handler; counts it finished once its task is.
    let start (eventName: string) (handler: unit -> Task) =
        let running =
            try
                run eventName handler
            with _ ->
                // `run` logs a handler's failure; a logger that throws too must not end the reader.
                null
        if isNull running || running.IsCompleted then
            finished ()
        else
            running.ContinueWith((fun (_: Task) -> finished ()), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default)
            |> ignore

    let consume () : Task = task {
        let reader = queue.Reader
        let mutable item = Unchecked.defaultof<struct (string * (unit -> Task))>
        while! reader.WaitToReadAsync() do
            while reader.TryRead(&item) do
                let struct (eventName, handler) = item
                start eventName handler
            // Caught up: say how many were dropped while it was behind.
            let lost = Interlocked.Exchange(&dropped, 0L)
            if lost > 0L then
                try
                    Log.eventsDropped logger lost
                with _ ->
                    ()
    }

    /// Queues a handler to run on the reader; drops it (counted) when <c>capacity</c> are waiting already.
    member _.Post(eventName: string, handler: unit -> Task) =
        // Started from the pool with no context: the first post may come in a request, whose context must not stay
        // with the reader.
        if Interlocked.CompareExchange(&started, 1, 0) = 0 then
            ThreadPool.UnsafeQueueUserWorkItem(Action<obj>(fun _ -> consume () |> ignore), null, false) |> ignore
        Interlocked.Increment &unfinished |> ignore
        if not (queue.Writer.TryWrite(struct (eventName, handler))) then
            finished ()
            if Interlocked.Increment &dropped = 1L then
                try
                    Log.eventsDropping logger capacity
                with _ ->
                    ()

    /// <summary>Waits until no event waits for its handler and no handler's task is running (events queued meanwhile
    /// included), or until <paramref name="cancellationToken"/> is cancelled (the host's shutdown timeout); gives how
    /// many were still waiting or running then (0 once all were handled).</summary>
    member _.DrainAsync(cancellationToken: CancellationToken) : Task<int64> = task {
        let mutable left = Volatile.Read &unfinished
        while left > 0L && not cancellationToken.IsCancellationRequested do
            let signal = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
            // A full fence: the count is read again only once the signal is where the last handler to finish looks
            // for it (a plain write then a read of another field may be reordered, and the drain then waits for a
            // wake-up already missed, until the host's shutdown timeout).
            Interlocked.Exchange(&idle, signal) |> ignore
            if Volatile.Read &unfinished > 0L then
                let! _ = Task.WhenAny(signal.Task, Task.Delay(Timeout.Infinite, cancellationToken))
                ()
            left <- Volatile.Read &unfinished
        return left
    }

    /// How many events at most wait for their handlers.
    static member DefaultCapacity = 10_000
