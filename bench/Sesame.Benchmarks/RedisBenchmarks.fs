module Sesame.Benchmarks.RedisBenchmarks

open System
open System.Diagnostics
open System.IO
open System.Net
open System.Net.Sockets
open System.Threading
open System.Threading.Tasks
open BenchmarkDotNet.Attributes
open Sesame
open Sesame.Redis
open StackExchange.Redis

/// A redis-server of the benchmark's own on a free loopback port (no persistence), with extra arguments
/// (for a replica: <c>--replicaof 127.0.0.1 port</c>).
[<Sealed>]
type internal LocalRedis(extra: string list) =
    let directory = Directory.CreateTempSubdirectory "sesame-bench-redis-"
    let port =
        let listener = new TcpListener(IPAddress.Loopback, 0)
        listener.Start()
        let port = (listener.LocalEndpoint :?> IPEndPoint).Port
        listener.Stop()
        port
    let proc =
        let info = ProcessStartInfo("redis-server", UseShellExecute = false, RedirectStandardOutput = true)
        // A folder of its own: a replica's full sync writes dump.rdb there.
        for argument in [ "--port"; string port; "--save"; ""; "--appendonly"; "no"; "--bind"; "127.0.0.1"; "--dir"; directory.FullName ] @ extra do
            info.ArgumentList.Add argument
        let started = Process.Start info
        started.OutputDataReceived.Add ignore
        started.BeginOutputReadLine()
        let deadline = DateTime.UtcNow.AddSeconds 20.0
        let mutable ready = false
        while not ready do
            try
                use client = new TcpClient()
                client.Connect(IPAddress.Loopback, port)
                ready <- true
            with :? SocketException when DateTime.UtcNow < deadline ->
                Thread.Sleep 20
        started

    new() = new LocalRedis([])

    member _.Port = port

    member _.EndPoint = $"127.0.0.1:{port}"

    interface IDisposable with
        member _.Dispose() =
            if not proc.HasExited then
                proc.Kill()
                proc.WaitForExit()
            try
                directory.Delete true
            with _ ->
                ()

let private idle = { IdleTimeout = TimeSpan.FromMinutes 20.0; MustExist = false; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }

let private cartPatch (i: int) =
    SessionChange(
        Patch.fold [
            Update.set (SessionPath.parse "cart.lastItem") (Json.object [ "sku", Json.int64 (int64 i); "price", Json.decimal 19.99m ])
            Update.increment (SessionPath.parse "visits") 1m
        ]
    )

/// <summary>
/// Commits per second against a real redis-server on loopback: one writer, 32 concurrent writers
/// (each on its own session, and all on one session), a commit into a large session, and loads
/// (of a small and a large session) with and without the idle-expiry refresh. Round trips per commit and per load are counted
/// from Redis's INFO commandstats once, in the global setup, and printed.
/// </summary>
[<MemoryDiagnoser>]
type RedisBenchmarks() =
    let mutable redis: LocalRedis option = None
    let mutable connection: ConnectionMultiplexer = null
    let mutable admin: ConnectionMultiplexer = null
    let mutable store: SessionStore = null
    let mutable refreshingStore: SessionStore = null
    let mutable counter = 0

    let connect (endPoint: string) (allowAdmin: bool) =
        let settings = ConfigurationOptions.Parse endPoint
        settings.AbortOnConnectFail <- false
        settings.AllowAdmin <- allowAdmin
        ConnectionMultiplexer.ConnectAsync(settings, null).GetAwaiter().GetResult()

    let commandCalls () =
        let server = admin.GetServer(redis.Value.EndPoint)
        server.InfoAsync(RedisValue.op_Implicit "commandstats", CommandFlags.None).GetAwaiter().GetResult()
        |> Seq.collect id
        |> Seq.map (fun (KeyValue(name, value)) ->
            let calls = value.Split(',') |> Array.find (fun p -> p.StartsWith "calls=")
            name.Replace("cmdstat_", ""), int64 (calls.Substring 6))
        |> Map.ofSeq

    let countRoundTrips () =
        let n = 1000
        let delta (before: Map<string, int64>) (after: Map<string, int64>) =
            after |> Map.map (fun name calls -> calls - (before |> Map.tryFind name |> Option.defaultValue 0L)) |> Map.filter (fun _ d -> d > 0L)
        let describe (label: string) (d: Map<string, int64>) =
            // INFO itself is the one command the measurement adds.
            // The client's own commands: the script call (FCALL, or EVALSHA before Redis 7), what loads the script, and
            // the SELECT that StackExchange.Redis writes with each FCALL (same round trip).
            let sent = [ "fcall"; "evalsha"; "eval"; "script|load"; "function|load"; "select"; "del" ]
            let count (c: string) = d |> Map.tryFind c |> Option.defaultValue 0L
            let calls = count "fcall" + count "evalsha" + count "eval"
            let inside = d |> Map.filter (fun c _ -> not (List.contains c ("info" :: sent)))
            let insideText = inside |> Map.toList |> List.map (fun (c, k) -> $"{c} {float k / float n:F2}") |> String.concat ", "
            let per (c: string) = float (count c) / float n
            let fcall, evalsha, select = per "fcall", per "evalsha", per "select"
            Console.WriteLine(
                $"// Redis script calls per {label}: {float calls / float n:F2} (fcall {fcall:F2}, evalsha {evalsha:F2}, select {select:F2}); commands run inside the script per {label}: {insideText}"
            )
        let before = commandCalls ()
        for i in 1..n do
            store.CommitAsync("rt-session", cartPatch i, idle, CancellationToken.None).GetAwaiter().GetResult() |> ignore
        let middle = commandCalls ()
        for _ in 1..n do
            refreshingStore.LoadAsync("rt-session", idle.IdleTimeout, CancellationToken.None).GetAwaiter().GetResult() |> ignore
        let after = commandCalls ()
        describe "commit" (delta before middle)
        describe "load" (delta middle after)
        // The default store refreshes the TTL at most once a second: a burst of loads is read-only.
        for _ in 1..n do
            store.LoadAsync("rt-session", idle.IdleTimeout, CancellationToken.None).GetAwaiter().GetResult() |> ignore
        let throttled = delta after (commandCalls ())
        describe "load with the default ExpiryRefreshInterval" throttled

    [<GlobalSetup>]
    member _.Setup() =
        let server = new LocalRedis()
        redis <- Some server
        connection <- connect server.EndPoint false
        admin <- connect server.EndPoint true
        store <- new RedisStore(connection, RedisStoreOptions(KeyPrefix = "bench:", SweepInterval = TimeSpan.Zero), null)
        refreshingStore <-
            new RedisStore(connection, RedisStoreOptions(KeyPrefix = "bench:", SweepInterval = TimeSpan.Zero, ExpiryRefreshInterval = TimeSpan.Zero), null)
        for id in [ "one"; "shared"; "load"; "rt-session" ] do
            store.CommitAsync(id, cartPatch 0, idle, CancellationToken.None).GetAwaiter().GetResult() |> ignore
        // A large session: 2,000 leaves (about 60 KB of JSON).
        let big = Json.object [ for i in 1..200 -> $"item{i}", Json.object [ for j in 1..10 -> $"field{j}", Json.string $"value {i}.{j}" ] ]
        store
            .CommitAsync("large", SessionChange(Patch.fold [ Update.set (SessionPath.parse "catalog") big ]), idle, CancellationToken.None)
            .GetAwaiter()
            .GetResult()
        |> ignore
        countRoundTrips ()

    [<GlobalCleanup>]
    member _.Cleanup() =
        connection.Dispose()
        admin.Dispose()
        redis |> Option.iter (fun r -> (r :> IDisposable).Dispose())

    [<Benchmark(Description = "commit, 1 writer")>]
    member _.CommitOneWriter() : Task =
        counter <- counter + 1
        store.CommitAsync("one", cartPatch counter, idle, CancellationToken.None) :> Task

    [<Benchmark(Description = "commit, 32 writers, 32 sessions", OperationsPerInvoke = 32 * 16)>]
    member _.Commit32Writers() : Task =
        Task.WhenAll(
            [|
                for w in 1..32 ->
                    task {
                        for i in 1..16 do
                            let! _ = store.CommitAsync($"writer-{w}", cartPatch i, idle, CancellationToken.None)
                            ()
                    }
                    :> Task
            |]
        )

    [<Benchmark(Description = "commit, 32 writers, 1 session", OperationsPerInvoke = 32 * 16)>]
    member _.Commit32WritersOneSession() : Task =
        Task.WhenAll(
            [|
                for w in 1..32 ->
                    task {
                        for i in 1..16 do
                            let! _ =
                                store.CommitAsync(
                                    "shared",
                                    SessionChange(
                                        Patch.fold [
                                            Update.set (SessionPath.parse $"writers.w{w}") (Json.int64 (int64 i))
                                            Update.increment (SessionPath.parse "total") 1m
                                        ]
                                    ),
                                    idle,
                                    CancellationToken.None
                                )
                            ()
                    }
                    :> Task
            |]
        )

    [<Benchmark(Description = "commit, 1 writer, 2,000-leaf session")>]
    member _.CommitLargeSession() : Task =
        counter <- counter + 1
        store.CommitAsync(
            "large",
            SessionChange(Patch.fold [ Update.set (SessionPath.parse "catalog.item7.field3") (Json.int64 (int64 counter)) ]),
            idle,
            CancellationToken.None
        )
        :> Task

    [<Benchmark(Description = "load (TTL refreshed at most once a second)")>]
    member _.Load() : Task = store.LoadAsync("load", idle.IdleTimeout, CancellationToken.None) :> Task

    [<Benchmark(Description = "load, 2,000-leaf session")>]
    member _.LoadLargeSession() : Task = store.LoadAsync("large", idle.IdleTimeout, CancellationToken.None) :> Task

    [<Benchmark(Description = "load (TTL refreshed every load)")>]
    member _.LoadRefreshEveryTime() : Task = refreshingStore.LoadAsync("load", idle.IdleTimeout, CancellationToken.None) :> Task

    [<Benchmark(Description = "HGETALL alone (no script, no TTL, no rebuild)")>]
    member _.HashGetAll() : Task =
        connection.GetDatabase().HashGetAllAsync(RedisKey.op_Implicit ((store :?> RedisStore).KeyOf "load"), CommandFlags.None) :> Task

/// <summary>
/// A plain throughput loop, for comparing builds (e.g. two StackExchange.Redis versions) run one
/// after the other on a busy machine, where BenchmarkDotNet's short runs are too noisy: each
/// round times a fixed number of commits and loads, 1 and 32 at a time, on a redis-server of its
/// own, and prints operations per second; then commits on a primary with one replica, without and
/// with <c>WaitForReplicas = 1</c>, alternating, and the ratio of the two; then Redis's INFO
/// commandstats deltas per operation. Run: <c>dotnet Sesame.Benchmarks.dll redis-loop [rounds]</c>.
/// </summary>
module RedisLoop =

    let private commandCalls (admin: IConnectionMultiplexer) (endPoint: string) =
        admin.GetServer(endPoint).InfoAsync(RedisValue.op_Implicit "commandstats", CommandFlags.None).GetAwaiter().GetResult()
        |> Seq.collect id
        |> Seq.map (fun (KeyValue(name, value)) ->
            let calls = value.Split(',') |> Array.find (fun p -> p.StartsWith "calls=")
            name.Replace("cmdstat_", ""), int64 (calls.Substring 6))
        |> Map.ofSeq

    /// Runs the loop; prints one line per round and scenario, then the round trips.
    let run (rounds: int) =
        use redis = new LocalRedis()
        let connect (allowAdmin: bool) =
            let settings = ConfigurationOptions.Parse redis.EndPoint
            settings.AbortOnConnectFail <- false
            settings.AllowAdmin <- allowAdmin
            ConnectionMultiplexer.ConnectAsync(settings, null).GetAwaiter().GetResult()
        use connection = connect false
        use admin = connect true
        let store = new RedisStore(connection, RedisStoreOptions(KeyPrefix = "loop:", SweepInterval = TimeSpan.Zero), null) :> SessionStore
        let commit (session: string) (i: int) = store.CommitAsync(session, cartPatch i, idle, CancellationToken.None) :> Task
        let load (session: string) = store.LoadAsync(session, idle.IdleTimeout, CancellationToken.None) :> Task
        for w in 1..32 do
            (commit $"s{w}" 0).GetAwaiter().GetResult()
        let scenarios = [
            "commits/s, 1 writer", (fun () -> ConcurrentLoops.timed 1 4000 (fun _ i -> commit "s1" i))
            "commits/s, 32 writers", (fun () -> ConcurrentLoops.timed 32 250 (fun w i -> commit $"s{w}" i))
            "loads/s, 1 reader", (fun () -> ConcurrentLoops.timed 1 4000 (fun _ _ -> load "s1"))
            "loads/s, 32 readers", (fun () -> ConcurrentLoops.timed 32 250 (fun w _ -> load $"s{w}"))
        ]
        // Warm-up: JIT, connection, scripts loaded.
        for _, scenario in scenarios do
            scenario () |> ignore
        for round in 1..rounds do
            for name, scenario in scenarios do
                let perSecond, cpu = scenario ()
                Console.WriteLine($"round {round}\t{name}\t{perSecond:F0}\tclient CPU µs/op\t{cpu:F1}")
        let delta (before: Map<string, int64>) (after: Map<string, int64>) =
            after
            |> Map.map (fun name calls -> calls - (before |> Map.tryFind name |> Option.defaultValue 0L))
            |> Map.filter (fun name d -> d > 0L && name <> "info")
        let count = 1000
        let before = commandCalls admin redis.EndPoint
        ConcurrentLoops.timed 1 count (fun _ i -> commit "s1" i) |> ignore
        let middle = commandCalls admin redis.EndPoint
        ConcurrentLoops.timed 1 count (fun _ _ -> load "s1") |> ignore
        let after = commandCalls admin redis.EndPoint
        let describe (label: string) (d: Map<string, int64>) =
            let perOperation = d |> Map.toList |> List.map (fun (c, k) -> $"{c} {float k / float count:F2}") |> String.concat ", "
            Console.WriteLine($"commandstats per {label}: {perOperation}")
        describe "commit" (delta before middle)
        describe "load" (delta middle after)
        // WAIT: a primary with one replica; the same commits without and with WaitForReplicas = 1, in turns.
        use primary = new LocalRedis()
        use replica = new LocalRedis([ "--replicaof"; "127.0.0.1"; string primary.Port ])
        let primaryConnection =
            let settings = ConfigurationOptions.Parse primary.EndPoint
            settings.AbortOnConnectFail <- false
            settings.AllowAdmin <- true
            ConnectionMultiplexer.ConnectAsync(settings, null).GetAwaiter().GetResult()
        use _ = primaryConnection
        let deadline = DateTime.UtcNow.AddSeconds 30.0
        let synced () =
            let info = primaryConnection.GetServer(primary.EndPoint).InfoAsync(RedisValue.op_Implicit "replication", CommandFlags.None).GetAwaiter().GetResult()
            info |> Seq.collect id |> Seq.exists (fun (KeyValue(k, v)) -> k = "slave0" && v.Contains "state=online")
        while not (synced ()) && DateTime.UtcNow < deadline do
            Thread.Sleep 50
        let storeWith (replicas: int) =
            new RedisStore(
                primaryConnection,
                RedisStoreOptions(KeyPrefix = $"wait{replicas}:", SweepInterval = TimeSpan.Zero, WaitForReplicas = replicas),
                null
            )
            :> SessionStore
        let plain, waiting = storeWith 0, storeWith 1
        let commitTo (target: SessionStore) (session: string) (i: int) = target.CommitAsync(session, cartPatch i, idle, CancellationToken.None) :> Task
        let replication = [
            for workers, per in [ 1, 2000; 32, 125 ] do
                $"commits/s, {workers} writers, no wait", (fun () -> ConcurrentLoops.timed workers per (fun w i -> commitTo plain $"s{w}" i))
                $"commits/s, {workers} writers, WAIT 1 replica", (fun () -> ConcurrentLoops.timed workers per (fun w i -> commitTo waiting $"s{w}" i))
        ]
        for _, scenario in replication do
            scenario () |> ignore
        let totals = Collections.Generic.Dictionary<string, float>()
        for round in 1..rounds do
            for name, scenario in replication do
                let perSecond, cpu = scenario ()
                totals[name] <-
                    (match totals.TryGetValue name with
                     | true, t -> t
                     | _ -> 0.0)
                    + perSecond
                Console.WriteLine($"round {round}\t{name}\t{perSecond:F0}\tclient CPU µs/op\t{cpu:F1}")
        for workers in [ 1; 32 ] do
            let ratio = totals[$"commits/s, {workers} writers, WAIT 1 replica"] / totals[$"commits/s, {workers} writers, no wait"]
            Console.WriteLine($"WAIT for 1 replica, {workers} writers: {ratio:F2}x the commits/s without it")
