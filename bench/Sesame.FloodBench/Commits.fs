/// The memory store's own paths, timed in process: a commit to a live session (a compare-and-swap loop, plus the
/// eviction order's bookkeeping), a load, and the creation of a session in a full store (which evicts). The same code
/// runs against a build from before the bounds, so the two can be compared in one run.
module Sesame.FloodBench.Commits

open System
open System.Diagnostics
open System.Threading
open Sesame

let private creating = { IdleTimeout = TimeSpan.FromMinutes 20.0; MustExist = false; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }
let private existing = { creating with MustExist = true }
let private token = CancellationToken.None

/// Ids as Sesame makes them: 32 base64url characters.
let private newIds (count: int) =
    Array.init count (fun _ -> Convert.ToBase64String(Security.Cryptography.RandomNumberGenerator.GetBytes 24).Replace('+', '-').Replace('/', '_'))

/// Nanoseconds of CPU per operation (the process's user and system time, summed over its threads: on a machine shared
/// with other work this varies far less than elapsed time does), with <c>threads</c> threads doing <c>perThread</c>
/// operations each, started together.
let private timed (threads: int) (perThread: int) (operation: int -> int -> unit) =
    use start = new Barrier(threads + 1)
    let workers = [|
        for t in 0 .. threads - 1 ->
            Thread(
                (fun () ->
                    start.SignalAndWait()
                    for i in 0 .. perThread - 1 do
                        operation t i),
                IsBackground = true
            )
    |]
    for w in workers do
        w.Start()
    let cpu () = Process.GetCurrentProcess().TotalProcessorTime
    let before = cpu ()
    start.SignalAndWait()
    for w in workers do
        w.Join()
    (cpu () - before).TotalNanoseconds / float (threads * perThread)

/// Prints "COMMITS commit-ns load-ns create-ns count" (CPU per operation) for the memory store with default bounds, two threads.
let run () =
    let threads = 2
    use store = new MemoryStore()
    let increment = SessionChange(Patch.fold [ Update.increment (SessionPath.parse "times") 1m ])
    // 1,000 live sessions that requests keep using, each already loaded again (a returning session).
    let live = newIds 1000
    for id in live do
        store.CommitAsync(id, increment, creating, token).GetAwaiter().GetResult() |> ignore
        store.LoadAsync(id, creating.IdleTimeout, token).GetAwaiter().GetResult() |> ignore
    let pick (t: int) (i: int) = live[(i * 7 + t * 501) % live.Length]
    // Warm up every path once.
    timed threads 20_000 (fun t i -> store.CommitAsync(pick t i, increment, existing, token).GetAwaiter().GetResult() |> ignore) |> ignore
    let commitNs = timed threads 300_000 (fun t i -> store.CommitAsync(pick t i, increment, existing, token).GetAwaiter().GetResult() |> ignore)
    let loadNs = timed threads 300_000 (fun t i -> store.LoadAsync(pick t i, creating.IdleTimeout, token).GetAwaiter().GetResult() |> ignore)
    // Fill the store to its bound with one-request sessions, then time creations: each one past the bound evicts.
    let fill = newIds MemoryStoreOptions.DefaultMaxSessions
    for id in fill do
        store.CommitAsync(id, increment, creating, token).GetAwaiter().GetResult() |> ignore
    let perThread = 100_000
    let fresh = newIds (threads * perThread)
    let createNs =
        timed threads perThread (fun t i -> store.CommitAsync(fresh[t * perThread + i], increment, creating, token).GetAwaiter().GetResult() |> ignore)
    printfn "COMMITS %.1f %.1f %.1f %d" commitNs loadNs createNs store.Count
