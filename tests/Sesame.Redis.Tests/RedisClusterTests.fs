/// The Redis store on a real Redis Cluster (three primaries, three replicas), started once for these tests:
/// the user index across slots, sign-ins racing at a user's limit, the memory store as a model, a slot resharding
/// and a primary killed while store instances commit.
module Sesame.Redis.Tests.RedisClusterTests

open System
open System.Collections.Concurrent
open System.Diagnostics
open System.Threading
open System.Threading.Tasks
open Expecto
open Sesame
open Sesame.Redis
open Sesame.Redis.Tests.RedisCluster
open Sesame.Redis.Tests.RedisModel
open Sesame.Tests.StoreContract
open StackExchange.Redis

let private cluster = RedisCluster.shared

/// A store of a test's own (its own key prefix) on the shared cluster connection.
let clusterStore (prefix: string) (configure: RedisStoreOptions -> unit) =
    let _, connection = cluster.Value
    let options = RedisStoreOptions(KeyPrefix = prefix, SweepInterval = TimeSpan.Zero)
    configure options
    new RedisStore(connection, options, null)

let private options = { IdleTimeout = TimeSpan.FromMinutes 10.0; MustExist = false; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }
let private existing = { options with MustExist = true }
let private increment = SessionChange(Patch.fold [ Update.Increment(SessionPath.parse "n", JsonNumber.Parse "1") ])

let private bindTo (user: string) = SessionChange(Patch.empty, Patch.fold [ Update.set (SessionPath.ofKeys [ SessionMeta.User ]) (Json.String user) ])

let private counterOf (session: StoredSession) =
    if isNull session then
        -1
    else
        match session.Data with
        | Json.Object o ->
            match o.Find "n" with
            | ValueSome(Json.Number n) -> int n.Text
            | _ -> -1
        | _ -> -1

/// An anonymous session id whose key is in another slot than the user's index.
let private anonymousElsewhere (connection: IConnectionMultiplexer) (store: RedisStore) (random: Random) (user: string) =
    let userSlot = connection.HashSlot(RedisKey.op_Implicit (store.UserIndexKeyOf user))
    let mutable id = idFor random null
    while connection.HashSlot(RedisKey.op_Implicit (store.KeyOf id)) = userSlot do
        id <- idFor random null
    id

/// Two writers per store commit increments to random sessions until stopped; counts what each session was
/// acknowledged, what failed, and what failed without knowing whether it was applied.
type private Writers(stores: RedisStore list, ids: string[]) =
    let acknowledged = ConcurrentDictionary<string, int>()
    let unknown = ConcurrentDictionary<string, int>()
    let mutable failures = 0
    let mutable running = true
    let clock = Stopwatch.StartNew()
    let mutable lastSuccess = 0L
    let mutable lastFailure = -1L
    let writers = [
        for store, seed in List.allPairs stores [ 1; 2 ] ->
            task {
                let random = Random(seed * 7919 + store.GetHashCode())
                while Volatile.Read &running do
                    let id = ids[random.Next ids.Length]
                    try
                        let! result = store.CommitAsync(id, increment, existing, CancellationToken.None)
                        if result <> CommitResult.Committed then failwithf "A commit of a live session gave %A." result
                        acknowledged.AddOrUpdate(id, 1, fun _ n -> n + 1) |> ignore
                        Volatile.Write(&lastSuccess, clock.ElapsedMilliseconds)
                    with :? SessionStoreException as e ->
                        Interlocked.Increment &failures |> ignore
                        Volatile.Write(&lastFailure, clock.ElapsedMilliseconds)
                        // Nothing was sent (no connection) or Redis refused it before running it: not applied.
                        if not (e.Message.Contains "was not sent") then unknown.AddOrUpdate(id, 1, fun _ n -> n + 1) |> ignore
                        do! Task.Delay 10
            }
    ]

    member _.Acknowledged(id: string) =
        match acknowledged.TryGetValue id with
        | true, n -> n
        | _ -> 0
    member _.Unknown(id: string) =
        match unknown.TryGetValue id with
        | true, n -> n
        | _ -> 0
    member _.Total = acknowledged.Values |> Seq.sum
    member _.Failures = failures
    member _.Elapsed = clock.ElapsedMilliseconds
    member _.LastSuccess = Volatile.Read &lastSuccess
    member _.LastFailure = Volatile.Read &lastFailure

    member _.StopAsync() : Task = task {
        Volatile.Write(&running, false)
        for writer in writers do
            do! writer
    }

/// What the sessions hold against what the writers were told: (acknowledged commits lost, sessions checked).
let private lostCommits (store: RedisStore) (writers: Writers) (ids: string seq) = task {
    let mutable lost = 0
    let mutable beyond = 0
    for id in ids do
        let! session = store.LoadAsync(id, options.IdleTimeout, CancellationToken.None)
        let stored = counterOf session
        let told = writers.Acknowledged id
        if stored < told then lost <- lost + (told - stored)
        // More than acknowledged only by commits whose answer was lost or that timed out.
        if stored > told + writers.Unknown id then
            failwithf "Session %s holds %d, but only %d commits were acknowledged and %d unknown." id stored told (writers.Unknown id)
        if stored > told then beyond <- beyond + (stored - told)
    return struct (lost, beyond)
}

/// Sessions with a counter at 0, spread over every shard.
let private seedSessions (store: RedisStore) (count: int) (seed: int) = task {
    let random = Random seed
    let ids = [| for _ in 1..count -> idFor random null |]
    for id in ids do
        let! result = store.CommitAsync(id, SessionChange(Patch.fold [ Update.set (SessionPath.parse "n") (Json.int64 0L) ]), options, CancellationToken.None)
        Expect.equal result CommitResult.Committed "seeded"
    return ids
}

/// The name of the sequenced group every test on the shared cluster belongs to (here and in the app tests): one
/// at a time, so that the failover and the resharding disturb no other test.
[<Literal>]
let ClusterGroup = "redis cluster"

[<Tests>]
let tests =
    testSequencedGroup ClusterGroup
    <| testList "RedisCluster" [
        // Ids as the contract makes them: a user's sessions in the user's shard, anonymous ones anywhere, so its
        // sign-ins move sessions across slots.
        storeContract "contract" (fun () -> clusterStore "contract:" ignore :> SessionStore)

        testCaseTask "a user's sessions, the user's index and the shard's sets share one slot, and a session's key holds its id's first character as hash tag"
        <| fun () -> task {
            let _, connection = cluster.Value
            use store = clusterStore "layout:" ignore
            let random = Random 1
            let fromId = anonymousElsewhere connection store random "ada"
            let! created =
                store.CommitAsync(fromId, SessionChange(Patch.fold [ Update.set (SessionPath.parse "cart") (Json.array []) ]), options, CancellationToken.None)
            Expect.equal created CommitResult.Committed "created"
            let toId = idFor random "ada"
            let! moved = store.MoveAsync(fromId, toId, bindTo "ada", options, CancellationToken.None)
            Expect.equal moved CommitResult.Committed "signed in from another slot"
            let slot (key: string) = connection.HashSlot(RedisKey.op_Implicit key)
            let key = store.KeyOf toId
            Expect.equal key $"layout:{{{toId[0]}}}:{toId}" "the session's key"
            let sameSlot = [ key; store.UserIndexKeyOf "ada"; $"layout:{{{toId[0]}}}expiry"; $"layout:{{{toId[0]}}}ids"; $"layout:{{{toId[0]}}}bound" ]
            for other in sameSlot do
                Expect.equal (slot other) (slot key) $"{other} is in the session's slot"
                let! exists = connection.GetDatabase().KeyExistsAsync(RedisKey.op_Implicit other)
                Expect.isTrue exists $"{other} exists"
            let! old = connection.GetDatabase().KeyExistsAsync(RedisKey.op_Implicit (store.KeyOf fromId))
            Expect.isFalse old "the old key is gone"
        }

        testCaseTask
            "a sign-in from an anonymous session in another slot carries every acknowledged commit under the old id over, and commits after it find the session gone"
        <| fun () -> task {
            let _, connection = cluster.Value
            use mover = clusterStore "gap:" ignore
            // A second instance on a connection of its own.
            let! otherConnection = (fst cluster.Value).ConnectAsync()
            use _ = otherConnection
            use writer = new RedisStore(otherConnection, RedisStoreOptions(KeyPrefix = "gap:", SweepInterval = TimeSpan.Zero), null)
            let random = Random 2
            for round in 1..20 do
                let user = $"user-{round}"
                let fromId = anonymousElsewhere connection mover random user
                let! _ = mover.CommitAsync(fromId, increment, options, CancellationToken.None)
                let mutable acknowledged = 1
                let mutable running = true
                let writing = task {
                    while running do
                        match! writer.CommitAsync(fromId, increment, existing, CancellationToken.None) with
                        | CommitResult.Committed -> acknowledged <- acknowledged + 1
                        | CommitResult.SessionGone -> running <- false
                        | other -> failwithf "A commit under the old id gave %A." other
                }
                do! Task.Delay(random.Next 4)
                let toId = idFor random user
                let! moved = mover.MoveAsync(fromId, toId, bindTo user, options, CancellationToken.None)
                do! writing
                Expect.equal moved CommitResult.Committed "moved"
                let! after = mover.LoadAsync(toId, options.IdleTimeout, CancellationToken.None)
                Expect.equal (counterOf after) acknowledged "every commit acknowledged under the old id is in the moved session, and none after it"
                Expect.equal (SessionMeta.userOf after.Meta) (Some user) "bound"
                let! old = mover.LoadAsync(fromId, options.IdleTimeout, CancellationToken.None)
                Expect.isNull old "the old id is gone"
                let! listed = SessionStore.listAllAsync (SessionQuery.OfUser user) CancellationToken.None mover
                Expect.equal [ for s in listed -> s.Id ] [ toId ] "the user's index"
        }

        testCaseTask
            "two sign-ins from other slots racing at a user's limit of one: with Refuse exactly one gets in; with EndLeastRecent both do and the first is ended"
        <| fun () -> task {
            let _, connection = cluster.Value
            use first = clusterStore "race:" ignore
            let! otherConnection = (fst cluster.Value).ConnectAsync()
            use _ = otherConnection
            use second = new RedisStore(otherConnection, RedisStoreOptions(KeyPrefix = "race:", SweepInterval = TimeSpan.Zero), null)
            let ended = EndedRecorder()
            first.Observer <- ended
            second.Observer <- ended
            let random = Random 3
            for round in 1..10 do
                let user = $"racer-{round}"
                let policy = if round % 2 = 0 then UserLimitPolicy.Refuse else UserLimitPolicy.EndLeastRecent
                let limit = { options with UserLimit = { MaxSessions = 1; Policy = policy } }
                let a, b = anonymousElsewhere connection first random user, anonymousElsewhere connection first random user
                let! _ = first.CommitAsync(a, increment, options, CancellationToken.None)
                let! _ = first.CommitAsync(b, increment, options, CancellationToken.None)
                let toA, toB = idFor random user, idFor random user
                let! results =
                    Task.WhenAll [|
                        first.MoveAsync(a, toA, bindTo user, limit, CancellationToken.None)
                        second.MoveAsync(b, toB, bindTo user, limit, CancellationToken.None)
                    |]
                let! listed = SessionStore.listAllAsync (SessionQuery.OfUser user) CancellationToken.None first
                Expect.equal listed.Length 1 $"round {round}: the user has one session"
                if policy = UserLimitPolicy.Refuse then
                    Expect.equal (results |> Array.filter ((=) CommitResult.Committed) |> Array.length) 1 $"round {round}: one sign-in got in"
                    Expect.equal (results |> Array.filter ((=) CommitResult.UserLimitReached) |> Array.length) 1 $"round {round}: one was refused"
                else
                    Expect.allEqual results CommitResult.Committed $"round {round}: both got in"
                    let endedIds = ended.Ended |> List.filter (fun (_, _, reason) -> reason = SessionEndReason.UserLimit) |> List.map (fun (id, _, _) -> id)
                    Expect.contains endedIds (if listed[0].Id = toA then toB else toA) $"round {round}: the other was ended for the limit"
        }

        testCaseTask "on the cluster, every answer of the Redis store is the memory store's"
        <| fun () -> task {
            // Loads refresh the last-seen time every time, as the memory store does, so "least recently seen" agrees.
            use store = clusterStore "model:" (fun o -> o.ExpiryRefreshInterval <- TimeSpan.Zero)
            let! counts = compare store 11 600
            for outcome in
                [
                    "commit Committed"
                    "commit SessionGone"
                    "commit ShapeChanged"
                    "commit PathConflictException"
                    "move Committed"
                    "move SessionGone"
                    "move UserLimitReached"
                    "listing"
                    "delete"
                ] do
                Expect.isGreaterThan (counts |> Map.tryFind outcome |> Option.defaultValue 0) 0 $"the walk went through {outcome}"
        }

        testCaseTask "a slot resharding while two store instances commit loses nothing and fails nothing"
        <| fun () -> task {
            let started, _ = cluster.Value
            use a = clusterStore "reshard:" ignore
            let! otherConnection = started.ConnectAsync()
            use _ = otherConnection
            use b = new RedisStore(otherConnection, RedisStoreOptions(KeyPrefix = "reshard:", SweepInterval = TimeSpan.Zero), null)
            let! ids = seedSessions a 200 4
            let writers = Writers([ a; b ], ids)
            do! Task.Delay 300
            let primaries = started.Nodes() |> List.filter (fun n -> n.IsPrimary && not n.Failed && n.Slots > 0)
            let before = writers.Total
            started.Reshard(primaries[0].Id, primaries[1].Id, 1000)
            let during = writers.Total - before
            do! Task.Delay 300
            do! writers.StopAsync()
            let! struct (lost, beyond) = lostCommits a writers ids
            Expect.isGreaterThan during 0 "commits went on during the resharding"
            Expect.equal writers.Failures 0 "no commit failed (MOVED and ASK are followed, TRYAGAIN retried)"
            Expect.equal lost 0 "no acknowledged commit is lost"
            Expect.equal beyond 0 "nothing was applied twice"
            started.WaitHealthy(TimeSpan.FromSeconds 30.0)
        }

        testCaseTask
            "a primary SIGKILLed while store instances commit: the store follows the failover with no restart; with WaitForReplicas no acknowledged commit is lost"
        <| fun () -> task {
            let started, _ = cluster.Value
            let connectionFor () = started.ConnectAsync()
            let! c1 = connectionFor ()
            let! c2 = connectionFor ()
            let! c3 = connectionFor ()
            let! c4 = connectionFor ()
            use _ = c1
            use _ = c2
            use _ = c3
            use _ = c4
            let storeOn (connection: IConnectionMultiplexer) (prefix: string) (replicas: int) =
                new RedisStore(
                    connection,
                    RedisStoreOptions(
                        KeyPrefix = prefix,
                        SweepInterval = TimeSpan.Zero,
                        OperationTimeout = TimeSpan.FromSeconds 3.0,
                        WaitForReplicas = replicas,
                        WaitForReplicasTimeout = TimeSpan.FromSeconds 2.0
                    ),
                    null
                )
            // Two instances without WAIT, two with WaitForReplicas = 1, all writing through the same failure.
            use asyncA = storeOn c1 "async:" 0
            use asyncB = storeOn c2 "async:" 0
            use waitA = storeOn c3 "wait:" 1
            use waitB = storeOn c4 "wait:" 1
            let! asyncIds = seedSessions asyncA 150 5
            let! waitIds = seedSessions waitA 150 6
            let asyncWriters = Writers([ asyncA; asyncB ], asyncIds)
            let waitWriters = Writers([ waitA; waitB ], waitIds)
            do! Task.Delay 500
            let victim = started.Nodes() |> List.find (fun n -> n.IsPrimary && not n.Failed && n.Slots > 0)
            let replica = started.Nodes() |> List.find (fun n -> n.PrimaryId = victim.Id)
            let killedAt = asyncWriters.Elapsed
            started.Server(victim.Port).Kill()
            // The replica takes the slots over (cluster-node-timeout 2 s, then an election).
            waitUntil (TimeSpan.FromSeconds 30.0) "the replica to take over" (fun () ->
                started.Nodes() |> List.exists (fun n -> n.Id = replica.Id && n.IsPrimary && n.Slots > 0))
            // Without WAIT the store follows the new primary by itself: commits succeed again.
            let recovered = asyncWriters.Total
            waitUntil (TimeSpan.FromSeconds 20.0) "commits without WAIT to succeed again" (fun () -> asyncWriters.Total > recovered + 300)
            // The new primary has no replica until the killed node comes back as its replica: then WAIT commits succeed again.
            started.Server(victim.Port).Start()
            started.WaitHealthy(TimeSpan.FromSeconds 40.0)
            let waitRecovered = waitWriters.Total
            waitUntil (TimeSpan.FromSeconds 20.0) "commits with WAIT to succeed again" (fun () -> waitWriters.Total > waitRecovered + 100)
            do! asyncWriters.StopAsync()
            do! waitWriters.StopAsync()
            let! struct (asyncLost, _) = lostCommits asyncA asyncWriters asyncIds
            let! struct (waitLost, _) = lostCommits waitA waitWriters waitIds
            let outage = asyncWriters.LastFailure - killedAt
            printfn
                "failover: without WAIT %d commits acknowledged, %d failed, %d acknowledged lost (asynchronous replication), commits failing for %d ms after the kill; with WaitForReplicas = 1 %d acknowledged, %d failed, %d lost"
                asyncWriters.Total
                asyncWriters.Failures
                asyncLost
                outage
                waitWriters.Total
                waitWriters.Failures
                waitLost
            Expect.equal waitLost 0 "with WaitForReplicas, no acknowledged commit is lost"
            // Asynchronous replication may lose what the primary acknowledged in its last moments, at most what the
            // writers had in flight then; loopback replication keeps up, so in practice it is nothing.
            Expect.isLessThanOrEqual asyncLost 8 "without WAIT, at most the commits in flight at the kill are lost"
        }
    ]
