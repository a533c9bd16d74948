/// Where the app's own CPU goes in a Redis counter request, without Kestrel: `redis-app [rounds]` starts a redis-server
/// of its own and runs, from 32 concurrent loops (one session each, as the load test's shared cookie does), the
/// counter's store work several ways: the load test's floor (two EVALSHA of trivial scripts), the same round trips sent
/// as the Redis store sends them but built by hand (HGETALL beside the load function, then the commit function: the
/// client's cost of the commands alone), the store's LoadAsync and CommitAsync, and each alone beside a bare HGETALL
/// (what a load whose expiry is not due sends) and the commit alone by hand, as FCALL and as EVALSHA of the same
/// script. Prints for each this process's CPU time and redis-server's a request (the client's cost, which Kestrel and
/// wrk do not blur here), and requests/s.
/// `only` keeps the scenarios whose name contains it (for a profiler).
module Sesame.Benchmarks.RedisAppCost

open System
open System.Threading
open System.Threading.Tasks
open Sesame
open Sesame.Redis
open StackExchange.Redis
open Sesame.Benchmarks.RedisBenchmarks

/// The floor's scripts, as bench/Sesame.LoadTest/Floors.fs has them.
let private floorLoad = "local fields = redis.call('HGETALL', KEYS[1])\nif #fields > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end\nreturn fields"

let private floorCommit = "local times = redis.call('HINCRBY', KEYS[1], 'times', 1)\nredis.call('PEXPIRE', KEYS[1], ARGV[1])\nreturn times"

/// redis-server's CPU time so far (INFO cpu: used_cpu_sys + used_cpu_user), in microseconds.
let private redisCpu (server: IServer) =
    server.Info "cpu"
    |> Seq.collect id
    |> Seq.filter (fun (KeyValue(k, _)) -> k = "used_cpu_sys" || k = "used_cpu_user")
    |> Seq.sumBy (fun (KeyValue(_, v)) -> Double.Parse(v, Globalization.CultureInfo.InvariantCulture))
    |> (*) 1e6

/// Runs `perWorker` requests in each of 32 loops; gives requests/s, this process's CPU µs a request and Redis's.
let private timed (server: IServer) (perWorker: int) (request: int -> Task) =
    let redisBefore = redisCpu server
    let perSecond, app = ConcurrentLoops.timed 32 perWorker (fun w _ -> request w)
    struct (perSecond, app, (redisCpu server - redisBefore) / float (32 * perWorker))

/// `redis-app [rounds] [only]`.
let run (rounds: int) (only: string) =
    use redis = new LocalRedis()
    let connect (allowAdmin: bool) (select: bool) =
        let settings = ConfigurationOptions.Parse redis.EndPoint
        settings.AbortOnConnectFail <- false
        settings.BacklogPolicy <- BacklogPolicy.FailFast
        settings.AllowAdmin <- allowAdmin
        if not select then settings.CommandMap <- CommandMap.Create(Collections.Generic.HashSet [ "SELECT" ], false)
        ConnectionMultiplexer.ConnectAsync(settings, null).GetAwaiter().GetResult()
    use connection = connect false true
    use admin = connect true true
    // The same store on a connection that never sends SELECT (database 0 only).
    use noSelect = connect false false
    use storeNoSelect = new RedisStore(noSelect, RedisStoreOptions(SweepInterval = TimeSpan.Zero), null)
    let server = admin.GetServer redis.EndPoint
    let database = connection.GetDatabase()
    use store = new RedisStore(connection, RedisStoreOptions(SweepInterval = TimeSpan.Zero), null)
    let sessions = store :> SessionStore
    let commit = { IdleTimeout = TimeSpan.FromMinutes 20.0; MustExist = true; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }
    let counter = SessionChange(Patch.fold [ Update.increment (SessionPath.parse "times") 1m ])
    let created = SessionChange(counter.Data, Patch.fold [ Update.set (SessionPath.ofKeys [ SessionMeta.Created ]) (Json.int64 1764700000000L) ])
    let id (w: int) = $"a{w:D31}"
    for w in 1..32 do
        sessions.CommitAsync(id w, created, { commit with MustExist = false }, CancellationToken.None).GetAwaiter().GetResult() |> ignore
    let floorLoadHash = server.ScriptLoad floorLoad
    let floorCommitHash = server.ScriptLoad floorCommit
    let ttl = RedisValue.op_Implicit 1_200_000L
    let floorKey (w: int) = RedisKey.op_Implicit $"floor:{id w}"
    // The store's own calls, built by hand from what it sends (its keys and arguments), to time the commands alone.
    let keysOf (w: int) =
        let sessionId = id w
        let tag = string sessionId[0]
        [|
            RedisKey.op_Implicit (store.KeyOf(id w))
            RedisKey.op_Implicit $"sesame:{{{tag}}}expiry"
            RedisKey.op_Implicit $"sesame:{{{tag}}}ids"
            RedisKey.op_Implicit $"sesame:{{{tag}}}bound"
        |]
    let loadCall (w: int) : obj[] =
        Array.append [| box (RedisLibrary.functionOf "Load"); box 4 |] (Array.map box (keysOf w))
        |> fun head -> Array.append head [| box "sesame:"; box (id w); box 1_200_000L; box 1000L |]
    let commitCall (w: int) : obj[] =
        let commit = { IdleTimeout = TimeSpan.FromMilliseconds 1_200_000.0; MustExist = true; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }
        let arguments =
            RedisLayout.commitArguments
                (RedisValue.op_Implicit "sesame:")
                (id w)
                commit
                (RedisValue.op_Implicit 1000L)
                RedisStoreOptions.DefaultInlineLimit
                counter
        Array.append [| box (RedisLibrary.functionOf "Commit"); box 4 |] (Array.map box (keysOf w))
        |> fun head -> Array.append head (arguments |> Array.map box)
    // The commit as the same script by EVALSHA (what the store sends where functions are unavailable), to tell what
    // FCALL through ExecuteAsync costs the client against the client's own EVALSHA.
    let commitScript = RedisScript.Embedded("Commit", [ "Layout"; "Patch" ])
    let commitHash = server.ScriptLoad commitScript.Text
    let commitArgumentsOf (w: int) =
        let commit = { IdleTimeout = TimeSpan.FromMilliseconds 1_200_000.0; MustExist = true; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }
        RedisLayout.commitArguments (RedisValue.op_Implicit "sesame:") (id w) commit (RedisValue.op_Implicit 1000L) RedisStoreOptions.DefaultInlineLimit counter
    let commitKeys = Array.init 33 (fun w -> if w = 0 then null else keysOf w)
    let commitArgumentArrays = Array.init 33 (fun w -> if w = 0 then null else commitArgumentsOf w)
    let loadCalls = Array.init 33 (fun w -> if w = 0 then null else loadCall w)
    let commitCalls = Array.init 33 (fun w -> if w = 0 then null else commitCall w)
    let scenarios: (string * (int -> Task)) list = [
        "floor: EVALSHA load + EVALSHA commit",
        fun w -> task {
            let! _ = database.ScriptEvaluateAsync(floorLoadHash, [| floorKey w |], [| ttl |])
            let! _ = database.ScriptEvaluateAsync(floorCommitHash, [| floorKey w |], [| ttl |])
            ()
        }
        "the store's commands by hand: HGETALL + FCALL load, FCALL commit",
        fun w -> task {
            let read = database.HashGetAllAsync(RedisKey.op_Implicit (store.KeyOf(id w)))
            let! _ = database.ExecuteAsync("FCALL", loadCalls[w])
            let! _ = read
            let! _ = database.ExecuteAsync("FCALL", commitCalls[w])
            ()
        }
        "the store: LoadAsync + CommitAsync",
        fun w -> task {
            let! _ = sessions.LoadAsync(id w, commit.IdleTimeout, CancellationToken.None)
            let! _ = sessions.CommitAsync(id w, counter, commit, CancellationToken.None)
            ()
        }
        "the store, on a connection with SELECT disabled",
        fun w -> task {
            let! _ = (storeNoSelect :> SessionStore).LoadAsync(id w, commit.IdleTimeout, CancellationToken.None)
            let! _ = (storeNoSelect :> SessionStore).CommitAsync(id w, counter, commit, CancellationToken.None)
            ()
        }
        "the commit function alone, by hand: FCALL through ExecuteAsync",
        fun w -> task {
            let! _ = database.ExecuteAsync("FCALL", commitCalls[w])
            ()
        }
        "the commit script alone, by hand: EVALSHA through ScriptEvaluateAsync",
        fun w -> task {
            let! _ = database.ScriptEvaluateAsync(commitHash, commitKeys[w], commitArgumentArrays[w])
            ()
        }
        "HGETALL alone, by hand (what a load whose expiry is not due sends)",
        fun w -> task {
            let! _ = database.HashGetAllAsync(RedisKey.op_Implicit (store.KeyOf(id w)))
            ()
        }
        "the store: LoadAsync alone",
        fun w -> task {
            let! _ = sessions.LoadAsync(id w, commit.IdleTimeout, CancellationToken.None)
            ()
        }
        "the store: CommitAsync alone",
        fun w -> task {
            let! _ = sessions.CommitAsync(id w, counter, commit, CancellationToken.None)
            ()
        }
    ]
    for w in 1..32 do
        database.HashSet(floorKey w, "times", 0) |> ignore
    // Warm-up: JIT, connection, functions loaded.
    // Only the scenarios whose name contains `only` (all when it is empty): one at a time, for a profiler.
    let scenarios = scenarios |> List.filter (fun (name, _) -> name.Contains only)
    for _, request in scenarios do
        timed server 200 request |> ignore
    printfn "redis-server %s on port %d; 32 loops" (string server.Version) redis.Port
    for round in 1..rounds do
        for name, request in scenarios do
            let struct (perSecond, app, redisUs) = timed server 1000 request
            printfn "round %d  %-66s %8.0f req/s  app CPU %6.1f µs  Redis CPU %5.1f µs a request" round name perSecond app redisUs
    0
