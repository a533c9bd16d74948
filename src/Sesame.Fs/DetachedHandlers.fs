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
/// reader has caught up), as telemetry exporters drop.
/// </summary>
[<Sealed>]
type internal DetachedHandlers(capacity: int, run: string -> (unit -> Task) -> unit, logger: ILogger) =
    let queue =
        Channel.CreateBounded<struct (string * (unit -> Task))>(
            BoundedChannelOptions(capacity, FullMode = BoundedChannelFullMode.Wait, SingleReader = true, SingleWriter = false)
        )
    let mutable dropped = 0L
    let mutable started = 0

    let consume () : Task = task {
        let reader = queue.Reader
        let mutable item = Unchecked.defaultof<struct (string * (unit -> Task))>
        while! reader.WaitToReadAsync() do
            while reader.TryRead(&item) do
                let struct (eventName, handler) = item
                try
                    run eventName handler
                with _ ->
                    // `run` logs a handler's failure; a logger that throws too must not end the reader.
                    ()
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
        if not (queue.Writer.TryWrite(struct (eventName, handler))) then
            if Interlocked.Increment &dropped = 1L then
                try
                    Log.eventsDropping logger capacity
                with _ ->
                    ()

    /// How many events at most wait for their handlers.
    static member DefaultCapacity = 10_000
