module Sesame.Benchmarks.Program

open BenchmarkDotNet.Running

/// Marks this assembly, where the benchmark classes live.
type private Marker = class end

/// Runs the benchmarks chosen on the command line (e.g. --filter '*Fold*'), or asks which;
/// `redis-loop [rounds]` runs RedisBenchmarks.RedisLoop instead; `redis-calls [count]` RedisCalls (Redis's own time
/// per call of the store's functions); `redis-app [rounds] [only]` RedisAppCost (the app's own CPU a Redis counter request,
/// against the floor's and the bare commands'); `redis-user-page [sessions]` RedisUserListing (what listing a user
/// with many sessions holds Redis for); `postgres` and `postgres-churn` run
/// PostgresBenchmarks (WAL and throughput against a whole-row baseline; bloat under churn); `replay generate DIR` and
/// `replay open FILE [rounds]` run ReplayBenchmarks (the file store's replay time and the memory it then holds);
/// `file-new-sessions DIR [count]` FileNewSessions (the file store's CPU per new session's commit); `file-app DIR
/// [rounds]` FileAppCost (a counter request's store work on the file store against the memory store's, CPU a request); `facts-bound [items]
/// [rounds]` FactsBoundCost (what bounding large facts costs a commit that adds flash, on Redis and PostgreSQL);
/// `fold-loop fold|naive|redis|pg` runs one of ServerStoreArguments' cases (100 updates) for 15 s, for a profiler;
/// `fold-split` times that case's parts (the checks, the fold, each store's arguments of the folded patch) in loops of
/// 3 s, with the bytes each allocates; `fold-allocs normalize|redis|pg` samples what one part allocates, by type; `visit-allocs
/// plain|untouched|read|counter|first` what a visit allocates, by type (ReturningVisitBenchmarks' requests).
[<EntryPoint>]
let main args =
    match List.ofArray args with
    | "fold-loop" :: [ which ] ->
        let b = ServerStoreArguments.ServerStoreArguments()
        b.Updates <- 100
        b.Setup()
        printfn "%d updates folded to %d; the Redis commit's ARGV: %d values" b.Updates (b.Fold()) (b.RedisArguments().Length)
        let sw = System.Diagnostics.Stopwatch.StartNew()
        let mutable n = 0
        while sw.Elapsed.TotalSeconds < 15.0 do
            (match which with
             | "fold" -> b.Fold() |> ignore
             | "naive" -> b.Naive() |> ignore
             | "pg" -> b.PostgresArguments() |> ignore
             | _ -> b.RedisArguments() |> ignore)
            n <- n + 1
        printfn "%d calls, %.2f us each" n (sw.Elapsed.TotalMilliseconds * 1000.0 / float n)
    | [ "fold-split" ] -> FoldParts.run ()
    | [ "fold-allocs"; which ] -> FoldParts.allocations which
    | [ "visit-allocs"; which ] -> ReturningVisitBenchmarks.allocations which
    | "redis-loop" :: rest ->
        RedisBenchmarks.RedisLoop.run (
            match rest with
            | [ rounds ] -> int rounds
            | _ -> 5
        )
    | "redis-calls" :: rest ->
        RedisCalls.run (
            match rest with
            | [ count ] -> int count
            | _ -> 5000
        )
        |> ignore
    | "redis-app" :: rest ->
        (match rest with
         | [ rounds; only ] -> RedisAppCost.run (int rounds) only
         | [ rounds ] -> RedisAppCost.run (int rounds) ""
         | _ -> RedisAppCost.run 3 "")
        |> ignore
    | "redis-user-page" :: rest ->
        RedisUserListing.run (
            match rest with
            | [ count ] -> int count
            | _ -> 100_000
        )
        |> ignore
    | "replay" :: rest -> ReplayBenchmarks.run rest
    | "file-new-sessions" :: rest -> FileNewSessions.run rest
    | "file-app" :: rest -> FileAppCost.run rest
    | "postgres" :: rest -> PostgresBenchmarks.run rest |> ignore
    | "postgres-churn" :: rest -> PostgresBenchmarks.churn rest |> ignore
    | "facts-bound" :: rest -> FactsBoundCost.run rest
    | _ -> BenchmarkSwitcher.FromAssembly(typeof<Marker>.Assembly).Run(args) |> ignore
    0
