/// Outages and restarts of the database, each on a server of the test's own.
module Sesame.Postgres.Tests.PostgresFaultTests

open System
open System.Collections.Concurrent
open System.Threading
open System.Threading.Tasks
open Expecto
open Sesame
open Sesame.Postgres
open Sesame.Postgres.Tests.PostgresServer

let private options = { IdleTimeout = TimeSpan.FromMinutes 10.0; MustExist = false; MaxSizeBytes = 1024 * 1024; UserLimit = UserLimit.None }

let private token () = (new CancellationTokenSource(TimeSpan.FromMinutes 2.0)).Token

let private storeOn (server: PostgresServer) =
    new PostgresStore(
        server.ConnectionString(),
        PostgresStoreOptions(OperationTimeout = TimeSpan.FromSeconds 5.0, SweepInterval = Timeout.InfiniteTimeSpan),
        null
    )

/// Fails the test if the task has not finished within the guard: a hang is a failure, not a wait.
let private finishes (guard: TimeSpan) (work: Task) = task {
    let! first = Task.WhenAny(work, Task.Delay guard)
    Expect.isTrue (obj.ReferenceEquals(first, work)) $"the operation was still running after {guard}: it hangs"
}

/// What a task did: its result, or its exception.
let private settle (work: Task<'result>) = task {
    try
        let! result = work
        return Ok result
    with e ->
        return Error e
}

[<Tests>]
let faults =
    testSequenced
    <| testList "postgres faults" [
        testCaseTask "an unreachable database is a SessionStoreException, and the same store works again when it is back"
        <| fun () -> task {
            use server = new PostgresServer()
            use store = storeOn server
            let id = Guid.NewGuid().ToString("N")
            let! first = store.CommitAsync(id, SessionChange(Patch.fold [ Update.Set(SessionPath.parse "kept", Json.Bool true) ]), options, token ())
            Expect.equal first CommitResult.Committed "before the outage"
            server.Stop()
            let commit = store.CommitAsync(id, SessionChange(Patch.fold [ Update.Set(SessionPath.parse "lost", Json.Bool true) ]), options, token ())
            do! finishes (TimeSpan.FromSeconds 30.0) commit
            match! settle commit with
            | Error(:? SessionStoreException as e) -> Expect.stringContains e.Message "PostgreSQL" "says where it failed"
            | other -> failtestf "a commit during the outage gave %A" other
            let loading = store.LoadAsync(id, options.IdleTimeout, token ())
            do! finishes (TimeSpan.FromSeconds 30.0) loading
            match! settle loading with
            | Error(:? SessionStoreException) -> ()
            | other -> failtestf "a load during the outage gave %A" other
            server.Start()
            let! loaded = store.LoadAsync(id, options.IdleTimeout, token ())
            Expect.equal (Json.serialize loaded.Data) """{"kept":true}""" "what was acknowledged is there, nothing else"
            let! after = store.CommitAsync(id, SessionChange(Patch.fold [ Update.Set(SessionPath.parse "after", Json.Bool true) ]), options, token ())
            Expect.equal after CommitResult.Committed "after the outage, without a new store"
        }

        for crash in [ true; false ] do
            let how = if crash then "a crash (immediate stop)" else "a clean restart (fast stop)"
            testCaseTask $"{how} under load loses nothing acknowledged, and the store recovers by itself"
            <| fun () -> task {
                use server = new PostgresServer()
                use store = storeOn server
                let id = Guid.NewGuid().ToString("N")
                let! _ = store.CommitAsync(id, SessionChange(Patch.fold [ Update.Set(SessionPath.parse "start", Json.Bool true) ]), options, token ())
                let acknowledged = ConcurrentBag<int>()
                let uncertain = ConcurrentBag<int>()
                let afterRestart = ref 0
                let restarted = ref 0
                let next = ref 0
                let stop = new CancellationTokenSource()
                let writer () = task {
                    while not stop.IsCancellationRequested do
                        let n = Interlocked.Increment next
                        // Each commit adds 1 to the counter and appends its own number: both must be kept exactly.
                        let change =
                            SessionChange(
                                Patch.fold [
                                    Update.Increment(SessionPath.parse "counter", JsonNumber.OfInt64 1L)
                                    Update.Append(SessionPath.parse "log", Json.int64 (int64 n))
                                ]
                            )
                        match! settle (store.CommitAsync(id, change, options, token ())) with
                        | Ok CommitResult.Committed ->
                            acknowledged.Add n
                            if Volatile.Read &restarted.contents = 1 then Interlocked.Increment afterRestart |> ignore
                        | Ok other -> failtestf "commit %d gave %O" n other
                        | Error(:? SessionStoreException) -> uncertain.Add n
                        | Error e -> failtestf "commit %d failed with %s: %s" n (e.GetType().Name) e.Message
                }
                let writers = [| for _ in 1..6 -> writer () |]
                while acknowledged.Count < 150 do
                    do! Task.Delay 20
                if crash then server.Crash() else server.Stop()
                do! Task.Delay 1000
                server.Start()
                Volatile.Write(&restarted.contents, 1)
                let deadline = DateTime.UtcNow.AddSeconds 60.0
                while afterRestart.Value < 150 && DateTime.UtcNow < deadline do
                    do! Task.Delay 20
                stop.Cancel()
                let! _ = Task.WhenAll writers
                Expect.isGreaterThanOrEqual afterRestart.Value 150 "commits acknowledged after the restart, by the same store"
                let! loaded = store.LoadAsync(id, options.IdleTimeout, token ())
                let counter =
                    match SessionPath.tryGet (SessionPath.parse "counter") loaded.Data with
                    | Some(Json.Number n) -> int64 n.Text
                    | other -> failtestf "counter %A" other
                let log =
                    match SessionPath.tryGet (SessionPath.parse "log") loaded.Data with
                    | Some(Json.Array items) -> [
                        for item in items ->
                            match item with
                            | Json.Number n -> int n.Text
                            | other -> failtestf "log item %A" other
                      ]
                    | other -> failtestf "log %A" other
                let acked = Set.ofSeq acknowledged
                let maybe = Set.ofSeq uncertain
                Expect.isLessThanOrEqual (int64 acked.Count) counter "every acknowledged increment is counted"
                Expect.isLessThanOrEqual counter (int64 (acked.Count + maybe.Count)) "nothing is counted twice"
                Expect.equal (List.length log) (Set.count (Set.ofList log)) "no append is there twice"
                Expect.isEmpty (Set.difference acked (Set.ofList log)) "every acknowledged append is there"
                Expect.isEmpty (Set.difference (Set.ofList log) (Set.union acked maybe)) "nothing that was never sent"
                Expect.equal counter (int64 log.Length) "increments and appends were committed together"
            }
    ]
