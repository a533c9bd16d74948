/// The fold goal's case (100 updates to a 1 KB session, see ServerStoreArguments) part by part, outside
/// BenchmarkDotNet: quick to run while changing one part, and a way to see what each part allocates.
/// Run: dotnet run -c Release --project bench/Sesame.Benchmarks -- fold-split (or fold-allocs normalize|redis|pg)
module Sesame.Benchmarks.FoldParts

open Sesame

/// The Redis commit's arguments of a folded patch, with the options ServerStoreArguments uses.
let private redisArguments (folded: Patch) =
    let commit: CommitOptions = { IdleTimeout = System.TimeSpan.FromMinutes 20.0; MustExist = true; MaxSizeBytes = 1024 * 1024; UserLimit = UserLimit.None }
    let prefix = StackExchange.Redis.RedisValue.op_Implicit "sesame:"
    Redis.RedisLayout.commitArguments prefix "id" commit (StackExchange.Redis.RedisValue.op_Implicit 60_000L) 64 (SessionChange folded)

/// Times the parts (the checks, the fold, each store's arguments of the folded patch, and the whole of each) in loops
/// of 3 s, with the bytes each allocates, twice over.
let run () =
    let b = ServerStoreArguments.ServerStoreArguments()
    b.Updates <- 100
    b.Setup()
    let updates = Array.ofList (CoreBenchmarks.toUpdates (CoreBenchmarks.changes 100))
    let folded = Patch.record updates
    folded.Updates |> ignore
    let time name (f: unit -> int) =
        for _ in 1..20000 do
            f () |> ignore
        let a0 = System.GC.GetAllocatedBytesForCurrentThread()
        let sw = System.Diagnostics.Stopwatch.StartNew()
        let mutable n = 0
        while sw.Elapsed.TotalSeconds < 3.0 do
            f () |> ignore
            n <- n + 1
        let a1 = System.GC.GetAllocatedBytesForCurrentThread()
        printfn "%-28s %8.3f us  %8.0f B" name (sw.Elapsed.TotalMilliseconds * 1000.0 / float n) (float (a1 - a0) / float n)
    for _ in 1..2 do
        time "naive" (fun () -> (b.Naive()).Length)
        time "validate" (fun () ->
            (for u in updates do
                Update.validate u)
            0)
        time "normalize" (fun () -> (PatchFold.normalize updates).Length)
        time "record+fold" (fun () -> b.Fold())
        time "redis args of folded" (fun () -> (redisArguments folded).Length)
        time "pg args of folded" (fun () -> (Postgres.PostgresLayout.argumentsOf (SessionChange folded)).GetHashCode())
        time "redis args" (fun () -> (b.RedisArguments()).Length)
        time "pg args" (fun () -> (b.PostgresArguments()).GetHashCode())

/// Samples what one part allocates, by type (the runtime's allocation ticks, one every ~100 KB, over 300,000 calls):
/// the fold ("normalize"), or the Redis ("redis") or PostgreSQL ("pg") arguments of the folded patch.
let allocations (which: string) =
    let updates = Array.ofList (CoreBenchmarks.toUpdates (CoreBenchmarks.changes 100))
    let folded = Patch.record updates
    folded.Updates |> ignore
    let ticks =
        AllocationTicks.sample (fun () ->
            for _ in 1..300000 do
                match which with
                | "normalize" -> (PatchFold.normalize updates).Length |> ignore
                | "redis" -> (redisArguments folded).Length |> ignore
                | _ -> (Postgres.PostgresLayout.argumentsOf (SessionChange folded)).GetHashCode() |> ignore)
    let total = ticks |> List.sumBy snd
    for name, count in ticks |> List.truncate 25 do
        printfn "%5.1f%%  %s" (100.0 * float count / float total) name
