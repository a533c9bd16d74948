/// Concurrent loops of one operation, timed by this process's CPU: the client's own cost, which other processes on a
/// busy machine disturb far less than the wall clock (the Redis tools' clients, the file store's requests).
module Sesame.Benchmarks.ConcurrentLoops

open System.Diagnostics
open System.Threading.Tasks

/// Runs `perWorker` operations in each of `workers` concurrent loops, each loop on the thread pool (so that operations
/// that complete at once still overlap); gives operations per second and this process's CPU time per operation in
/// microseconds.
let timed (workers: int) (perWorker: int) (operation: int -> int -> Task) : float * float =
    let me = Process.GetCurrentProcess()
    let cpu = me.TotalProcessorTime
    let clock = Stopwatch.StartNew()
    Task
        .WhenAll(
            [|
                for w in 1..workers ->
                    Task.Run<unit>(fun () -> task {
                        for i in 1..perWorker do
                            do! operation w i
                    })
                    :> Task
            |]
        )
        .GetAwaiter()
        .GetResult()
    let operations = float (workers * perWorker)
    me.Refresh()
    operations / clock.Elapsed.TotalSeconds, (me.TotalProcessorTime - cpu).TotalMicroseconds / operations
