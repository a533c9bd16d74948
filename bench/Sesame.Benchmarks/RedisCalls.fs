/// Where the Redis store's calls spend Redis's own time, from `INFO commandstats`: `redis-calls [count]` starts a
/// redis-server of its own, makes count calls of each kind in a row from one client (a new session's commit, a load
/// that slides the expiry, the counter's commit; loads and commits also with their expiry not due, and sliding), and
/// prints for each the function's time a call and the commands it ran (also for the fold goal's commit: 100 updates to a
/// ~1 KB session, CoreBenchmarks.changes, to count / 10 such sessions); then what a trivial function and one
/// `redis.call` cost, and what returning a hash's fields from a script costs against reading them with HGETALL alone.
module Sesame.Benchmarks.RedisCalls

open System
open System.Threading
open Sesame
open Sesame.Redis
open StackExchange.Redis
open Sesame.Benchmarks.RedisBenchmarks

/// One line of `INFO commandstats`: the command, its calls and its time a call (µs).
type private CommandStat = { Command: string; Calls: int64; MicrosecondsPerCall: float }

let private stats (server: IServer) : CommandStat list = [
    for group in server.Info "commandstats" do
        for entry in group do
            // cmdstat_NAME: calls=N,usec=N,usec_per_call=N,...
            let fields =
                entry.Value.Split(',')
                |> Array.choose (fun part ->
                    match part.Split('=') with
                    | [| name; value |] -> Some(name, value)
                    | _ -> None)
                |> Map.ofArray
            yield {
                Command = entry.Key.Replace("cmdstat_", "")
                Calls = int64 fields["calls"]
                MicrosecondsPerCall = Double.Parse(fields["usec_per_call"], Globalization.CultureInfo.InvariantCulture)
            }
]

let private reset (server: IServer) = server.Execute("CONFIG", "RESETSTAT") |> ignore

/// Runs work count times, then prints the time a call of the commands the client sent (FCALL, EVAL) and of those they ran.
let private measure (server: IServer) (label: string) (count: int) (work: int -> unit) =
    reset server
    for i in 0 .. count - 1 do
        work i
    let all = stats server |> List.filter (fun s -> not (s.Command.StartsWith "config"))
    let outer = all |> List.filter (fun s -> s.Command = "fcall" || s.Command = "eval" || s.Command = "evalsha")
    let inner = all |> List.filter (fun s -> s.Command <> "fcall" && s.Command <> "eval" && s.Command <> "evalsha" && s.Command <> "select")
    let perCall (s: CommandStat) = s.MicrosecondsPerCall * float s.Calls / float count
    printfn "%s (%d calls):" label count
    for s in outer do
        printfn "  %-8s %7.2f µs a call, %5.2f calls a %s" s.Command s.MicrosecondsPerCall (float s.Calls / float count) label
    for s in inner do
        printfn "    %-14s %6.2f a call of it, %5.2f calls and %5.2f µs a %s" s.Command s.MicrosecondsPerCall (float s.Calls / float count) (perCall s) label
    for s in all |> List.filter (fun s -> s.Command = "select") do
        printfn "    (select sent by the client: %d)" s.Calls
    let commands = inner |> List.sumBy perCall
    let calls = inner |> List.sumBy (fun s -> float s.Calls / float count)
    struct (commands, calls)

/// `redis-calls [count]`.
let run (count: int) =
    use redis = new LocalRedis()
    use connection = ConnectionMultiplexer.Connect($"{redis.EndPoint},allowAdmin=true")
    let server = connection.GetServer redis.EndPoint
    let database = connection.GetDatabase()
    use store = new RedisStore(connection)
    let sessions = store :> SessionStore
    let creating = { IdleTimeout = TimeSpan.FromMinutes 20.0; MustExist = false; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }
    let existing = { creating with MustExist = true }
    let created = Patch.fold [ Update.set (SessionPath.ofKeys [ SessionMeta.Created ]) (Json.int64 1764700000000L) ]
    let counter = Patch.fold [ Update.increment (SessionPath.parse "times") 1m ]
    let id (i: int) = $"a{i:D31}"
    let wait (t: Threading.Tasks.Task<'a>) = t.GetAwaiter().GetResult() |> ignore
    // The function library loaded first, so that no call below pays for it.
    sessions.CommitAsync("warm-up", SessionChange(counter, created), creating, CancellationToken.None) |> wait
    printfn "redis-server %s on port %d" (string server.Version) redis.Port
    let report (label: string) (fcall: float) (struct (commands: float, calls: float)) (trivial: float) (overhead: float) =
        printfn
            "  => %s: %.1f µs; its commands %.1f µs in %.1f calls; left for the script's Lua about %.1f µs"
            label
            fcall
            commands
            calls
            (fcall - commands - trivial - calls * overhead)
    let fcallOf () = (stats server |> List.find (fun s -> s.Command = "fcall")).MicrosecondsPerCall
    let newSession =
        measure server "new session's commit" count (fun i ->
            sessions.CommitAsync(id i, SessionChange(counter, created), creating, CancellationToken.None) |> wait)
    let newSessionCall = fcallOf ()
    let load = measure server "load" count (fun i -> sessions.LoadAsync(id i, creating.IdleTimeout, CancellationToken.None) |> wait)
    let loadCall = fcallOf ()
    // Loads of a session whose expiry is not due to slide (a refresh interval of an hour) and of one whose expiry slides
    // on every load (none), each session loaded twice by a store of its own: the first time the store knows nothing of
    // it and sends the load script beside its HGETALL; the second, with its expiry not due, it sends HGETALL alone.
    // Redis's time for a load is its scripts' plus its HGETALL.
    let loadsWith (interval: TimeSpan) (label: string) =
        use other = new RedisStore(connection, RedisStoreOptions(ExpiryRefreshInterval = interval), null)
        for pass in [ "first"; "again" ] do
            let name = $"{label}, {pass}"
            measure server name count (fun i -> (other :> SessionStore).LoadAsync(id i, creating.IdleTimeout, CancellationToken.None) |> wait) |> ignore
            let total =
                stats server
                |> List.filter (fun s -> s.Command = "fcall" || s.Command = "hgetall")
                |> List.sumBy (fun s -> s.MicrosecondsPerCall * float s.Calls / float count)
            printfn "  => %s: %.1f µs a load (its scripts and its HGETALL)" name total
    loadsWith (TimeSpan.FromHours 1.0) "load, expiry not due"
    loadsWith TimeSpan.Zero "load, expiry sliding"
    // The counter's commit likewise: a commit slides the expiry only when it is due, as a load does.
    let commitsWith (interval: TimeSpan) (label: string) =
        use other = new RedisStore(connection, RedisStoreOptions(ExpiryRefreshInterval = interval), null)
        measure server label count (fun i -> (other :> SessionStore).CommitAsync(id i, SessionChange(counter), existing, CancellationToken.None) |> wait)
        |> ignore
        printfn "  => %s: %.1f µs a call" label (fcallOf ())
    commitsWith (TimeSpan.FromHours 1.0) "counter's commit, expiry not due"
    commitsWith TimeSpan.Zero "counter's commit, expiry sliding"
    // The fold goal's case: 100 updates to a ~1 KB session, in one commit (CoreBenchmarks.changes: counters bumped, cart
    // quantities set, preferences added and dropped again), one commit to each of count / 10 sessions.
    let hundred = Patch.fold (CoreBenchmarks.toUpdates (CoreBenchmarks.changes 100))
    let oneKb = Patch.fold [ Update.set SessionPath.root (CoreBenchmarks.sessionOfSize 1) ]
    let kbSessions = max 1 (count / 10)
    for i in 0 .. kbSessions - 1 do
        sessions.CommitAsync($"kb{i}", SessionChange(oneKb, created), creating, CancellationToken.None) |> wait
    measure server "100 updates' commit to ~1 KB" kbSessions (fun i ->
        sessions.CommitAsync($"kb{i}", SessionChange(hundred), existing, CancellationToken.None) |> wait)
    |> ignore
    printfn "  => 100 updates' commit to ~1 KB: %.1f µs a call" (fcallOf ())
    let increment =
        measure server "counter's commit" count (fun i -> sessions.CommitAsync(id i, SessionChange(counter), existing, CancellationToken.None) |> wait)
    let incrementCall = fcallOf ()
    // What a function costs with nothing in it, and with one call of a command.
    server.Execute(
        "FUNCTION",
        "LOAD",
        "REPLACE",
        "#!lua name=sesame_probe\nredis.register_function('sesame_probe_empty', function(keys, args) return 1 end)\nredis.register_function('sesame_probe_time', function(keys, args) redis.call('TIME') return 1 end)"
    )
    |> ignore
    let probe (name: string) = database.Execute("FCALL", [| box name; box 1; box (RedisKey "k") |]) |> ignore
    measure server "empty function" count (fun _ -> probe "sesame_probe_empty") |> ignore
    let trivial = fcallOf ()
    let struct (timeCost, _) = measure server "function calling TIME" count (fun _ -> probe "sesame_probe_time")
    let overhead = fcallOf () - trivial - timeCost
    printfn "a function call: %.2f µs; each redis.call besides its command: about %.2f µs" trivial overhead
    report "new session's commit" newSessionCall newSession trivial overhead
    // A load's HGETALL is sent beside its script, not from it: listed with the script's commands above, it is its own
    // call, with no redis.call overhead.
    report "load" loadCall load trivial overhead
    report "counter's commit" incrementCall increment trivial overhead
    // A hash's fields returned from a script, against HGETALL alone: 8 and 69 fields.
    for fields in [ 8; 69 ] do
        let key = RedisKey $"probe-hash-{fields}"
        database.HashSet(key, [| for f in 1..fields -> HashEntry(RedisValue $"cart\u0001items\u0002{f % 6}\u0001field{f:D2}", RedisValue(String('v', 12))) |])
        reset server
        for _ in 1..count do
            database.HashGetAll key |> ignore
        let alone = (stats server |> List.find (fun s -> s.Command = "hgetall")).MicrosecondsPerCall
        reset server
        for _ in 1..count do
            database.ScriptEvaluate("return redis.call('HGETALL', KEYS[1])", [| key |]) |> ignore
        let fromScript = stats server |> List.filter (fun s -> s.Command = "eval" || s.Command = "evalsha") |> List.maxBy _.Calls
        printfn "HGETALL of %d fields: %.2f µs alone, %.2f µs returned from a script" fields alone fromScript.MicrosecondsPerCall
    0
