/// What Redis ends by itself, and what the store makes of it: expiry found by the sweep and reported once,
/// eviction under maxmemory, and commits that wait for replicas.
module Sesame.Redis.Tests.RedisExpiryTests

open System
open System.Threading
open System.Threading.Tasks
open Expecto
open Sesame
open Sesame.Redis
open Sesame.Redis.Tests.RedisModel
open Sesame.Redis.Tests.RedisServer
open Sesame.Tests.StoreContract
open Sesame.Tests.Helpers
open StackExchange.Redis

let private options = { IdleTimeout = TimeSpan.FromMinutes 10.0; MustExist = false; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }

let private bindTo (user: string) = SessionChange(Patch.empty, Patch.fold [ Update.set (SessionPath.ofKeys [ SessionMeta.User ]) (Json.String user) ])

let private setN (n: int) = SessionChange(Patch.fold [ Update.set (SessionPath.parse "n") (Json.int64 (int64 n)) ])

/// A store that does not sweep by itself: the tests sweep when they mean to.
let private storeOn (connection: IConnectionMultiplexer) (prefix: string) =
    new RedisStore(connection, RedisStoreOptions(KeyPrefix = prefix, SweepInterval = TimeSpan.Zero), null)

/// Polls until the condition holds (a guard against a hang, not a timing assertion).
let private eventually (what: string) (condition: unit -> Task<bool>) = task {
    let deadline = DateTime.UtcNow.AddSeconds 30.0
    let mutable holds = false
    while not holds do
        let! now = condition ()
        holds <- now
        if not holds then
            if DateTime.UtcNow > deadline then failtestf "Waited 30 s for %s." what
            do! Task.Delay 50
}

/// The exception the work fails with, which must be a 'error.
let private failsWith<'error when 'error :> exn> (work: unit -> Task) : Task<'error> = task {
    try
        do! work ()
        return failtestf "Expected %s, but nothing was thrown." typeof<'error>.Name
    with
    | :? 'error as e -> return e
    | e -> return failtestf "Expected %s, but %s was thrown: %s" typeof<'error>.Name (e.GetType().Name) e.Message
}

let private info (connection: IConnectionMultiplexer) (server: RedisServer) (section: string) (field: string) = task {
    let! sections = connection.GetServer(server.EndPoint).InfoAsync(RedisValue.op_Implicit section, CommandFlags.None)
    return sections |> Seq.collect id |> Seq.tryFind (fun (KeyValue(k, _)) -> k = field) |> Option.map (fun (KeyValue(_, v)) -> v)
}

/// A store whose refresh interval (10 s) is longer than the idle timeouts it is given: its caps alone make its loads
/// and commits slide.
let private cappedStore (connection: IConnectionMultiplexer) (prefix: string) =
    new RedisStore(connection, RedisStoreOptions(KeyPrefix = prefix, SweepInterval = TimeSpan.Zero, ExpiryRefreshInterval = TimeSpan.FromSeconds 10.0), null)

/// Loads the session `count` times, `every` ms apart, expecting to find it each time.
let private readWhileAlive (store: RedisStore) (id: string) (idle: TimeSpan) (count: int) (every: int) : Task = task {
    for i in 1..count do
        let! loaded = store.LoadAsync(id, idle, CancellationToken.None)
        Expect.isNotNull loaded $"still there after {i} loads, {i * every} ms"
        do! Task.Delay every
}

[<Tests>]
let tests =
    testList "RedisExpiry" [
        testCaseTask "a session only read, its idle timeout shorter than the refresh interval, lives while it is read"
        <| fun () -> task {
            use server = new RedisServer()
            use! connection = server.ConnectAsync()
            // The interval is capped at half the timeout: without the cap, no load would ever slide this session's expiry.
            use store = cappedStore connection "short:"
            let idle = TimeSpan.FromSeconds 3.0
            let id = idFor (Random 11) null
            let! _ = store.CommitAsync(id, setN 1, { options with IdleTimeout = idle }, CancellationToken.None)
            // Loads for twice the timeout, a quarter of a second apart.
            do! readWhileAlive store id idle 24 250
        }

        testCaseTask "a session read after commits that did not slide its expiry lives while it is read"
        <| fun () -> task {
            use server = new RedisServer()
            use! connection = server.ConnectAsync()
            // Commits slide once half the timeout has run down (the interval's cap), and set the last-seen time every
            // time: a load that only looked at that time would let the expiry run down for a whole interval after it.
            use store = cappedStore connection "mixed:"
            let idle = TimeSpan.FromSeconds 1.0
            let id = idFor (Random 13) null
            for n in 1..3 do
                let! committed = store.CommitAsync(id, setN n, { options with IdleTimeout = idle }, CancellationToken.None)
                Expect.equal committed CommitResult.Committed $"commit {n}"
                do! Task.Delay 200
            // Loads for three times the timeout, 50 ms apart.
            do! readWhileAlive store id idle 60 50
        }

        testCaseTask
            "after every load a session has its idle timeout less the refresh interval to live, after a commit that did not slide it and a reply Redis held up"
        <| fun () -> task {
            use server = new RedisServer()
            use! connection = server.ConnectAsync()
            use! admin = server.ConnectAsync(allowAdmin = true)
            // The default refresh interval: a session may expire up to 1 s before its idle timeout has passed since its
            // last use, and no more.
            use store = storeOn connection "left:"
            let idle = TimeSpan.FromSeconds 4.0
            let least = idle.TotalMilliseconds - RedisStoreOptions().ExpiryRefreshInterval.TotalMilliseconds
            let id = idFor (Random 17) null
            let key = RedisKey.op_Implicit (store.KeyOf id)
            let clock = Diagnostics.Stopwatch.StartNew()
            let at (ms: int) = Task.Delay(max 0 (ms - int clock.ElapsedMilliseconds))
            let commit () = task {
                let! committed = store.CommitAsync(id, setN 1, { options with IdleTimeout = idle }, CancellationToken.None)
                Expect.equal committed CommitResult.Committed "committed"
            }
            // The load looks at the TTL no earlier than `from` (ms on the test's clock); whatever passed since then, up to
            // this test's own look, is taken off what the load must have left.
            let loadFrom (from: int64) (what: string) = task {
                let! loaded = store.LoadAsync(id, idle, CancellationToken.None)
                Expect.isNotNull loaded what
                let! left = admin.GetDatabase().KeyTimeToLiveAsync key
                let since = float (clock.ElapsedMilliseconds - from)
                Expect.isGreaterThanOrEqual left.Value.TotalMilliseconds (least - since - 5.0) $"{what}: the time it has to live"
            }
            let load (what: string) = loadFrom clock.ElapsedMilliseconds what
            do! commit ()
            do! load "after the first commit"
            // A commit 0.9 s after the last slide sets the last-seen time but does not slide (its window has not run
            // down); the loads after it must not take that time for a slide.
            do! at 900
            do! commit ()
            do! load "just after the commit that did not slide"
            do! at 1800
            do! load "1.8 s after the last slide, 0.9 s after the commit"
            // Just after a slide, so that the store guesses the next load's script not due and sends its read alone,
            // Redis holds that read up for 2 s from when it gets the pause: the store's reading of Redis's clock, taken
            // before it sent the read, is then 2 s behind when the hash comes back.
            let paused = clock.ElapsedMilliseconds
            do! admin.GetServer(server.EndPoint).ExecuteAsync("CLIENT", "PAUSE", "2000", "ALL") :> Task
            do! loadFrom (paused + 2000L) "after a read Redis held up for 2 s"
        }

        testCaseTask "a session committed under a shorter idle timeout, then read under the longer one, lives while it is read"
        <| fun () -> task {
            use server = new RedisServer()
            use! connection = server.ConnectAsync()
            use store = storeOn connection "shorter:"
            let longer, shorter = TimeSpan.FromSeconds 4.0, TimeSpan.FromSeconds 1.2
            let id = idFor (Random 24) null
            let! _ = store.CommitAsync(id, setN 1, { options with IdleTimeout = longer }, CancellationToken.None)
            let! _ = store.LoadAsync(id, longer, CancellationToken.None)
            // Time passes under the longer timeout (set by hand rather than waited for): 940 ms of it are left.
            let! _ = connection.GetDatabase().KeyExpireAsync(RedisKey.op_Implicit (store.KeyOf id), TimeSpan.FromMilliseconds 940.0)
            // A request under the shorter timeout (940 ms left is not due to slide under it) commits and reads; then
            // requests under the longer one read. A commit that set the last-seen time without sliding under another
            // timeout than the expiry's last would make those loads skip their script: it fails at about 940 ms.
            let! committed = store.CommitAsync(id, setN 2, { options with IdleTimeout = shorter }, CancellationToken.None)
            Expect.equal committed CommitResult.Committed "the commit under the shorter timeout"
            let! _ = store.LoadAsync(id, shorter, CancellationToken.None)
            do! readWhileAlive store id longer 12 200
        }

        testCaseTask "a session whose last-seen time is far ahead of Redis's clock, or whose expiry fields are garbled, lives while it is read"
        <| fun () -> task {
            use server = new RedisServer()
            use! connection = server.ConnectAsync()
            use store = cappedStore connection "skewed:"
            let idle = TimeSpan.FromSeconds 2.0
            let db = connection.GetDatabase()
            // Another writer's clock an hour ahead, and fields that are not numbers: each load must then run its script,
            // which slides the expiry when it is due, rather than trust the hash.
            let cases = [
                "#t", (fun () -> string (DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + 3_600_000L))
                "#t", (fun () -> "soon")
                "#x", (fun () -> "2000 ms")
                "#x", (fun () -> "2000 soon")
                "#x", (fun () -> $"2000 {DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + 3_600_000L}")
                "#x", (fun () -> $"2000 {DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 10_000L}")
            ]
            for (field, value), seed in List.zip cases [ 21; 22; 23; 24; 25; 26 ] do
                let id = idFor (Random seed) null
                let! _ = store.CommitAsync(id, setN 1, { options with IdleTimeout = idle }, CancellationToken.None)
                let! _ = store.LoadAsync(id, idle, CancellationToken.None)
                do! db.HashSetAsync(RedisKey.op_Implicit (store.KeyOf id), RedisValue.op_Implicit field, RedisValue.op_Implicit (value ())) :> Task
                // Loads for twice the timeout, 100 ms apart.
                do! readWhileAlive store id idle 40 100
        }

        testCaseTask "a session an earlier Sesame slid last, its timeout alone in the hash, lives while it is used"
        <| fun () -> task {
            use server = new RedisServer()
            use! connection = server.ConnectAsync()
            use store = cappedStore connection "earlier:"
            let idle = TimeSpan.FromSeconds 2.0
            let db = connection.GetDatabase()
            let id = idFor (Random 31) null
            let key = RedisKey.op_Implicit (store.KeyOf id)
            let! _ = store.CommitAsync(id, setN 1, { options with IdleTimeout = idle }, CancellationToken.None)
            let! _ = store.LoadAsync(id, idle, CancellationToken.None)
            // As a rolling upgrade can leave it: an earlier Sesame slid the expiry last, writing the timeout alone to '#x'
            // (no deadline), and nobody used the session since, until less than 450 ms of the key are left.
            let slidByEarlierSesame () = task {
                let! left = db.KeyTimeToLiveAsync key
                let mutable left = left
                while left.Value > TimeSpan.FromMilliseconds 450.0 do
                    do! Task.Delay 20
                    let! now = db.KeyTimeToLiveAsync key
                    left <- now
                do! db.HashSetAsync(key, RedisValue.op_Implicit "#x", RedisValue.op_Implicit "2000") :> Task
            }
            do! slidByEarlierSesame ()
            do! readWhileAlive store id idle 20 100
            do! slidByEarlierSesame ()
            for i in 1..20 do
                let! result = store.CommitAsync(id, setN i, { options with IdleTimeout = idle; MustExist = true }, CancellationToken.None)
                Expect.equal result CommitResult.Committed $"still there after {i} commits, {i * 100} ms"
                do! Task.Delay 100
            // The slides wrote the deadline back.
            let! field = db.HashGetAsync(key, RedisValue.op_Implicit "#x")
            Expect.stringStarts (string field) "2000 " "the timeout and its deadline"
        }

        testCaseTask "the store's reading of Redis's clock is never behind Redis's clock"
        <| fun () -> task {
            use server = new RedisServer()
            use! connection = server.ConnectAsync()
            let db = connection.GetDatabase()
            // Redis's clock as the scripts read it (nowMs in Layout.lua).
            let redisNow () = task {
                let! reply = db.ScriptEvaluateAsync "local t = redis.call('TIME') return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)"
                return int64 reply
            }
            let clock = RedisClock()
            let behind = ResizeArray<int64>()
            for i in 1..3000 do
                // A load's script tells the clock now and then, stamped when it was sent.
                if i % 50 = 1 then
                    let sentAt = LocalClocks.Now()
                    let! now = redisNow ()
                    clock.Observe(now, sentAt)
                // A load's HGETALL is read by Redis, then the store reads the clock once the reply is in.
                let! read = redisNow ()
                match clock.TryNow() with
                | ValueSome now when now < read -> behind.Add(read - now)
                | _ -> ()
                if i % 3 = 0 then do! Task.Delay 1
            Expect.isEmpty behind $"readings behind Redis's clock, by up to {Seq.append [ 0L ] behind |> Seq.max} ms"
        }

        testCaseTask "a load sent once its window has run down slides the expiry"
        <| fun () -> task {
            use server = new RedisServer()
            use! connection = server.ConnectAsync()
            // A window of 203 ms, no whole number of a coarse clock's steps.
            use store =
                new RedisStore(
                    connection,
                    RedisStoreOptions(KeyPrefix = "edge:", SweepInterval = TimeSpan.Zero, ExpiryRefreshInterval = TimeSpan.FromMilliseconds 203.0),
                    null
                )
            let idle = TimeSpan.FromSeconds 2.0
            let db = connection.GetDatabase()
            let id = idFor (Random 41) null
            let key = RedisKey.op_Implicit (store.KeyOf id)
            let pttl () = task {
                let! reply = db.ExecuteAsync("PTTL", [| box key |])
                return int64 reply
            }
            let! _ = store.CommitAsync(id, setN 1, { options with IdleTimeout = idle }, CancellationToken.None)
            let! _ = store.LoadAsync(id, idle, CancellationToken.None)
            let skipped = ResizeArray<string>()
            for trial in 1..40 do
                // The key's TTL, read until it shows the window run down (by 0 or 1 ms more, in turn).
                let mutable before = 2000L
                while 2000L - before < 203L + int64 (trial % 2) do
                    let! left = pttl ()
                    before <- left
                    if 2000L - before < 188L then do! Task.Delay 5
                let! loaded = store.LoadAsync(id, idle, CancellationToken.None)
                Expect.isNotNull loaded $"trial {trial}: the session is there"
                let! after = pttl ()
                if after <= before then
                    skipped.Add $"trial {trial}: {before} ms left before the load, {after} after"
                    // Slid by a later load, for the next trial to start from the whole timeout.
                    let mutable left = after
                    while left <= before && left > 0L do
                        let! _ = store.LoadAsync(id, idle, CancellationToken.None)
                        let! now = pttl ()
                        left <- now
            Expect.isEmpty skipped "loads that skipped a slide that was due"
        }

        testCaseTask "with its primary down, a load fails: it never serves a replica's copy"
        <| fun () -> task {
            use primary = new RedisServer()
            use replica = new RedisServer(arguments = [ "--replicaof"; "127.0.0.1"; string primary.Port ])
            let settings = ConfigurationOptions.Parse $"{primary.EndPoint},{replica.EndPoint}"
            settings.AbortOnConnectFail <- false
            use! connection = ConnectionMultiplexer.ConnectAsync(settings, null)
            use store =
                new RedisStore(
                    connection,
                    RedisStoreOptions(
                        KeyPrefix = "primary:",
                        SweepInterval = TimeSpan.Zero,
                        OperationTimeout = TimeSpan.FromSeconds 2.0,
                        ExpiryRefreshInterval = TimeSpan.FromHours 1.0
                    ),
                    null
                )
            let id = idFor (Random 12) null
            let! _ = store.CommitAsync(id, setN 1, options, CancellationToken.None)
            use! onReplica = replica.ConnectAsync()
            do! eventually "the replica to have the session" (fun () -> onReplica.GetDatabase().KeyExistsAsync(RedisKey.op_Implicit (store.KeyOf id)))
            let! loaded = store.LoadAsync(id, options.IdleTimeout, CancellationToken.None)
            Expect.equal (Json.serialize loaded.Data) """{"n":1}""" "loaded from the primary"
            primary.Stop()
            // The replica may be behind the primary (a session signed out there still): a load must not read it.
            let! _ = failsWith<SessionStoreException>(fun () -> store.LoadAsync(id, options.IdleTimeout, CancellationToken.None) :> Task)
            ()
        }

        testCaseTask "on a Redis without FCALL, as before 7.0, every operation runs by EVALSHA with the same answers"
        <| fun () -> task {
            // The command renamed away: Redis answers "unknown command", as Redis 6 does.
            use server = new RedisServer(arguments = [ "--rename-command"; "FCALL"; "" ])
            use! connection = server.ConnectAsync()
            let logs = LogRecorder()
            use store = new RedisStore(connection, RedisStoreOptions(KeyPrefix = "old:", SweepInterval = TimeSpan.Zero), logs)
            let random = Random 7
            let anonymous, signedIn = idFor random null, idFor random "dora"
            let! committed = store.CommitAsync(anonymous, setN 1, options, CancellationToken.None)
            Expect.equal committed CommitResult.Committed "commit"
            Expect.isFalse store.UsesFunctions "the store switched to EVALSHA"
            // Redis's own answer ("unknown command 'FCALL', with args beginning with: ...") names the call's keys.
            let unavailable = logs.Of "RedisFunctionsUnavailable"
            Expect.equal unavailable.Length 1 "logged once"
            Expect.isFalse (unavailable.Head.Contains anonymous) "the log holds no session id"
            let! moved = store.MoveAsync(anonymous, signedIn, bindTo "dora", options, CancellationToken.None)
            Expect.equal moved CommitResult.Committed "a sign-in moves the session"
            let! loaded = store.LoadAsync(signedIn, options.IdleTimeout, CancellationToken.None)
            Expect.equal (Json.serialize loaded.Data) """{"n":1}""" "the moved session keeps its data"
            let! dora = SessionStore.listAllAsync (SessionQuery.OfUser "dora") CancellationToken.None store
            Expect.equal (dora |> List.map _.Id) [ signedIn ] "the user's listing"
            let! swept = store.SweepAsync CancellationToken.None
            Expect.equal swept 0 "a sweep runs and finds nothing ended"
            let! deleted = store.DeleteAsync(signedIn, CancellationToken.None)
            Expect.isTrue deleted "delete"
            let! gone = store.LoadAsync(signedIn, options.IdleTimeout, CancellationToken.None)
            Expect.isNull gone "deleted"
        }

        testCaseTask "two store instances sweeping at once report every expired session exactly once, with its user, and leave no index entry behind"
        <| fun () -> task {
            use server = new RedisServer()
            use! first = server.ConnectAsync(allowAdmin = true)
            use! second = server.ConnectAsync()
            use a = storeOn first "expiry:"
            use b = storeOn second "expiry:"
            let ended = EndedRecorder()
            a.Observer <- ended
            b.Observer <- ended
            let random = Random 1
            let ids = [ for i in 1..240 -> (if i % 3 = 0 then "ada" else null), idFor random (if i % 3 = 0 then "ada" else null) ]
            for user, id in ids do
                let! result =
                    if isNull user then
                        a.CommitAsync(id, setN 1, options, CancellationToken.None)
                    else
                        a.MoveAsync(null, id, bindTo user, options, CancellationToken.None)
                Expect.equal result CommitResult.Committed "created"
            let! _ = a.SweepAsync CancellationToken.None
            Expect.equal a.ActiveSessionCount (Nullable 240L) "the sweep counted the live sessions"
            // Now each is committed once more with an idle timeout of a millisecond: Redis expires them at once.
            for _, id in ids do
                let! result =
                    a.CommitAsync(
                        id,
                        SessionChange.Empty,
                        { options with IdleTimeout = TimeSpan.FromMilliseconds 1.0; MustExist = true },
                        CancellationToken.None
                    )
                Expect.equal result CommitResult.Committed "committed with a brief timeout"
            do!
                eventually "Redis to expire the sessions" (fun () -> task {
                    let! left = first.GetDatabase().KeyExistsAsync([| for _, id in ids -> RedisKey.op_Implicit (a.KeyOf id) |])
                    return left = 0L
                })
            let! counts = Task.WhenAll [| a.SweepAsync CancellationToken.None; b.SweepAsync CancellationToken.None |]
            Expect.equal (Array.sum counts) 240 "every session was reported by one of the two sweeps"
            let reported = ended.Ended
            Expect.equal (reported |> List.map (fun (id, _, _) -> id) |> List.sort) (ids |> List.map snd |> List.sort) "each exactly once"
            Expect.allEqual (reported |> List.map (fun (_, _, reason) -> reason)) SessionEndReason.Expired "as expired"
            for user, id in ids do
                let _, facts, _ = reported |> List.find (fun (reportedId, _, _) -> reportedId = id)
                Expect.equal facts (if isNull user then "{}" else """{"user":"ada"}""") "with the user it was bound to"
            let! ada = SessionStore.listAllAsync (SessionQuery.OfUser "ada") CancellationToken.None a
            Expect.isEmpty ada "the user's index is empty"
            let keys = first.GetServer(server.EndPoint).Keys(pattern = RedisValue.op_Implicit "expiry:*") |> Seq.toList
            Expect.isEmpty keys "no key is left: no session, no index, no expiry entry"
            Expect.equal a.ActiveSessionCount (Nullable 0L) "the last sweep counted none"
        }

        testCaseTask "a load of a session Redis expired reports it at once, and the sweep does not report it again"
        <| fun () -> task {
            use server = new RedisServer()
            use! connection = server.ConnectAsync()
            use store = storeOn connection "late:"
            let ended = EndedRecorder()
            store.Observer <- ended
            let id = idFor (Random 2) "bob"
            let! _ = store.MoveAsync(null, id, bindTo "bob", { options with IdleTimeout = TimeSpan.FromMilliseconds 100.0 }, CancellationToken.None)
            do!
                eventually "the session to expire" (fun () ->
                    connection.GetDatabase().KeyExistsAsync(RedisKey.op_Implicit (store.KeyOf id))
                    |> fun t -> t.ContinueWith(fun (t: Task<bool>) -> not t.Result))
            let! loaded = store.LoadAsync(id, options.IdleTimeout, CancellationToken.None)
            Expect.isNull loaded "gone"
            Expect.equal ended.Ended [ id, """{"user":"bob"}""", SessionEndReason.Expired ] "reported by the load"
            let! swept = store.SweepAsync CancellationToken.None
            Expect.equal swept 0 "not reported again"
            let! bob = SessionStore.listAllAsync (SessionQuery.OfUser "bob") CancellationToken.None store
            Expect.isEmpty bob "out of the user's index"
        }

        testCaseTask
            "under maxmemory with volatile-lru, a flood of new sessions evicts idle ones, each reported once; keys without a TTL (indexes, key ring) stay"
        <| fun () -> task {
            use server = new RedisServer(arguments = [ "--maxmemory"; "3mb"; "--maxmemory-policy"; "volatile-lru"; "--maxmemory-samples"; "10" ])
            use! connection = server.ConnectAsync(allowAdmin = true)
            use store = storeOn connection "flood:"
            let ended = EndedRecorder()
            store.Observer <- ended
            let db = connection.GetDatabase()
            // What the Data Protection key ring is: a list with no TTL.
            let! _ = db.ListRightPushAsync(RedisKey.op_Implicit "flood:DataProtection-Keys", RedisValue.op_Implicit "<key/>")
            let random = Random 3
            let user = idFor random "carol"
            let! _ = store.MoveAsync(null, user, bindTo "carol", options, CancellationToken.None)
            let padding = SessionChange(Patch.fold [ Update.set (SessionPath.parse "padding") (Json.String(String('x', 2000))) ])
            let flood = [ for _ in 1..3000 -> idFor random null ]
            let mutable refused = 0
            for id in flood do
                try
                    let! _ = store.CommitAsync(id, padding, options, CancellationToken.None)
                    ()
                with :? SessionStoreException ->
                    // Once every session left is needed... not here: eviction keeps room.
                    refused <- refused + 1
            let! evicted = info connection server "stats" "evicted_keys"
            Expect.isGreaterThan (evicted |> Option.map int64 |> Option.defaultValue 0L) 0L "Redis evicted sessions"
            Expect.equal refused 0 "no commit failed: eviction made room"
            let! ring = db.ListLengthAsync(RedisKey.op_Implicit "flood:DataProtection-Keys")
            Expect.equal ring 1L "the key ring (no TTL) was not evicted"
            let mutable gone = 0
            for id in user :: flood do
                let! session = store.LoadAsync(id, options.IdleTimeout, CancellationToken.None)
                if isNull session then gone <- gone + 1
            Expect.isGreaterThan gone 0 "some sessions are gone"
            let reported = ended.Ended
            Expect.equal reported.Length gone "every evicted session was reported, once"
            Expect.allEqual (reported |> List.map (fun (_, _, reason) -> reason)) SessionEndReason.Evicted "as evicted (its expiry had not passed)"
            let! swept = store.SweepAsync CancellationToken.None
            Expect.equal swept 0 "the sweep reports none of them again"
        }

        testCaseTask "while Redis refuses writes for want of replicas, sessions still load and list, and commits fail saying so"
        <| fun () -> task {
            use server = new RedisServer()
            use! connection = server.ConnectAsync()
            use! admin = server.ConnectAsync(allowAdmin = true)
            // Loads that slide the expiry write; this store's do not for an hour.
            use store =
                new RedisStore(
                    connection,
                    RedisStoreOptions(KeyPrefix = "replicas:", SweepInterval = TimeSpan.Zero, ExpiryRefreshInterval = TimeSpan.FromHours 1.0),
                    null
                )
            let id = idFor (Random 5) null
            let! _ = store.CommitAsync(id, setN 5, options, CancellationToken.None)
            do! admin.GetServer(server.EndPoint).ConfigSetAsync("min-replicas-to-write", RedisValue.op_Implicit 1)
            let! loaded = store.LoadAsync(id, options.IdleTimeout, CancellationToken.None)
            Expect.equal (Json.serialize loaded.Data) """{"n":5}""" "a session loads"
            let! all = SessionStore.listAllAsync (SessionQuery.All 100) CancellationToken.None store
            Expect.equal (all |> List.map _.Id) [ id ] "sessions list"
            let! e = throwsAsync<SessionStoreException>(fun () -> store.CommitAsync(id, setN 6, options, CancellationToken.None) :> Task)
            Expect.stringContains e.Message "NOREPLICAS" "a commit fails with Redis's reason"
            let! still = store.LoadAsync(id, options.IdleTimeout, CancellationToken.None)
            Expect.equal (Json.serialize still.Data) """{"n":5}""" "and stores nothing"
        }

        testCaseTask "under maxmemory with noeviction, a flood of new sessions is refused with an error that says why, and existing sessions keep their data"
        <| fun () -> task {
            use server = new RedisServer(arguments = [ "--maxmemory"; "3mb"; "--maxmemory-policy"; "noeviction" ])
            use! connection = server.ConnectAsync()
            use! admin = server.ConnectAsync(allowAdmin = true)
            use store = storeOn connection "full:"
            let random = Random 4
            let existing, other = idFor random null, idFor random null
            let! _ = store.CommitAsync(existing, setN 42, options, CancellationToken.None)
            let! _ =
                store.CommitAsync(
                    other,
                    SessionChange(Patch.fold [ Update.set (SessionPath.parse "n") (Json.int64 7L); Update.set (SessionPath.parse "drop") (Json.String "x") ]),
                    options,
                    CancellationToken.None
                )
            let padding = SessionChange(Patch.fold [ Update.set (SessionPath.parse "padding") (Json.String(String('x', 2000))) ])
            let mutable refusal = None
            let mutable created = 0
            while refusal.IsNone do
                try
                    let! _ = store.CommitAsync(idFor random null, padding, options, CancellationToken.None)
                    created <- created + 1
                    if created > 10000 then failtest "maxmemory never refused a write"
                with :? SessionStoreException as e ->
                    refusal <- Some e.Message
            Expect.isGreaterThan created 0 "sessions were created until memory ran out"
            Expect.stringContains refusal.Value "out of memory" "the error says why"
            Expect.stringContains refusal.Value "Nothing was stored" "and that nothing was stored"
            let! loaded = store.LoadAsync(existing, options.IdleTimeout, CancellationToken.None)
            Expect.equal (Json.serialize loaded.Data) """{"n":42}""" "an existing session keeps its data"
            // A new version of Sesame (a library Redis does not have) or a FUNCTION FLUSH while Redis is full: Redis
            // refuses FUNCTION LOAD, so these calls go as scripts.
            let! _ = admin.GetServer(server.EndPoint).ExecuteAsync("FUNCTION", [| box "FLUSH" |])
            let! loadedOther = store.LoadAsync(other, options.IdleTimeout, CancellationToken.None)
            Expect.equal (Json.serialize loadedOther.Data) """{"n":7,"drop":"x"}""" "a session loads without the library"
            // A load whose expiry is due to slide (always, with no refresh interval): its script, sent by EVALSHA, is
            // refused at its first write; the session is served as read, and its expiry slides at a later load.
            use sliding =
                new RedisStore(connection, RedisStoreOptions(KeyPrefix = "full:", SweepInterval = TimeSpan.Zero, ExpiryRefreshInterval = TimeSpan.Zero), null)
            let! loadedSliding = sliding.LoadAsync(other, options.IdleTimeout, CancellationToken.None)
            Expect.equal (Json.serialize loadedSliding.Data) """{"n":7,"drop":"x"}""" "a load due to slide its expiry, while Redis is full"
            let! all = SessionStore.listAllAsync (SessionQuery.All 500) CancellationToken.None store
            Expect.isTrue (all |> List.exists (fun s -> s.Id = other)) "listings work without the library"
            // A change that removes and sets: refused whole, nothing of it written.
            let change =
                SessionChange(Patch.fold [ Update.remove (SessionPath.parse "drop"); Update.set (SessionPath.parse "n") (Json.String(String('y', 4000))) ])
            let! e = throwsAsync<SessionStoreException>(fun () -> store.CommitAsync(other, change, options, CancellationToken.None) :> Task)
            Expect.stringContains e.Message "out of memory" "refused for memory"
            let! unchanged = store.LoadAsync(other, options.IdleTimeout, CancellationToken.None)
            Expect.equal (Json.serialize unchanged.Data) """{"n":7,"drop":"x"}""" "nothing of the refused change was written"
            // Ending a session frees memory, so it works while Redis is full.
            let! deleted = store.DeleteAsync(existing, CancellationToken.None)
            Expect.isTrue deleted "a session can be deleted while Redis is full"
            let! gone = store.LoadAsync(existing, options.IdleTimeout, CancellationToken.None)
            Expect.isNull gone "and is gone"
        }

        testCaseTask
            "with WaitForReplicas, a commit no replica acknowledged fails saying it was applied on the primary only; with a replica in sync, commits are acknowledged"
        <| fun () -> task {
            use primary = new RedisServer()
            use! connection = primary.ConnectAsync()
            use store =
                new RedisStore(
                    connection,
                    RedisStoreOptions(
                        KeyPrefix = "wait:",
                        SweepInterval = TimeSpan.Zero,
                        WaitForReplicas = 1,
                        WaitForReplicasTimeout = TimeSpan.FromMilliseconds 200.0
                    ),
                    null
                )
            let id = idFor (Random 5) null
            let! e = failsWith<SessionStoreException>(fun () -> store.CommitAsync(id, setN 1, options, CancellationToken.None) :> Task)
            Expect.stringContains e.Message "only 0 of the 1 replicas" "says how many acknowledged"
            Expect.stringContains e.Message "on the primary" "and that the primary applied it"
            use replica = new RedisServer(arguments = [ "--replicaof"; "127.0.0.1"; string primary.Port ])
            use! admin = primary.ConnectAsync(allowAdmin = true)
            do!
                eventually "the replica to be in sync" (fun () -> task {
                    let! state = info admin primary "replication" "slave0"
                    return state |> Option.exists (fun s -> s.Contains "state=online")
                })
            // A generous timeout now: a busy machine may take a while to deliver the replica's acknowledgement.
            use patient =
                new RedisStore(
                    connection,
                    RedisStoreOptions(
                        KeyPrefix = "wait:",
                        SweepInterval = TimeSpan.Zero,
                        WaitForReplicas = 1,
                        WaitForReplicasTimeout = TimeSpan.FromSeconds 10.0
                    ),
                    null
                )
            let! result = patient.CommitAsync(id, setN 2, options, CancellationToken.None)
            Expect.equal result CommitResult.Committed "acknowledged by the replica"
            use! onReplica = replica.ConnectAsync()
            let! copy = onReplica.GetDatabase().HashGetAllAsync(RedisKey.op_Implicit (store.KeyOf id))
            match RedisLayout.rebuildHash copy with
            | Ok(struct (data, _, _)) -> Expect.equal (Json.serialize data) """{"n":2}""" "the replica has the commit when it is acknowledged"
            | Error reason -> failtest $"the replica's copy is not a session: {reason}"
        }
    ]
