/// The crash test's worker. `run PATH WRITERS COMPACTION_MIN_BYTES` opens a file store and commits from
/// WRITERS concurrent tasks until killed; `try-open PATH` only tries to open the file.
///
/// Each writer w repeats, for n = 1, 2, 3, ...:
///   1. session "w{w}": set n = n, increment count by 1, set pad to a string of (n * 37 % 1500) x's;
///   2. session "shared": set "w{w}" = n, increment total by 1;
///   3. session "t{w}": delete it when n is a multiple of 10, else set n = n and increment c by 1.
/// It prints "ok w W N $", "ok s W N $", "ok t W N $" or "del W N $" after each call returned, so every
/// printed line is a commit the store acknowledged. The trailing "$" tells a whole line from one cut by the kill.
/// On start it resumes from what the file holds, first bringing "shared" up to date with "w{w}".
module Sesame.CrashWorker.Program

open System
open System.Threading.Tasks
open Microsoft.Extensions.Logging
open Sesame

let private creating = { IdleTimeout = TimeSpan.FromDays 1.0; MustExist = false; MaxSizeBytes = 1 <<< 20 }
let private token = Threading.CancellationToken.None

let private say (line: string) =
    Console.Out.Write(line + " $\n")
    Console.Out.Flush()

/// Prints the store's compactions and warnings, so the test can tell what the kills interrupted.
type private EventPrinter() =
    interface ILogger with
        member _.BeginScope(_state) = { new IDisposable with member _.Dispose() = () }
        member _.IsEnabled(level) = level >= LogLevel.Information
        member _.Log(_level, eventId, _state, _error, _formatter) =
            if eventId.Id = 102 || eventId.Id = 103 then say $"log {eventId.Id}"

let private number (json: Json option) (key: string) =
    match json |> Option.bind (Path.tryGet (Path.parse key)) with
    | Some(Json.Number n) -> (match n.TryGetInt64() with ValueSome v -> v | ValueNone -> failwith $"{key} is not an integer")
    | _ -> 0L

let private writer (store: ISessionStore) (w: int) : Task =
    task {
        let! mine = store.LoadAsync($"w{w}", creating.IdleTimeout, token)
        let! shared = store.LoadAsync("shared", creating.IdleTimeout, token)
        let mutable n = number mine "n"
        let seen = number shared $"w{w}"
        if seen < n then
            let repair = Patch.fold [ Update.set (Path.parse $"w{w}") (Json.int64 n); Update.increment (Path.parse "total") (decimal (n - seen)) ]
            let! _ = store.CommitAsync("shared", repair, creating, token)
            say $"ok s {w} {n}"
        while true do
            n <- n + 1L
            let own =
                Patch.fold
                    [ Update.set (Path.parse "n") (Json.int64 n)
                      Update.increment (Path.parse "count") 1m
                      Update.set (Path.parse "pad") (Json.string (String('x', int (n * 37L % 1500L)))) ]
            let! _ = store.CommitAsync($"w{w}", own, creating, token)
            say $"ok w {w} {n}"
            let sharedPatch = Patch.fold [ Update.set (Path.parse $"w{w}") (Json.int64 n); Update.increment (Path.parse "total") 1m ]
            let! _ = store.CommitAsync("shared", sharedPatch, creating, token)
            say $"ok s {w} {n}"
            if n % 10L = 0L then
                do! store.DeleteAsync($"t{w}", token)
                say $"del {w} {n}"
            else
                let temporary = Patch.fold [ Update.set (Path.parse "n") (Json.int64 n); Update.increment (Path.parse "c") 1m ]
                let! _ = store.CommitAsync($"t{w}", temporary, creating, token)
                say $"ok t {w} {n}"
    }

[<EntryPoint>]
let main argv =
    match argv with
    | [| "try-open"; path |] ->
        try
            use _store = FileStore.Open path
            Console.Out.WriteLine "opened"
            0
        with :? SessionStoreException as e ->
            Console.Out.WriteLine $"error: {e.Message}"
            3
    | [| "run"; path; writers; compactionMinBytes |] ->
        let options = FileStoreOptions(CompactionMinBytes = int64 compactionMinBytes)
        use store = FileStore.Open(path, options, EventPrinter())
        say "ready"
        let tasks = [| for w in 0 .. int writers - 1 -> writer store w |]
        Task.WaitAll tasks
        0
    | _ ->
        eprintfn "usage: Sesame.CrashWorker run PATH WRITERS COMPACTION_MIN_BYTES | try-open PATH"
        2
