module Sesame.Redis.Tests.RedisStoreTests

open System
open System.Diagnostics
open System.Threading.Tasks
open Sesame
open Sesame.Redis
open Sesame.Redis.Tests.RedisServer
open Sesame.Tests
open Sesame.Tests.StoreContract
open StackExchange.Redis
open Xunit

/// One redis-server per test class, with an app connection and an admin one (INFO, SCRIPT FLUSH).
[<Sealed>]
type RedisFixture() =
    let server = new RedisServer()
    let connection = server.ConnectAsync().GetAwaiter().GetResult()
    let admin = server.ConnectAsync(allowAdmin = true).GetAwaiter().GetResult()

    member _.Server = server
    member _.Connection = connection
    member _.Admin = admin

    /// A store on the shared connection.
    member _.Store(?prefix: string) =
        new RedisStore(connection, RedisStoreOptions(KeyPrefix = defaultArg prefix "test:"), null)

    interface IDisposable with
        member _.Dispose() =
            connection.Dispose()
            admin.Dispose()
            (server :> IDisposable).Dispose()

/// The store contract, run against the Redis store and a real redis-server.
type RedisStoreContract(fixture: RedisFixture) =
    inherit StoreContractTests()
    override _.CreateStore() = fixture.Store "contract:" :> ISessionStore
    interface IClassFixture<RedisFixture>

/// Fails the test if the task has not finished within the guard: a hang is a failure, not a wait.
let private withinAsync (guard: TimeSpan) (work: Task) =
    task {
        let! first = Task.WhenAny(work, Task.Delay guard)
        Assert.True(obj.ReferenceEquals(first, work), $"The operation was still running after {guard}: it hangs.")
    }

let private load (store: ISessionStore) (id: string) = store.LoadAsync(id, creating.IdleTimeout, testToken ())

/// A small, seeded generator of the paths, values and updates that stress the stored form:
/// keys with marks, quotes, escapes and unicode; numbers beyond doubles; empty containers.
type private Generator(seed: int) =
    let random = Random seed
    let keys = [| "a"; "b"; "c.d"; ""; "ключ"; "𝄞"; "q\"uote"; "x\u0001y"; "back\\slash"; "n"; "\ud800"; "[0]" |]
    let numbers = [| "0"; "1"; "-2.5"; "1.10"; "9007199254740993"; "1e400"; "-0.0"; "3.14159265358979323846"; "1E-2"; "1e5000"; "1e-3000"; "1e4097" |]
    let increments = [| "1"; "0.01"; "-3"; "1e2"; "2.50"; "-9007199254740993" |]
    let strings = [| ""; "ada"; "héllo ✓ 𝄞"; "line\nbreak"; "\"quoted\""; "<tag>&"; "\u0000" |]

    member _.Pick(items: 'item[]) = items[random.Next items.Length]
    member this.Key() = this.Pick keys

    member this.Segment() =
        if random.Next 3 = 0 then Segment.Index(if random.Next 3 = 0 then random.Next 3 else 0) else Segment.Key(this.Key())

    member this.Path(atLeast: int) =
        Path.ofSegments [ for _ in 1 .. atLeast + random.Next(4 - atLeast) -> this.Segment() ]

    member this.Value(depth: int) : Json =
        match random.Next(if depth >= 3 then 6 else 9) with
        | 0 -> Json.Null
        | 1 -> Json.Bool(random.Next 2 = 0)
        | 2 -> Json.Number(JsonNumber.Parse(this.Pick numbers))
        | 3
        | 4 -> Json.String(this.Pick strings)
        | 5 -> if random.Next 2 = 0 then Json.array [] else Json.object []
        | 6
        | 7 -> Json.object [ for _ in 1 .. random.Next 4 -> this.Key(), this.Value(depth + 1) ]
        | _ -> Json.array [ for _ in 1 .. random.Next 4 -> this.Value(depth + 1) ]

    /// A path that mostly fits the tree: down through existing containers, then one step
    /// to an existing or new child of the right kind; now and then a random one.
    member this.PathIn(tree: Json) =
        if random.Next 4 = 0 then
            this.Path 1
        else
            let rec walk (node: Json) (segments: Segment list) =
                match node with
                | Json.Object o when o.Count > 0 && random.Next 3 > 0 ->
                    let key, child = o |> Seq.item (random.Next o.Count) |> fun (KeyValue(k, v)) -> k, v
                    walk child (Segment.Key key :: segments)
                | Json.Array items when items.Length > 0 && random.Next 3 > 0 ->
                    let i = random.Next items.Length
                    walk items[i] (Segment.Index i :: segments)
                | Json.Object _ -> Segment.Key(this.Key()) :: segments
                | Json.Array items -> Segment.Index(random.Next(items.Length + 1)) :: segments
                | _ when segments.IsEmpty -> [ Segment.Key(this.Key()) ]
                | _ -> segments
            Path.ofSegments (List.rev (walk tree []))

    member this.Update(tree: Json) =
        match random.Next 8 with
        | 0
        | 1
        | 2
        | 3 -> Update.set (if random.Next 40 = 0 then Path.root else this.PathIn tree) (this.Value 0)
        | 4
        | 5 -> Update.Increment(this.PathIn tree, JsonNumber.Parse(this.Pick increments))
        | _ ->
            match List.rev (this.PathIn tree).Segments with
            | Segment.Index _ :: above -> Update.remove (Path.ofSegments (List.rev (Segment.Key(this.Key()) :: above)))
            | segments -> Update.remove (Path.ofSegments (List.rev segments))

    member this.Patch(tree: Json) = Patch.fold [ for _ in 1 .. 1 + random.Next 3 -> this.Update tree ]
    member _.Next(n: int) = random.Next n

type RedisStoreTests(fixture: RedisFixture) =
    interface IClassFixture<RedisFixture>

    [<Fact>]
    member _.``every commit leaves exactly what applying its patch in memory gives, byte for byte, size included``() =
        task {
            let redis = fixture.Store "model:"
            let store = redis :> ISessionStore
            let db = fixture.Admin.GetDatabase()
            let generator = Generator 20240607
            let mutable committed, conflicts, tooLarge = 0, 0, 0
            for session in 1..8 do
                let id = $"model-{session}-{Guid.NewGuid():N}"
                let mutable model = None
                for _ in 1..100 do
                    let before = defaultArg model Json.emptyObject
                    let patch = generator.Patch before
                    // Now and then a limit close to the current size, which a commit may cross either way.
                    let limit = if generator.Next 5 = 0 then max 2 (int (JsonSize.utf8Length before) - 20 + generator.Next 50) else 1 <<< 20
                    let options = { creating with MaxSizeBytes = limit }
                    match Patch.tryApply patch before with
                    | Error expected ->
                        let! e = Assert.ThrowsAsync<PathConflictException>(fun () -> store.CommitAsync(id, patch, options, testToken ()) :> Task)
                        Assert.Equal(expected.Message, e.Message)
                        Assert.Equal(expected.Path, e.Path)
                        conflicts <- conflicts + 1
                    | Ok after when JsonSize.utf8Length after > int64 limit ->
                        let! e = Assert.ThrowsAsync<SessionTooLargeException>(fun () -> store.CommitAsync(id, patch, options, testToken ()) :> Task)
                        Assert.Equal(JsonSize.utf8Length after, e.Size)
                        tooLarge <- tooLarge + 1
                    | Ok after ->
                        let! result = store.CommitAsync(id, patch, options, testToken ())
                        Assert.Equal(CommitResult.Committed, result)
                        model <- Some after
                        committed <- committed + 1
                    let! loaded = load store id
                    Assert.Equal(model, loaded)
                    // Same keys in the same order, same number texts: the same JSON text.
                    Assert.Equal(model |> Option.map Json.serialize, loaded |> Option.map Json.serialize)
                    match model with
                    | Some tree ->
                        let! size = db.HashGetAsync(RedisKey.op_Implicit (redis.KeyOf id), RedisValue.op_Implicit "#s")
                        Assert.Equal(string (JsonSize.utf8Length tree), string size)
                    | None -> ()
            // The walk really went through every outcome.
            Assert.True(committed > 200 && conflicts > 50 && tooLarge > 20, $"committed {committed}, conflicts {conflicts}, too large {tooLarge}")
        }

    [<Fact>]
    member _.``key order survives, and setting an existing key keeps its place``() =
        task {
            let store = fixture.Store() :> ISessionStore
            let id = Guid.NewGuid().ToString "N"
            let! _ = store.CommitAsync(id, patchOf [ setAt "z" "{}"; setAt "a" "{\"y\":1,\"b\":2}"; setAt "m" "3" ], creating, testToken ())
            let! _ = store.CommitAsync(id, patchOf [ setAt "a" "[]"; setAt "z.q" "true"; Update.remove (path "m"); setAt "m" "4" ], creating, testToken ())
            let! loaded = load store id
            Assert.Equal(Some """{"z":{"q":true},"a":[],"m":4}""", loaded |> Option.map Json.serialize)
        }

    [<Fact>]
    member _.``a commit sets the idle timeout as the key's TTL and a load slides it``() =
        task {
            let store = fixture.Store()
            let id = Guid.NewGuid().ToString "N"
            let key = RedisKey.op_Implicit (store.KeyOf id)
            let db = fixture.Admin.GetDatabase()
            let! _ = (store :> ISessionStore).CommitAsync(id, patchOf [ setAt "a" "1" ], { creating with IdleTimeout = TimeSpan.FromMinutes 10.0 }, testToken ())
            let! ttl = db.KeyTimeToLiveAsync(key)
            Assert.True(ttl.HasValue && ttl.Value > TimeSpan.FromMinutes 9.0 && ttl.Value <= TimeSpan.FromMinutes 10.0, $"TTL {ttl}")
            let! _ = (store :> ISessionStore).LoadAsync(id, TimeSpan.FromHours 1.0, testToken ())
            let! slid = db.KeyTimeToLiveAsync(key)
            Assert.True(slid.HasValue && slid.Value > TimeSpan.FromMinutes 59.0, $"TTL after load {slid}")
        }

    [<Fact>]
    member _.``an idle timeout too long for Redis keeps the session without expiry``() =
        task {
            let store = fixture.Store()
            let id = Guid.NewGuid().ToString "N"
            let! result = (store :> ISessionStore).CommitAsync(id, patchOf [ setAt "a" "1" ], { creating with IdleTimeout = TimeSpan.MaxValue }, testToken ())
            Assert.Equal(CommitResult.Committed, result)
            let! ttl = fixture.Admin.GetDatabase().KeyTimeToLiveAsync(RedisKey.op_Implicit (store.KeyOf id))
            Assert.False(ttl.HasValue, $"TTL {ttl}")
            let! loaded = (store :> ISessionStore).LoadAsync(id, TimeSpan.MaxValue, testToken ())
            Assert.Equal(Some(json """{"a":1}"""), loaded)
        }

    [<Fact>]
    member _.``after SCRIPT FLUSH the store sends its scripts again and keeps working``() =
        task {
            let store = fixture.Store() :> ISessionStore
            let id = Guid.NewGuid().ToString "N"
            let! _ = store.CommitAsync(id, patchOf [ Update.increment (path "n") 1m ], creating, testToken ())
            let! _ = load store id
            do! fixture.Admin.GetServer(fixture.Server.EndPoint).ScriptFlushAsync(CommandFlags.None)
            let! before = fixture.Server.CommandCallsAsync fixture.Admin
            let! result = store.CommitAsync(id, patchOf [ Update.increment (path "n") 1m ], existing, testToken ())
            Assert.Equal(CommitResult.Committed, result)
            let! loaded = load store id
            Assert.Equal(Some(json """{"n":2}"""), loaded)
            // Both scripts were refused by hash (NOSCRIPT) and went through by text.
            let! after = fixture.Server.CommandCallsAsync fixture.Admin
            let calls name (stats: Map<string, int64>) = stats |> Map.tryFind name |> Option.defaultValue 0L
            Assert.True(calls "eval" after + calls "script|load" after - calls "eval" before - calls "script|load" before >= 2L, "The scripts were sent again by text.")
        }

    [<Fact>]
    member _.``a key that does not hold a session is an error for that session only``() =
        task {
            let store = fixture.Store()
            let sessions = store :> ISessionStore
            let db = fixture.Admin.GetDatabase()
            let text, garbage, broken, fine = "text-" + Guid.NewGuid().ToString "N", "garbage-" + Guid.NewGuid().ToString "N", "broken-" + Guid.NewGuid().ToString "N", "fine-" + Guid.NewGuid().ToString "N"
            let! _ = db.StringSetAsync(RedisKey.op_Implicit (store.KeyOf text), RedisValue.op_Implicit "hello")
            let! _ = db.HashSetAsync(RedisKey.op_Implicit (store.KeyOf garbage), RedisValue.op_Implicit "foo", RedisValue.op_Implicit "bar")
            // The right format version and size, but an object node whose member is missing.
            let! _ = db.HashSetAsync(RedisKey.op_Implicit (store.KeyOf broken), [| HashEntry(RedisValue.op_Implicit "#v", RedisValue.op_Implicit "1"); HashEntry(RedisValue.op_Implicit "#s", RedisValue.op_Implicit "7"); HashEntry(RedisValue.op_Implicit "", RedisValue.op_Implicit "O\u0001a\u00034") |])
            for id in [ text; garbage; broken ] do
                let! e = Assert.ThrowsAsync<SessionStoreException>(fun () -> load sessions id :> Task)
                Assert.Contains("not hold a valid Sesame session", e.Message)
                Assert.DoesNotContain(id, e.Message)
                let! _ = Assert.ThrowsAsync<SessionStoreException>(fun () -> sessions.CommitAsync(id, patchOf [ setAt "a.b" "1" ], creating, testToken ()) :> Task)
                ()
            let! untouched = db.StringGetAsync(RedisKey.op_Implicit (store.KeyOf text))
            Assert.Equal("hello", string untouched)
            let! result = sessions.CommitAsync(fine, patchOf [ setAt "a" "1" ], creating, testToken ())
            Assert.Equal(CommitResult.Committed, result)
            let! loaded = load sessions fine
            Assert.Equal(Some(json """{"a":1}"""), loaded)
        }

    [<Fact>]
    member _.``a commit is one Redis command and a load is one, and scripts touch only the session's key``() =
        task {
            use! connection = fixture.Server.ConnectAsync(clientName = "sesame-round-trips")
            let store = new RedisStore(connection, RedisStoreOptions(KeyPrefix = "rt:", ExpiryRefreshInterval = TimeSpan.Zero), null)
            let sessions = store :> ISessionStore
            let id = Guid.NewGuid().ToString "N"
            // Once, so Redis has both scripts (the first call after a start sends them by text).
            let! _ = sessions.CommitAsync(id, patchOf [ setAt "warm" "true" ], creating, testToken ())
            let! _ = load sessions id
            let! clients = fixture.Admin.GetServer(fixture.Server.EndPoint).ClientListAsync(CommandFlags.None)
            let storeClients = clients |> Array.filter (fun c -> c.Name = "sesame-round-trips") |> Array.map (fun c -> string c.Address) |> Set.ofArray
            Assert.NotEmpty storeClients
            use monitor = new RedisMonitor(fixture.Server.Port)
            let! _ = monitor.ReadUntilMarkerAsync()
            for i in 1..10 do
                let! _ = sessions.CommitAsync(id, patchOf [ setAt $"cart.items[{i - 1}]" $"{{\"sku\":{i}}}"; Update.increment (path "visits") 1m; Update.remove (path "warm") ], creating, testToken ())
                let! _ = load sessions id
                ()
            let! seen = monitor.ReadUntilMarkerAsync()
            let fromStore = seen |> List.filter (fun (client, _) -> storeClients.Contains client)
            let commandNames = fromStore |> List.map (fun (_, words) -> List.head words |> _.ToLowerInvariant())
            Assert.Equal<string list>(List.replicate 20 "evalsha", commandNames)
            let key = store.KeyOf id
            let inScripts = seen |> List.filter (fun (client, _) -> client = "lua")
            Assert.NotEmpty inScripts
            Assert.All(inScripts, fun (_, words) -> Assert.Equal(key, List.item 1 words))
        }

    [<Fact>]
    member _.``the key prefix names every session's key``() =
        task {
            let store = fixture.Store "app-one:"
            let id = Guid.NewGuid().ToString "N"
            let! _ = (store :> ISessionStore).CommitAsync(id, patchOf [ setAt "a" "1" ], creating, testToken ())
            let! exists = fixture.Admin.GetDatabase().KeyExistsAsync(RedisKey.op_Implicit ("app-one:" + id))
            Assert.True exists
            let! other = (fixture.Store "app-two:" :> ISessionStore).LoadAsync(id, creating.IdleTimeout, testToken ())
            Assert.Equal(None, other)
        }

/// Outages need a server of their own.
type RedisOutageTests() =

    [<Fact>]
    member _.``while Redis is down loads and commits fail with SessionStoreException within the timeout, and the same store works once it is back``() =
        task {
            use server = new RedisServer()
            use! connection = server.ConnectAsync()
            let timeout = TimeSpan.FromSeconds 1.0
            let store = new RedisStore(connection, RedisStoreOptions(OperationTimeout = timeout), null) :> ISessionStore
            let id = Guid.NewGuid().ToString "N"
            let! _ = store.CommitAsync(id, patchOf [ setAt "a" "1" ], creating, testToken ())
            server.Stop()
            let guard = timeout * 20.0
            let commit = Assert.ThrowsAsync<SessionStoreException>(fun () -> store.CommitAsync(id, patchOf [ setAt "b" "2" ], creating, testToken ()) :> Task)
            do! withinAsync guard commit
            let! failed = commit
            Assert.Contains("Redis", failed.Message)
            let loading = Assert.ThrowsAsync<SessionStoreException>(fun () -> load store id :> Task)
            do! withinAsync guard loading
            let! _ = loading
            server.Start()
            // StackExchange.Redis reconnects by itself; nothing is restarted on our side.
            let clock = Stopwatch.StartNew()
            let mutable result = None
            while result.IsNone && clock.Elapsed < TimeSpan.FromSeconds 30.0 do
                try
                    let! committed = store.CommitAsync(id, patchOf [ setAt "back" "true" ], creating, testToken ())
                    result <- Some committed
                with :? SessionStoreException ->
                    do! Task.Delay 200
            Assert.Equal(Some CommitResult.Committed, result)
            let! loaded = load store id
            // The restarted server kept nothing (no persistence): the commit made a new session.
            Assert.Equal(Some(json """{"back":true}"""), loaded)
        }

    [<Fact>]
    member _.``a store connected while Redis is down works once Redis is up``() =
        task {
            use server = new RedisServer()
            server.Stop()
            use! store = RedisStore.ConnectAsync($"{server.EndPoint},connectTimeout=500", RedisStoreOptions(OperationTimeout = TimeSpan.FromSeconds 1.0), null)
            let sessions = store :> ISessionStore
            let id = Guid.NewGuid().ToString "N"
            let! _ = Assert.ThrowsAsync<SessionStoreException>(fun () -> sessions.CommitAsync(id, patchOf [ setAt "a" "1" ], creating, testToken ()) :> Task)
            server.Start()
            let clock = Stopwatch.StartNew()
            let mutable result = None
            while result.IsNone && clock.Elapsed < TimeSpan.FromSeconds 30.0 do
                try
                    let! committed = sessions.CommitAsync(id, patchOf [ setAt "a" "1" ], creating, testToken ())
                    result <- Some committed
                with :? SessionStoreException ->
                    do! Task.Delay 200
            Assert.Equal(Some CommitResult.Committed, result)
        }
