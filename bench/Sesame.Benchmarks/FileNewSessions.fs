/// The file store's own CPU for a new session's first commit (the sample's counter: an increment and the creation
/// fact), 32 writers at once, as a flood of new visitors commits. `file-new-sessions DIR [count]` commits count new
/// sessions (after 20,000 to warm up) to a store in DIR and prints the process's CPU per commit. On a tmpfs such as
/// /dev/shm a flush costs next to nothing, so the figure is the store's work (the change, the record, the lock, the
/// writer) without the disk's latency, which makes the load test's file rows too noisy to compare it by.
module Sesame.Benchmarks.FileNewSessions

open System
open System.Diagnostics
open System.Threading
open System.Threading.Tasks
open Sesame

let private options = { IdleTimeout = TimeSpan.FromDays 1.0; MustExist = false; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }

let private firstVisit (n: int) =
    SessionChange(
        Patch.fold [ Update.increment (SessionPath.parse "times") 1m ],
        Patch.fold [ Update.set (SessionPath.ofKeys [ SessionMeta.Created ]) (Json.int64 (int64 n)) ]
    )

/// Commits count new sessions, their ids made of the prefix, from 32 writers at once.
let private commitNew (store: SessionStore) (prefix: string) (count: int) =
    let next = ref 0
    let writer () = task {
        let mutable n = Interlocked.Increment next
        while n <= count do
            let! _ = store.CommitAsync($"{prefix}{n:D30}", firstVisit n, options, CancellationToken.None)
            n <- Interlocked.Increment next
    }
    Task.WhenAll [| for _ in 1..32 -> writer () |] |> _.Wait()

/// `DIR [count]`: the store's CPU per new session's commit.
let run (args: string list) =
    match args with
    | directory :: rest ->
        let count =
            match rest with
            | [ count ] -> int count
            | _ -> 200_000
        let file = IO.Path.Combine(directory, "new-sessions.sessions")
        if IO.File.Exists file then IO.File.Delete file
        let store = FileStore.Open file
        commitNew store "w" 20_000
        let cpu = Process.GetCurrentProcess().TotalProcessorTime
        let stopwatch = Stopwatch.StartNew()
        commitNew store "m" count
        let cpuUsed = Process.GetCurrentProcess().TotalProcessorTime - cpu
        printfn
            "%d new sessions in %.0f ms: %.0f commits/s, CPU %.2f µs a commit"
            count
            stopwatch.Elapsed.TotalMilliseconds
            (float count / stopwatch.Elapsed.TotalSeconds)
            (cpuUsed.TotalMilliseconds * 1000.0 / float count)
        store.Dispose()
        IO.File.Delete file
    | _ -> eprintfn "usage: file-new-sessions DIR [count]"
