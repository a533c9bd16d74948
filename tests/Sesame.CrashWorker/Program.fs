/// The crash test's worker. `run PATH WRITERS COMPACTION_MIN_BYTES` opens a file store and commits from
/// WRITERS concurrent tasks until killed; `moves PATH COMPACTION_MIN_BYTES` moves one session from id to id until killed;
/// `fill PATH` commits until a write fails (see filler); `try-open PATH` only tries to open the file.
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

let private creating = { IdleTimeout = TimeSpan.FromDays 1.0; MustExist = false; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }
let private token = Threading.CancellationToken.None

let private say (line: string) =
    Console.Out.Write(line + " $\n")
    Console.Out.Flush()

/// Prints the store's compactions and warnings, so the test can tell what the kills interrupted.
type private EventPrinter() =
    interface ILogger with
        member _.BeginScope(_state) = {
            new IDisposable with
                member _.Dispose() = ()
        }
        member _.IsEnabled(level) = level >= LogLevel.Information
        member _.Log(_level, eventId, _state, _error, _formatter) = if eventId.Id = 102 || eventId.Id = 103 then say $"log {eventId.Id}"

let private number (json: Json option) (key: string) =
    match json |> Option.bind (SessionPath.tryGet (SessionPath.parse key)) with
    | Some(Json.Number n) ->
        (match n.TryGetInt64() with
         | true, v -> v
         | _ -> failwith $"{key} is not an integer")
    | _ -> 0L

let private loadTree (store: SessionStore) (id: string) = task {
    let! loaded = store.LoadAsync(id, creating.IdleTimeout, token)
    return loaded |> Option.ofObj |> Option.map _.Data
}

let private change (updates: Update list) = SessionChange(Patch.fold updates)

let private writer (store: SessionStore) (w: int) : Task = task {
    let! mine = loadTree store $"w{w}"
    let! shared = loadTree store "shared"
    let mutable n = number mine "n"
    let seen = number shared $"w{w}"
    if seen < n then
        let repair = change [ Update.set (SessionPath.parse $"w{w}") (Json.int64 n); Update.increment (SessionPath.parse "total") (decimal (n - seen)) ]
        let! _ = store.CommitAsync("shared", repair, creating, token)
        say $"ok s {w} {n}"
    while true do
        n <- n + 1L
        let own =
            change [
                Update.set (SessionPath.parse "n") (Json.int64 n)
                Update.increment (SessionPath.parse "count") 1m
                Update.set (SessionPath.parse "pad") (Json.string (String('x', int (n * 37L % 1500L))))
            ]
        let! _ = store.CommitAsync($"w{w}", own, creating, token)
        say $"ok w {w} {n}"
        let sharedPatch = change [ Update.set (SessionPath.parse $"w{w}") (Json.int64 n); Update.increment (SessionPath.parse "total") 1m ]
        let! _ = store.CommitAsync("shared", sharedPatch, creating, token)
        say $"ok s {w} {n}"
        if n % 10L = 0L then
            let! _ = store.DeleteAsync($"t{w}", token)
            say $"del {w} {n}"
        else
            let temporary = change [ Update.set (SessionPath.parse "n") (Json.int64 n); Update.increment (SessionPath.parse "c") 1m ]
            let! _ = store.CommitAsync($"t{w}", temporary, creating, token)
            say $"ok t {w} {n}"
}

/// Moves one session from id m{k} to m{k+1} again and again, each move counting a hop and binding it to a user:
/// after a kill, the session must be at exactly one id, the last acknowledged or the one after it.
let private mover (store: SessionStore) : Task = task {
    // Resume from the one m{k} the file holds (none: start at m0).
    let! page = store |> SessionStore.listAllAsync (SessionQuery.All 100) token
    let mutable k = page |> List.choose (fun s -> if s.Id.StartsWith "m" then Some(int64 (s.Id.Substring 1)) else None) |> List.fold max -1L
    if k < 0L then
        let! _ = store.CommitAsync("m0", change [ Update.set (SessionPath.parse "hops") (Json.int64 0L) ], creating, token)
        k <- 0L
        say "ok m 0"
    while true do
        let facts = Patch.fold [ Update.set (SessionPath.ofKeys [ SessionMeta.User ]) (Json.string "mover") ]
        let! result =
            store.MoveAsync($"m{k}", $"m{k + 1L}", SessionChange(Patch.fold [ Update.increment (SessionPath.parse "hops") 1m ], facts), creating, token)
        if result <> CommitResult.Committed then failwith $"move {k} answered {result}"
        k <- k + 1L
        say $"ok m {k}"
}

/// Fills the file until a write fails (the test runs this under a file size limit, as a full disk), after a compaction
/// (so the file written to is one a compaction renamed into place): 64 writers commit new sessions of different sizes,
/// so that the write that fails is a batch of several, and each goes on until three of its commits failed. Prints
/// "ok ID" or "fail ID" for each, "error MESSAGE" for the first failure, then "listed ID" for each session the listing
/// shows and "count N" for the store's count.
let private filler (store: FileStore) : Task = task {
    for i in 0..9 do
        let! _ = store.CommitAsync($"pre{i}", change [ Update.set (SessionPath.parse "i") (Json.int64 (int64 i)) ], creating, token)
        say $"ok pre{i}"
    do! store.CompactAsync()
    let reported = ref 0
    let writer (w: int) : Task = task {
        let mutable n = 0
        let mutable failures = 0
        while failures < 3 do
            let id = $"f{w}-{n}"
            let pad = Json.string (String('x', 40 + (w * 37 + n * 11) % 120))
            n <- n + 1
            try
                let! _ = store.CommitAsync(id, change [ Update.set (SessionPath.parse "pad") pad ], creating, token)
                say $"ok {id}"
            with :? SessionStoreException as e ->
                say $"fail {id}"
                if Threading.Interlocked.Exchange(&reported.contents, 1) = 0 then say ("error " + e.Message.ReplaceLineEndings " ")
                failures <- failures + 1
    }
    do! Task.WhenAll [| for w in 0..63 -> writer w |]
    let! listed = store |> SessionStore.listAllAsync (SessionQuery.All 1000) token
    for summary in listed do
        say $"listed {summary.Id}"
    say $"count {store.Count}"
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
    | [| "moves"; path; compactionMinBytes |] ->
        let options = FileStoreOptions(CompactionMinBytes = int64 compactionMinBytes)
        use store = FileStore.Open(path, options, EventPrinter())
        say "ready"
        (mover store).Wait()
        0
    | [| "fill"; path |] ->
        use store = FileStore.Open path
        say "ready"
        (filler store).Wait()
        0
    | _ ->
        eprintfn "usage: Sesame.CrashWorker run PATH WRITERS COMPACTION_MIN_BYTES | moves PATH COMPACTION_MIN_BYTES | fill PATH | try-open PATH"
        2
