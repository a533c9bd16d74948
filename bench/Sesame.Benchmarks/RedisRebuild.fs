/// What a Redis load costs the app once the hash is in: rebuilding the session's trees from its fields (one per node),
/// against parsing the same session's JSON (what reading it from one string would cost).
/// Run: dotnet run -c Release --project bench/Sesame.Benchmarks -- --filter '*RedisRebuild*'
module Sesame.Benchmarks.RedisRebuild

open System
open System.Threading
open BenchmarkDotNet.Attributes
open Sesame
open Sesame.Redis
open StackExchange.Redis
open Sesame.Benchmarks.RedisBenchmarks

/// Rebuilding a session of a given size from its hash's fields, as HGETALL gives them.
[<MemoryDiagnoser>]
type RedisRebuild() =
    let mutable entries: HashEntry[] = [||]
    let mutable utf8: byte[] = [||]

    /// The session's size in KB of compact JSON (CoreBenchmarks.sessionOfSize).
    [<Params(1, 64)>]
    member val Kilobytes = 1 with get, set

    /// Writes the session with the store's own commit to a throwaway redis-server and reads its hash back.
    [<GlobalSetup>]
    member this.Setup() =
        let session = CoreBenchmarks.sessionOfSize this.Kilobytes
        utf8 <- Json.toUtf8 session
        use redis = new LocalRedis()
        use connection = ConnectionMultiplexer.Connect redis.EndPoint
        use store = new RedisStore(connection, RedisStoreOptions(SweepInterval = TimeSpan.Zero), null)
        let commit = { IdleTimeout = TimeSpan.FromMinutes 20.0; MustExist = false; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }
        let change = SessionChange(Patch.fold [ Update.set SessionPath.root session ])
        (store :> SessionStore).CommitAsync("rebuild", change, commit, CancellationToken.None).GetAwaiter().GetResult() |> ignore
        entries <- connection.GetDatabase().HashGetAll(RedisKey.op_Implicit (store.KeyOf "rebuild"))
        match RedisLayout.rebuildHash entries with
        | Ok(struct (data, _, _)) when data = session -> ()
        | other -> failwith $"the hash does not rebuild the session: {other}"

    /// Parsing the session's compact JSON.
    [<Benchmark(Baseline = true)>]
    member _.ParseJson() : Json = Json.parseUtf8 (ReadOnlySpan utf8)

    /// Rebuilding its trees from the hash's fields.
    [<Benchmark>]
    member _.RebuildHash() = RedisLayout.rebuildHash entries
