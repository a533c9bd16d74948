/// What listing one user's sessions costs Redis when that user has many: `redis-user-page [sessions]` starts a
/// redis-server of its own, binds that many sessions to one user (sign-ins with no MaxSessionsPerUser, as a client
/// signing in again and again leaves them), then lists the user's first page of 100, a page of 100 from the middle,
/// every page of 100 in turn, and a first page over the index as an earlier Sesame wrote it (each entry's score the time
/// its session was bound, which the first listing sets to 0). Prints each listing's time and Redis's own time for its script calls (`SLOWLOG`, every
/// command logged): the longest call, which every other client of that Redis waits behind, and their sum.
module Sesame.Benchmarks.RedisUserListing

open System
open System.Diagnostics
open System.Threading
open System.Threading.Tasks
open Sesame
open Sesame.Redis
open StackExchange.Redis
open Sesame.Benchmarks.RedisBenchmarks

let private bindTo (user: string) = SessionChange(Patch.empty, Patch.fold [ Update.set (SessionPath.ofKeys [ SessionMeta.User ]) (Json.String user) ])

/// The script calls (FCALL, EVALSHA) SLOWLOG holds: their count, the longest and the sum, in µs.
let private scriptCalls (server: IServer) =
    let durations = [
        for entry in server.SlowlogGet 100000 do
            let command = (string entry.Arguments[0]).ToLowerInvariant()
            if command = "fcall" || command = "evalsha" then entry.Duration.TotalMicroseconds
    ]
    server.SlowlogReset()
    struct (durations.Length, (if durations.IsEmpty then 0.0 else List.max durations), List.sum durations)

/// `redis-user-page [sessions]`.
let run (count: int) =
    use redis = new LocalRedis([ "--slowlog-log-slower-than"; "0"; "--slowlog-max-len"; "100000" ])
    let settings = ConfigurationOptions.Parse redis.EndPoint
    settings.AllowAdmin <- true
    use connection = ConnectionMultiplexer.Connect settings
    let server = connection.GetServer redis.EndPoint
    use store = new RedisStore(connection, RedisStoreOptions(SweepInterval = TimeSpan.Zero), null)
    let sessions = store :> SessionStore
    let user = "heavy-user"
    let options = { IdleTimeout = TimeSpan.FromHours 1.0; MustExist = false; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }
    // Ids as Sesame gives a user's sessions: the user's shard character first.
    let ids = Array.init count (fun _ -> SessionId.createFor user)
    let clock = Stopwatch.StartNew()
    Parallel.ForEach(
        Seq.chunkBySize 64 ids,
        ParallelOptions(MaxDegreeOfParallelism = 4),
        fun (chunk: string[]) ->
            Task.WhenAll(chunk |> Array.map (fun id -> sessions.MoveAsync(null, id, bindTo user, options, CancellationToken.None))).GetAwaiter().GetResult()
            |> ignore
    )
    |> ignore
    printfn "redis-server %s; %d sessions bound to one user in %.1f s" (string server.Version) count clock.Elapsed.TotalSeconds
    let sorted = Array.sortWith (fun (a: string) b -> String.CompareOrdinal(a, b)) ids
    let page (after: string) =
        server.SlowlogReset()
        let clock = Stopwatch.StartNew()
        let listed = sessions.ListAsync({ UserId = user; After = after; Limit = 100 }, CancellationToken.None).GetAwaiter().GetResult()
        let elapsed = clock.Elapsed.TotalMilliseconds
        let struct (calls, longest, sum) = scriptCalls server
        struct (listed, elapsed, calls, longest, sum)
    for round in 1..3 do
        for label, after in [ "first page of 100", null; "a page of 100 from the middle", sorted[count / 2] ] do
            let struct (listed, elapsed, calls, longest, sum) = page after
            if listed.Sessions.Count <> 100 then failwith $"the page held {listed.Sessions.Count} sessions"
            printfn "round %d  %-30s %8.2f ms; %d script calls, the longest %8.0f µs, in all %8.0f µs" round label elapsed calls longest sum
    // An index as an earlier Sesame wrote it: each entry's score the time its session was bound. The first listing
    // sets them to 0, its most ids a call.
    let database = connection.GetDatabase()
    let index = RedisKey.op_Implicit (store.UserIndexKeyOf user)
    let bound = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()
    for chunk in Seq.chunkBySize 1000 ids do
        database.SortedSetAdd(index, chunk |> Array.mapi (fun i id -> SortedSetEntry(RedisValue.op_Implicit id, float (bound + int64 i)))) |> ignore
    let struct (listed, elapsed, calls, longest, sum) = page null
    if listed.Sessions.Count <> 100 || listed.Sessions[0].Id <> sorted[0] then failwith "the first page after the scores were set to 0 is wrong"
    printfn
        "first page of 100 over an index an earlier Sesame wrote  %8.2f ms; %d script calls, the longest %8.0f µs, in all %8.0f µs"
        elapsed
        calls
        longest
        sum
    // Every page in turn.
    let clock = Stopwatch.StartNew()
    let mutable after = null
    let mutable pages, listed, calls, longest, sum = 0, 0, 0, 0.0, 0.0
    server.SlowlogReset()
    let mutable more = true
    while more do
        let page = sessions.ListAsync({ UserId = user; After = after; Limit = 100 }, CancellationToken.None).GetAwaiter().GetResult()
        let struct (c, l, s) = scriptCalls server
        pages <- pages + 1
        listed <- listed + page.Sessions.Count
        calls <- calls + c
        longest <- max longest l
        sum <- sum + s
        after <- page.Next
        more <- not (isNull after)
    if listed <> count then failwith $"the pages listed {listed} of {count} sessions"
    printfn
        "every page of 100 (%d pages, %d sessions): %.2f s; %d script calls, the longest %.0f µs, in all %.0f ms"
        pages
        listed
        clock.Elapsed.TotalSeconds
        calls
        longest
        (sum / 1000.0)
    0
