/// The fold goal's case (100 updates to a 1 KB session) for the stores that apply the patch in their server: what the
/// app does for the commit (the updates checked as a handler records them, folded, and made the Redis commit script's
/// or the PostgreSQL commit function's arguments), against the naive way (parse the session into JsonNode, change it,
/// write it all back). The server's own work (Lua, PL/pgSQL) is not in it: the load test's Redis rows measure that.
/// Run: dotnet run -c Release --project bench/Sesame.Benchmarks -- --filter '*ServerStoreArguments*'
module Sesame.Benchmarks.ServerStoreArguments

open System
open BenchmarkDotNet.Attributes
open StackExchange.Redis
open Sesame
open Sesame.Postgres
open Sesame.Redis
open Sesame.Benchmarks.CoreBenchmarks

[<MemoryDiagnoser>]
type ServerStoreArguments() =
    let session = sessionOfSize 1
    let sessionText = Json.serialize session
    let commit = { IdleTimeout = TimeSpan.FromMinutes 20.0; MustExist = true; MaxSizeBytes = 1024 * 1024; UserLimit = UserLimit.None }
    let prefix = RedisValue.op_Implicit "sesame:"
    let refresh = RedisValue.op_Implicit 60_000L

    let mutable changeList: Change list = []
    let mutable updates: Update[] = [||]

    /// The updates the request made.
    [<Params(10, 100)>]
    member val Updates = 100 with get, set

    [<GlobalSetup>]
    member this.Setup() =
        changeList <- changes this.Updates
        updates <- Array.ofList (toUpdates changeList)

    /// Parse the whole session text into JsonNode, change it, write it all back.
    [<Benchmark(Baseline = true)>]
    member _.Naive() : string = naiveRoundTrip sessionText changeList

    /// The part of both stores' work that is the fold: the updates checked and folded.
    [<Benchmark>]
    member _.Fold() : int = (Patch.record updates).Updates.Length

    /// The Redis store's commit, in the app: the updates checked and folded, then the commit script's ARGV.
    [<Benchmark>]
    member _.RedisArguments() : RedisValue[] =
        RedisLayout.commitArguments prefix "id" commit refresh RedisStoreOptions.DefaultInlineLimit (SessionChange(Patch.record updates))

    /// The PostgreSQL store's commit, in the app: the same, then the commit function's arrays.
    [<Benchmark>]
    member _.PostgresArguments() : obj = PostgresLayout.argumentsOf (SessionChange(Patch.record updates))
