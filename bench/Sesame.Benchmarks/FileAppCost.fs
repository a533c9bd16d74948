/// What a counter request's store work costs the app on the file store, without Kestrel and without the disk's latency:
/// `file-app DIR [rounds]` runs, from 32 concurrent loops, a load and a commit of the counter a request, 25,000 a loop,
/// on a file store in DIR (a tmpfs such as /dev/shm, where a flush costs next to nothing, so the figure is the store's
/// own work) and on a memory store in the same process: all 32 loops on one session (the load test's shared cookie:
/// its loads race its commits, which wait for their flush) and on a session each. Prints this process's CPU a request
/// and requests/s for each way in each round; the memory store's rows are the baseline in the same run.
module Sesame.Benchmarks.FileAppCost

open System
open System.Threading
open System.Threading.Tasks
open Sesame

let private commit = { IdleTimeout = TimeSpan.FromMinutes 20.0; MustExist = false; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }
let private increment = SessionChange(Patch.fold [ Update.increment (SessionPath.parse "times") 1m ])

/// 32 loops, each on ids[loop % ids.Length], of `perLoop` requests: requests/s and this process's CPU µs a request.
let private timed (store: SessionStore) (ids: string[]) (perLoop: int) =
    ConcurrentLoops.timed 32 perLoop (fun loop _ ->
        task {
            let id = ids[loop % ids.Length]
            let! _ = store.LoadAsync(id, commit.IdleTimeout, CancellationToken.None)
            let! _ = store.CommitAsync(id, increment, commit, CancellationToken.None)
            return ()
        }
        :> Task)

/// `DIR [rounds]`.
let run (args: string list) =
    match args with
    | directory :: rest ->
        let rounds =
            match rest with
            | [ rounds ] -> int rounds
            | _ -> 3
        let file = IO.Path.Combine(directory, "file-app.sessions")
        if IO.File.Exists file then IO.File.Delete file
        use fileStore = FileStore.Open file
        use memoryStore = new MemoryStore()
        let shared = [| "file-app-shared-session-00000000" |]
        let own = [| for n in 0..31 -> $"file-app-session-{n:D15}" |]
        let stores = [ "memory", memoryStore :> SessionStore; "file", fileStore :> SessionStore ]
        for _, store in stores do
            for id in Array.append shared own do
                store.CommitAsync(id, increment, commit, CancellationToken.None).Wait()
        for round in 1..rounds do
            for sessions, ids in [ "one session", shared; "a session each", own ] do
                for name, store in stores do
                    let perSecond, cpu = timed store ids 25_000
                    printfn "round %d, %s store, %s: %.0f requests/s, CPU %.2f µs a request" round name sessions perSecond cpu
        fileStore.Dispose()
        IO.File.Delete file
    | _ -> eprintfn "usage: file-app DIR [rounds]"
