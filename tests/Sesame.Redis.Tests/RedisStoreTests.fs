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
open Expecto

/// A redis-server of a test list's own, with an app connection and an admin one (INFO, SCRIPT FLUSH).
[<Sealed>]
type RedisFixture() =
    let server = new RedisServer()
    let connection = server.ConnectAsync().GetAwaiter().GetResult()
    let admin = server.ConnectAsync(allowAdmin = true).GetAwaiter().GetResult()

    member _.Server = server
    member _.Connection = connection
    member _.Admin = admin

    /// A store on the shared connection. It does not sweep: some tests watch every command the server runs.
    member _.Store(?prefix: string) = new RedisStore(connection, RedisStoreOptions(KeyPrefix = defaultArg prefix "test:", SweepInterval = TimeSpan.Zero), null)
    /// A store that holds leaves inline within `limit` bytes (0: none, format 2).
    member _.StoreInlining(prefix: string, limit: int) =
        new RedisStore(connection, RedisStoreOptions(KeyPrefix = prefix, SweepInterval = TimeSpan.Zero, InlineLimit = limit), null)

    /// A store that holds leaves inline within `limit` bytes, a fresh session id under `prefix` and that session's key.
    member this.InliningSession(prefix: string, limit: int) =
        let store = this.StoreInlining(prefix + ":", limit)
        let id = prefix + "-" + Guid.NewGuid().ToString "N"
        struct (store, id, RedisKey.op_Implicit (store.KeyOf id))

    interface IDisposable with
        member _.Dispose() =
            connection.Dispose()
            admin.Dispose()
            (server :> IDisposable).Dispose()

/// A server for one test list, started on first use and stopped when the run ends.
let private serverOfItsOwn () =
    lazy
        (let fixture = new RedisFixture()
         AppDomain.CurrentDomain.ProcessExit.Add(fun _ -> (fixture :> IDisposable).Dispose())
         fixture)

/// The store contract, run against the Redis store and a real redis-server, on real time (Redis expires keys itself).
let private contract =
    let server = serverOfItsOwn ()
    storeContract "contract" (fun () -> server.Value.Store "contract:" :> SessionStore)

/// The same contract with the scripts sent by EVALSHA, as the store runs them on a Redis without functions
/// (before 7.0) or whose ACL forbids them.
let private contractByEvalsha =
    let server = serverOfItsOwn ()
    storeContract "contract, scripts by EVALSHA" (fun () ->
        let store = server.Value.Store "evalsha:"
        store.UsesFunctions <- false
        store :> SessionStore)

/// Fails the test if the task has not finished within the guard: a hang is a failure, not a wait.
let private withinAsync (guard: TimeSpan) (work: Task) = task {
    let! first = Task.WhenAny(work, Task.Delay guard)
    Expect.isTrue (obj.ReferenceEquals(first, work)) ($"The operation was still running after {guard}: it hangs.")
}

let private load (store: SessionStore) (id: string) = store.LoadTreeAsync(id, creating.IdleTimeout, testToken ())

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

    member this.Segment() = if random.Next 3 = 0 then Segment.Index(if random.Next 3 = 0 then random.Next 3 else 0) else Segment.Key(this.Key())

    member this.Path(atLeast: int) = SessionPath.ofSegments [ for _ in 1 .. atLeast + random.Next(4 - atLeast) -> this.Segment() ]

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
            SessionPath.ofSegments (List.rev (walk tree []))

    member this.Update(tree: Json) =
        match random.Next 8 with
        | 0
        | 1
        | 2
        | 3 -> Update.set (if random.Next 40 = 0 then SessionPath.root else this.PathIn tree) (this.Value 0)
        | 4
        | 5 -> Update.Increment(this.PathIn tree, JsonNumber.Parse(this.Pick increments))
        | _ ->
            match List.rev (this.PathIn tree).Segments with
            | Segment.Index _ :: above -> Update.remove (SessionPath.ofSegments (List.rev (Segment.Key(this.Key()) :: above)))
            | segments -> Update.remove (SessionPath.ofSegments (List.rev segments))

    member this.Patch(tree: Json) = Patch.fold [ for _ in 1 .. 1 + random.Next 3 -> this.Update tree ]
    member _.Next(n: int) = random.Next n

/// Commits a counter and loads it, runs <c>flush</c> (SCRIPT FLUSH, FUNCTION FLUSH), then checks that the next commit
/// and load work; gives Redis's command counts just before that commit and after that load.
let private acrossFlush (server: RedisFixture) (store: SessionStore) (flush: IServer -> Task) = task {
    let id = Guid.NewGuid().ToString "N"
    let! _ = store.CommitAsync(id, changeOf [ Update.increment (path "n") 1m ], creating, testToken ())
    let! _ = load store id
    do! flush (server.Admin.GetServer(server.Server.EndPoint))
    let! before = server.Server.CommandCallsAsync server.Admin
    let! result = store.CommitAsync(id, changeOf [ Update.increment (path "n") 1m ], existing, testToken ())
    Expect.equal result CommitResult.Committed "result"
    let! loaded = load store id
    Expect.equal loaded (Some(json """{"n":2}""")) "loaded"
    let! after = server.Server.CommandCallsAsync server.Admin
    let calls name (stats: Map<string, int64>) = stats |> Map.tryFind name |> Option.defaultValue 0L
    return fun (name: string) -> calls name after - calls name before
}

/// Runs <c>test</c> on a connection as a new ACL user with the given rules (password "secret"), removed afterwards.
let private asAclUser (server: RedisFixture) (rules: string list) (test: ConnectionMultiplexer -> Task) = task {
    let admin = server.Admin.GetServer(server.Server.EndPoint)
    let user = "acl-" + Guid.NewGuid().ToString "N"
    let! _ = admin.ExecuteAsync("ACL", [| yield box "SETUSER"; yield box user; yield box "on"; yield box ">secret"; for rule in rules -> box rule |])
    try
        let settings = ConfigurationOptions.Parse server.Server.EndPoint
        settings.AbortOnConnectFail <- false
        settings.User <- user
        settings.Password <- "secret"
        use! connection = ConnectionMultiplexer.ConnectAsync(settings, null)
        do! test connection
    finally
        admin.Execute("ACL", [| box "DELUSER"; box user |]) |> ignore
}

/// A store on `connection` under its own key prefix, with the given expiry refresh interval and no sweeps of its own.
let private storeRefreshing (connection: IConnectionMultiplexer) (prefix: string) (interval: TimeSpan) =
    new RedisStore(connection, RedisStoreOptions(KeyPrefix = prefix, ExpiryRefreshInterval = interval, SweepInterval = TimeSpan.Zero), null)

/// The Redis store's own behaviours, on a server of their own. They run one at a time: some watch
/// the whole server (MONITOR, SCRIPT FLUSH, command counts), which other tests' commands would disturb.
let private storeTests =
    let server = serverOfItsOwn ()
    testSequencedGroup "redis store server"
    <| testList "store" [
        testCaseTask "every commit leaves exactly what applying its patch in memory gives, byte for byte, size included, whatever the inline limit"
        <| fun () -> task {
            // No leaf inline (format 2); a limit so short that leaves move in and out of their objects' nodes all the time;
            // the default.
            for inlineLimit in [ 0; 16; RedisStoreOptions.DefaultInlineLimit ] do
                let redis = server.Value.StoreInlining($"model{inlineLimit}:", inlineLimit)
                let store = redis :> SessionStore
                let db = server.Value.Admin.GetDatabase()
                let generator = Generator 20240607
                let mutable committed, conflicts, tooLarge = 0, 0, 0
                // How many sessions ended with a leaf inline, and the format versions they were left in.
                let mutable inlined = 0
                let versions = Collections.Generic.HashSet<string>()
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
                            let! e = throwsAsync<PathConflictException>(fun () -> store.CommitAsync(id, SessionChange patch, options, testToken ()) :> Task)
                            Expect.equal e.Message expected.Message "e.Message"
                            Expect.equal e.Path expected.Path "e.Path"
                            conflicts <- conflicts + 1
                        | Ok after when
                            (match after with
                             | Json.Object _ -> false
                             | _ -> true)
                            ->
                            // A session's tree is an object: a root set to anything else is refused, as every store refuses it.
                            let! _ = throwsAsync<ArgumentException>(fun () -> store.CommitAsync(id, SessionChange patch, options, testToken ()) :> Task)
                            ()
                        | Ok after when JsonSize.utf8Length after > int64 limit ->
                            let! e = throwsAsync<SessionTooLargeException>(fun () -> store.CommitAsync(id, SessionChange patch, options, testToken ()) :> Task)
                            Expect.equal e.Size (JsonSize.utf8Length after) "e.Size"
                            tooLarge <- tooLarge + 1
                        | Ok after ->
                            let! result = store.CommitAsync(id, SessionChange patch, options, testToken ())
                            Expect.equal result CommitResult.Committed "result"
                            model <- Some after
                            committed <- committed + 1
                        let! loaded = load store id
                        Expect.equal loaded model "loaded"
                        // Same keys in the same order, same number texts: the same JSON text.
                        Expect.equal (loaded |> Option.map Json.serialize) (model |> Option.map Json.serialize) "loaded |> Option.map Json.serialize"
                        match model with
                        | Some tree ->
                            let! size = db.HashGetAsync(RedisKey.op_Implicit (redis.KeyOf id), RedisValue.op_Implicit "#s")
                            Expect.equal (string size) (string (JsonSize.utf8Length tree)) "string size"
                            // No node holds a leaf inline past the limit (its hash would leave the listpack encoding).
                            if inlineLimit > 0 then
                                let! nodes = db.HashGetAllAsync(RedisKey.op_Implicit (redis.KeyOf id))
                                for e in nodes do
                                    if (string e.Value).Contains '\u0005' then
                                        Expect.isLessThanOrEqual (e.Value.GetByteCount()) inlineLimit $"a node with inline leaves, within {inlineLimit} bytes"
                        | None -> ()
                    let! fields = db.HashGetAllAsync(RedisKey.op_Implicit (redis.KeyOf id))
                    if fields |> Array.exists (fun e -> (string e.Value).Contains '\u0005') then inlined <- inlined + 1
                    for e in fields do
                        if string e.Name = "#v" then versions.Add(string e.Value) |> ignore
                // The walk really went through every outcome.
                Expect.isTrue
                    (committed > 200 && conflicts > 50 && tooLarge > 20)
                    ($"limit {inlineLimit}: committed {committed}, conflicts {conflicts}, too large {tooLarge}")
                if inlineLimit = 0 then
                    Expect.equal inlined 0 "no leaf inline with the limit 0"
                    Expect.equal (List.ofSeq versions) [ "2" ] "format 2 with the limit 0"
                else
                    Expect.isGreaterThan inlined 4 $"leaves inline within {inlineLimit} bytes"
                    Expect.equal (List.ofSeq versions) [ "3" ] $"format 3 within {inlineLimit} bytes"
        }

        testCaseTask "facts that grow past the size limit are refused by Redis itself, at their size to the byte; facts that shrink are not"
        <| fun () -> task {
            // Each request checks the facts it saw; concurrent requests could each add flash within the limit. So the
            // commit script measures the facts it leaves whenever a change grows them, as the memory store checks.
            let redis = server.Value.Store "facts:"
            let store = redis :> SessionStore
            let generator = Generator 20261204
            let mutable committed, tooLarge, shrunkPast = 0, 0, 0
            for session in 1..8 do
                let id = $"facts-{session}-{Guid.NewGuid():N}"
                let! _ = store.CommitAsync(id, changeOf [ setAt "a" "1" ], creating, testToken ())
                let mutable facts = Json.emptyObject
                for _ in 1..100 do
                    let patch = generator.Patch facts
                    let before = JsonSize.utf8Length facts
                    // Mostly a limit close to the facts' size, which a change may cross either way.
                    let limit = if generator.Next 4 = 0 then 1 <<< 20 else max 8 (int before - 20 + generator.Next 50)
                    let options = { existing with MaxSizeBytes = limit }
                    let change = SessionChange(Patch.empty, patch)
                    let commit () = store.CommitAsync(id, change, options, testToken ())
                    match Patch.tryApply patch facts with
                    // A change of the whole facts may name a user, which only a move does.
                    | Ok(Json.Object _ as after) when not change.BindsUser ->
                        let size = JsonSize.utf8Length after
                        if size > int64 limit && size > before then
                            let! e = throwsAsync<SessionTooLargeException>(fun () -> commit () :> Task)
                            Expect.equal e.Size size "e.Size: the facts' size after the change"
                            Expect.equal e.Limit limit "e.Limit"
                            tooLarge <- tooLarge + 1
                        else
                            let! result = commit ()
                            Expect.equal result CommitResult.Committed "result"
                            if size > int64 limit then shrunkPast <- shrunkPast + 1
                            facts <- after
                            committed <- committed + 1
                    | _ -> ()
                    let! loaded = store.LoadAsync(id, creating.IdleTimeout, testToken ())
                    Expect.equal (Json.serialize loaded.Meta) (Json.serialize facts) "the facts stored: all of an accepted change, none of a refused one"
                    Expect.equal (Json.serialize loaded.Data) """{"a":1}""" "the tree, untouched"
            Expect.isTrue (committed > 200 && tooLarge > 50 && shrunkPast > 5) ($"committed {committed}, too large {tooLarge}, shrunk while past {shrunkPast}")
        }

        testCaseTask "a new session's facts past the size limit are refused by Redis at their size to the byte, as a stored session's are"
        <| fun () -> task {
            // A new session's facts start empty, so the commit script counts them as they grow rather than reading them.
            let store = server.Value.Store "new-facts:" :> SessionStore
            let generator = Generator 20261205
            let mutable committed, tooLarge = 0, 0
            for _ in 1..300 do
                let id = $"new-facts-{Guid.NewGuid():N}"
                let patch = generator.Patch Json.emptyObject
                let change = SessionChange(Patch.empty, patch)
                match Patch.tryApply patch Json.emptyObject with
                | Ok(Json.Object _ as after) when not change.BindsUser ->
                    let size = JsonSize.utf8Length after
                    let limit = max 8 (int size - 10 + generator.Next 20)
                    let commit () = store.CommitAsync(id, change, { creating with MaxSizeBytes = limit }, testToken ())
                    if size > int64 limit then
                        let! e = throwsAsync<SessionTooLargeException>(fun () -> commit () :> Task)
                        Expect.equal e.Size size "e.Size: the facts' size after the change"
                        Expect.equal e.Limit limit "e.Limit"
                        let! loaded = load store id
                        Expect.isNone loaded "nothing stored for a refused new session"
                        tooLarge <- tooLarge + 1
                    else
                        let! result = commit ()
                        Expect.equal result CommitResult.Committed "result"
                        let! loaded = store.LoadAsync(id, creating.IdleTimeout, testToken ())
                        Expect.equal (Json.serialize loaded.Meta) (Json.serialize after) "the facts stored"
                        committed <- committed + 1
                | _ -> ()
            Expect.isTrue (committed > 50 && tooLarge > 50) ($"committed {committed}, too large {tooLarge}")
        }

        testCaseTask "a key set and removed in one request, sent as one step, does what the two updates do, and is refused as the set"
        <| fun () -> task {
            // The fold keeps such a key as a set of null then a remove, which the commit script gets as one step ('n').
            let redis = server.Value.Store "pair:"
            let store = redis :> SessionStore
            let added = Patch.fold [ setAt "x" "1"; setAt "a.b.c" "\"v\""; Update.remove (path "a.b.c") ]
            let commit (tree: string) (patch: Patch) = task {
                let id = Guid.NewGuid().ToString "N"
                let! _ = store.CommitAsync(id, changeOf [ Update.set SessionPath.Root (Json.parse tree) ], creating, testToken ())
                let before = Json.parse tree
                match Patch.tryApply patch before with
                | Ok after ->
                    let! result = store.CommitAsync(id, SessionChange patch, existing, testToken ())
                    Expect.equal result CommitResult.Committed $"{tree}: result"
                    let! loaded = load store id
                    Expect.equal (loaded |> Option.map Json.serialize) (Some(Json.serialize after)) $"{tree}: the tree"
                    let! size = server.Value.Admin.GetDatabase().HashGetAsync(RedisKey.op_Implicit (redis.KeyOf id), RedisValue.op_Implicit "#s")
                    Expect.equal (string size) (string (JsonSize.utf8Length after)) $"{tree}: its size"
                | Error expected ->
                    let! e = throwsAsync<PathConflictException>(fun () -> store.CommitAsync(id, SessionChange patch, existing, testToken ()) :> Task)
                    Expect.equal e.Message expected.Message $"{tree}: the conflict, as the set's"
                    let! loaded = load store id
                    Expect.equal (loaded |> Option.map Json.serialize) (Some(Json.serialize before)) $"{tree}: nothing written"
            }
            Expect.equal (added.Updates |> List.map (fun u -> u.GetType().Name)) [ "Set"; "Set"; "Remove" ] "the fold's set of null and remove"
            do! commit "{}" added
            do! commit """{"a":{"b":{"c":[1,2],"d":true}},"z":0}""" added
            do! commit """{"a":{"b":5}}""" added
            do! commit """{"a":[]}""" added
            let facts = Patch.fold [ setAt "f.g" "1"; Update.remove (path "f.g") ]
            let id = Guid.NewGuid().ToString "N"
            let! _ = store.CommitAsync(id, SessionChange(Patch.empty, facts), creating, testToken ())
            let! loaded = store.LoadAsync(id, creating.IdleTimeout, testToken ())
            Expect.equal (Json.serialize loaded.Meta) """{"f":{}}""" "the facts: the container made, the key gone"
        }

        testCaseTask "key order survives, and setting an existing key keeps its place"
        <| fun () -> task {
            let store = server.Value.Store() :> SessionStore
            let id = Guid.NewGuid().ToString "N"
            let! _ = store.CommitAsync(id, changeOf [ setAt "z" "{}"; setAt "a" "{\"y\":1,\"b\":2}"; setAt "m" "3" ], creating, testToken ())
            let! _ = store.CommitAsync(id, changeOf [ setAt "a" "[]"; setAt "z.q" "true"; Update.remove (path "m"); setAt "m" "4" ], creating, testToken ())
            let! loaded = load store id
            Expect.equal (loaded |> Option.map Json.serialize) (Some """{"z":{"q":true},"a":[],"m":4}""") "loaded |> Option.map Json.serialize"
        }

        testCaseTask "a commit sets the idle timeout as the key's TTL and a load slides it"
        <| fun () -> task {
            let store = server.Value.Store()
            let id = Guid.NewGuid().ToString "N"
            let key = RedisKey.op_Implicit (store.KeyOf id)
            let db = server.Value.Admin.GetDatabase()
            let! _ =
                (store :> SessionStore).CommitAsync(id, changeOf [ setAt "a" "1" ], { creating with IdleTimeout = TimeSpan.FromMinutes 10.0 }, testToken ())
            let! ttl = db.KeyTimeToLiveAsync(key)
            Expect.isTrue (ttl.HasValue && ttl.Value > TimeSpan.FromMinutes 9.0 && ttl.Value <= TimeSpan.FromMinutes 10.0) ($"TTL {ttl}")
            let! _ = (store :> SessionStore).LoadTreeAsync(id, TimeSpan.FromHours 1.0, testToken ())
            let! slid = db.KeyTimeToLiveAsync(key)
            Expect.isTrue (slid.HasValue && slid.Value > TimeSpan.FromMinutes 59.0) ($"TTL after load {slid}")
        }

        testCaseTask "an idle timeout too long for Redis keeps the session without expiry"
        <| fun () -> task {
            let store = server.Value.Store()
            let id = Guid.NewGuid().ToString "N"
            let! result = (store :> SessionStore).CommitAsync(id, changeOf [ setAt "a" "1" ], { creating with IdleTimeout = TimeSpan.MaxValue }, testToken ())
            Expect.equal result CommitResult.Committed "result"
            let! ttl = server.Value.Admin.GetDatabase().KeyTimeToLiveAsync(RedisKey.op_Implicit (store.KeyOf id))
            Expect.isFalse ttl.HasValue ($"TTL {ttl}")
            let! loaded = (store :> SessionStore).LoadTreeAsync(id, TimeSpan.MaxValue, testToken ())
            Expect.equal loaded (Some(json """{"a":1}""")) "loaded"
        }

        testCaseTask "increments at the edges of small integers give the memory store's exact text"
        <| fun () -> task {
            let store = server.Value.Store "edges:" :> SessionStore
            // Integers of up to 15 digits add as doubles in Commit's Lua; longer ones, and decimals, digit by digit.
            let cases = [
                "-0", "1"
                "-0", "-0"
                "0", "-0"
                "1", "-1"
                "-5", "3"
                "999999999999999", "1"
                "-999999999999999", "-999999999999999"
                "123456789012345", "-123456789012346"
                "9999999999999999", "1"
                "999999999999999", "0.5"
                "1e3", "1"
            ]
            for start, by in cases do
                let id = Guid.NewGuid().ToString "N"
                let n = path "n"
                let! _ = store.CommitAsync(id, changeOf [ Update.Set(n, Json.Number(JsonNumber.Parse start)) ], creating, testToken ())
                let increment = [ Update.Increment(n, JsonNumber.Parse by) ]
                let! _ = store.CommitAsync(id, changeOf increment, existing, testToken ())
                let expected = Patch.apply (Patch.fold increment) (Json.object [ "n", Json.Number(JsonNumber.Parse start) ])
                let! loaded = load store id
                Expect.equal (loaded |> Option.map Json.serialize) (Some(Json.serialize expected)) $"{start} + {by}"
        }

        testCaseTask "after FUNCTION FLUSH the store loads its library again and keeps working"
        <| fun () -> task {
            let! delta = acrossFlush server.Value (server.Value.Store()) (fun admin -> admin.ExecuteAsync("FUNCTION", [| box "FLUSH" |]) :> Task)
            Expect.equal (delta "function|load") 1L "the library was loaded once, by the first call that missed it"
            let admin = server.Value.Admin.GetServer(server.Value.Server.EndPoint)
            let! listed = admin.ExecuteAsync("FUNCTION", [| box "LIST"; box "LIBRARYNAME"; box RedisLibrary.name |])
            Expect.equal (RedisResult.op_Explicit listed: RedisResult[]).Length 1 "the server holds the library again"
        }

        testCaseTask "a user whose ACL forbids functions gets the same store by EVALSHA, and the log says so once"
        <| fun () ->
            asAclUser server.Value [ "~*"; "&*"; "+@all"; "-fcall"; "-function" ] (fun connection -> task {
                let logs = LogRecorder()
                let store = new RedisStore(connection, RedisStoreOptions(KeyPrefix = "acl:", SweepInterval = TimeSpan.Zero), logs)
                let sessions = store :> SessionStore
                let id = Guid.NewGuid().ToString "N"
                for _ in 1..3 do
                    let! result = sessions.CommitAsync(id, changeOf [ Update.increment (path "n") 1m ], creating, testToken ())
                    Expect.equal result CommitResult.Committed "result"
                let! loaded = load sessions id
                Expect.equal loaded (Some(json """{"n":3}""")) "every commit applied once"
                Expect.isFalse store.UsesFunctions "the store runs its scripts by EVALSHA"
                let unavailable = logs.Of "RedisFunctionsUnavailable"
                Expect.equal unavailable.Length 1 "logged once"
                Expect.stringContains unavailable.Head "ACL" "the log gives the reason"
                Expect.isFalse (unavailable.Head.Contains id) "and no session id (Redis's message names the call's keys)"
            })

        testCaseTask "a user whose ACL forbids the store's keys gets an error for that, and the store keeps its functions"
        <| fun () ->
            asAclUser server.Value [ "~other:*"; "&*"; "+@all" ] (fun connection -> task {
                let store = new RedisStore(connection, RedisStoreOptions(KeyPrefix = "acl:", SweepInterval = TimeSpan.Zero), null)
                let! e =
                    throwsAsync<SessionStoreException>(fun () ->
                        (store :> SessionStore).CommitAsync(Guid.NewGuid().ToString "N", changeOf [ setAt "a" "1" ], creating, testToken ()) :> Task)
                Expect.stringContains e.Message "NOPERM" "Redis's refusal is in the error"
                Expect.isTrue store.UsesFunctions "a refused key says nothing about functions"
            })

        testCaseTask "after SCRIPT FLUSH a store running its scripts by EVALSHA sends them again and keeps working"
        <| fun () -> task {
            let store = server.Value.Store()
            store.UsesFunctions <- false
            let! delta = acrossFlush server.Value store (fun admin -> admin.ScriptFlushAsync(CommandFlags.None))
            // Both scripts were refused by hash (NOSCRIPT) and went through by text.
            Expect.isTrue (delta "eval" + delta "script|load" >= 2L) "The scripts were sent again by text."
        }

        testCaseTask "at a user's limit, sessions seen in the same millisecond end in id order, byte by byte, the lowest first"
        <| fun () -> task {
            // As the memory, file and PostgreSQL stores break ties. Lua's < on strings follows the server's locale,
            // which may sort 'a' before 'B'; ids are compared by their bytes.
            let store = server.Value.Store "ties:"
            let sessions = store :> SessionStore
            let db = server.Value.Admin.GetDatabase()
            let recorder = EndedRecorder()
            sessions.Observer <- recorder
            for round in 1..12 do
                let user = $"ties-{round}-{Guid.NewGuid():N}"
                let bind = factsOf [ Update.set (SessionPath.ofKeys [ SessionMeta.User ]) (Json.string user) ]
                let signIn (limit: int) = task {
                    let id = SessionId.createFor user
                    let options = { creating with UserLimit = { MaxSessions = limit; Policy = UserLimitPolicy.EndLeastRecent } }
                    let! result = sessions.MoveAsync(null, id, bind, options, testToken ())
                    Expect.equal result CommitResult.Committed $"round {round}: signed in"
                    return id
                }
                let! tied = Task.WhenAll [ for _ in 1..3 -> signIn 0 ]
                let! later = signIn 0
                // Three seen in the same millisecond, one a second later.
                for id, seen in [ for id in tied -> id, "1000" ] @ [ later, "2000" ] do
                    let! _ = db.HashSetAsync(RedisKey.op_Implicit (store.KeyOf id), RedisValue.op_Implicit "#t", RedisValue.op_Implicit seen)
                    ()
                let before = recorder.EndedIds.Length
                let! _ = signIn 3
                let expected = tied |> Array.sortWith (fun a b -> String.CompareOrdinal(a, b)) |> Array.truncate 2 |> List.ofArray
                let ended = recorder.EndedIds |> List.skip before
                Expect.equal ended [ for id in expected -> id, SessionEndReason.UserLimit ] $"round {round}: ended and reported in id order"
        }

        testCaseTask "a key that does not hold a session is an error for that session only"
        <| fun () -> task {
            let store = server.Value.Store()
            let sessions = store :> SessionStore
            let db = server.Value.Admin.GetDatabase()
            let text, garbage, broken, fine =
                "text-" + Guid.NewGuid().ToString "N",
                "garbage-" + Guid.NewGuid().ToString "N",
                "broken-" + Guid.NewGuid().ToString "N",
                "fine-" + Guid.NewGuid().ToString "N"
            let! _ = db.StringSetAsync(RedisKey.op_Implicit (store.KeyOf text), RedisValue.op_Implicit "hello")
            let! _ = db.HashSetAsync(RedisKey.op_Implicit (store.KeyOf garbage), RedisValue.op_Implicit "foo", RedisValue.op_Implicit "bar")
            // The right format version and size, but an object node whose member is missing.
            let! _ =
                db.HashSetAsync(
                    RedisKey.op_Implicit (store.KeyOf broken),
                    [|
                        HashEntry(RedisValue.op_Implicit "#v", RedisValue.op_Implicit "1")
                        HashEntry(RedisValue.op_Implicit "#s", RedisValue.op_Implicit "7")
                        HashEntry(RedisValue.op_Implicit "", RedisValue.op_Implicit "O\u0001a\u00034")
                    |]
                )
            for id in [ text; garbage; broken ] do
                let! e = throwsAsync<SessionStoreException>(fun () -> load sessions id :> Task)
                Expect.stringContains e.Message "not hold a valid Sesame session" "e.Message"
                Expect.isFalse (e.Message.Contains id) "e.Message does not contain id"
                let! _ = throwsAsync<SessionStoreException>(fun () -> sessions.CommitAsync(id, changeOf [ setAt "a.b" "1" ], creating, testToken ()) :> Task)
                ()
            let! untouched = db.StringGetAsync(RedisKey.op_Implicit (store.KeyOf text))
            Expect.equal (string untouched) "hello" "string untouched"
            let! result = sessions.CommitAsync(fine, changeOf [ setAt "a" "1" ], creating, testToken ())
            Expect.equal result CommitResult.Committed "result"
            let! loaded = load sessions fine
            Expect.equal loaded (Some(json """{"a":1}""")) "loaded"
        }

        testCaseTask "a hash whose nodes are malformed is an error naming no session, and its nodes are left as they are"
        <| fun () -> task {
            let store = server.Value.Store()
            let sessions = store :> SessionStore
            let db = server.Value.Admin.GetDatabase()
            let entry (field: string) (value: string) = HashEntry(RedisValue.op_Implicit field, RedisValue.op_Implicit value)
            // A format version and size, the facts' empty root, and the data tree's nodes as given.
            let hash (nodes: (string * string) list) = [|
                yield entry "#v" "2"
                yield entry "#s" "2"
                yield entry "\u0004" "{}"
                for field, value in nodes do
                    yield entry field value
            |]
            let wide (repeated: bool) =
                let names = [ for i in 0..11 -> $"k{i}" ] @ (if repeated then [ "k3" ] else [])
                ("", "O" + String.concat "" [ for name in names -> $"\u0001{name}\u00035" ]) :: [ for i in 0..11 -> $"\u0001k{i}", "1" ]
            // Each shape, and the reason the error gives.
            let malformed = [
                "an object node with no members", [ "", "O" ], "an object node is malformed"
                "an object node whose first member has no mark", [ "", "Oa\u00034"; "\u0001a", "1" ], "an object node is malformed"
                "a member with no cost", [ "", "O\u0001a"; "\u0001a", "1" ], "an object member is malformed"
                "a member with an empty cost", [ "", "O\u0001a\u0003"; "\u0001a", "1" ], "an object member is malformed"
                "a member whose cost is not digits", [ "", "O\u0001a\u00034x"; "\u0001a", "1" ], "an object member is malformed"
                "a key named twice", [ "", "O\u0001a\u00034\u0001a\u00034"; "\u0001a", "1" ], "an object names a key twice"
                "a key named twice in a wide object", wide true, "an object names a key twice"
                // Refused before the repeated key's member is built (or the members after it read): a node naming one
                // key many times would otherwise build its subtree as many times.
                "a key named twice, then a malformed member", [ "", "O\u0001a\u00034\u0001a\u00034\u0001b"; "\u0001a", "1" ], "an object names a key twice"
                "a key escaped two ways", [ "", "O\u0001a\u00034\u0001\\0061\u00034"; "\u0001a", "1"; "\u0001\\0061", "2" ], "an object names a key twice"
                "a key with an invalid escape", [ "", "O\u0001a\\zz\u00034"; "\u0001a\\zz", "1" ], "a key has an invalid escape"
                "a member whose node is missing", [ "", "O\u0001a\u00034\u0001b\u00034"; "\u0001a", "1" ], "a container names a node that is missing"
                "an array node of no items", [ "", "O\u0001a\u00034"; "\u0001a", "A0" ], "an array node is malformed"
                "an array node whose length is not a number", [ "", "O\u0001a\u00034"; "\u0001a", "Ax" ], "an array node is malformed"
                // Refused before it makes room for them (16 GiB of references).
                "an array node of more items than there are nodes",
                [ "", "O\u0001a\u00034"; "\u0001a", "A2147483647"; "\u0001a\u00020", "1" ],
                "more items than the hash has nodes"
                "an array node whose item is missing",
                [ "", "O\u0001a\u00034"; "\u0001a", "A2"; "\u0001a\u00020", "1" ],
                "a container names a node that is missing"
                "a node no container names", [ "", "O\u0001a\u00034"; "\u0001a", "1"; "\u0001b", "2" ], "not part of the trees"
                "a leaf that is not JSON", [ "", "O\u0001a\u00034"; "\u0001a", "{x" ], "a leaf is not JSON"
                "a leaf that holds a container", [ "", "O\u0001a\u00034"; "\u0001a", "[1]" ], "a leaf holds a container"
                "an empty node", [ "", "O\u0001a\u00034"; "\u0001a", "" ], "a node is empty"
                // Leaves held inline (format 3), the entry's cost followed by \u0005 and the leaf's JSON text.
                "an inline leaf that is empty", [ "", "O\u0001a\u00034\u0005" ], "an inline leaf is empty"
                "an inline leaf that is not JSON", [ "", "O\u0001a\u00034\u0005{x" ], "a leaf is not JSON"
                "an inline leaf that holds a container", [ "", "O\u0001a\u00034\u0005[1]" ], "a leaf holds a container"
                "an inline leaf after a cost that is not digits", [ "", "O\u0001a\u00034x\u00051" ], "an object member is malformed"
                "an inline leaf with no cost", [ "", "O\u0001a\u0003\u00051" ], "an object member is malformed"
                "a member inline and with a node too", [ "", "O\u0001a\u00034\u00051"; "\u0001a", "1" ], "not part of the trees"
            ]
            for why, nodes, reason in malformed do
                let id = "malformed-" + Guid.NewGuid().ToString "N"
                let key = RedisKey.op_Implicit (store.KeyOf id)
                do! db.HashSetAsync(key, hash nodes)
                // A commit that reads a malformed entry is refused by the script, which writes nothing (a leaf's text it
                // replaces, it does not parse).
                if why.StartsWith "an inline leaf" && why <> "an inline leaf that is not JSON" && why <> "an inline leaf that holds a container" then
                    let! e = throwsAsync<SessionStoreException>(fun () -> sessions.CommitAsync(id, changeOf [ setAt "a" "2" ], existing, testToken ()) :> Task)
                    Expect.stringContains e.Message "not hold a valid Sesame session" $"{why}: the commit"
                let! before = db.HashGetAllAsync key
                let! e = throwsAsync<SessionStoreException>(fun () -> load sessions id :> Task)
                Expect.stringContains e.Message "not hold a valid Sesame session" why
                Expect.stringContains e.Message reason why
                Expect.isFalse (e.Message.Contains id) $"{why}: the message names no session"
                let! after = db.HashGetAllAsync key
                // Its nodes, that is: the load's script may note the session seen ('#t') and slide its expiry ('#x').
                let nodes (entries: HashEntry[]) =
                    entries |> Array.map (fun e -> string e.Name, string e.Value) |> Array.filter (fun (name, _) -> not (name.StartsWith '#')) |> Array.sort
                Expect.equal (nodes after) (nodes before) $"{why}: the nodes are left as they are"
            // The same shapes made valid are read: a wide object with each key once, an escaped key, an array.
            for nodes, expected in
                [
                    wide false, "{" + String.concat "," [ for i in 0..11 -> $"\"k{i}\":1" ] + "}"
                    [ "", "O\u0001a\\005c\u00035\u0001b\u00034"; "\u0001a\\005c", "true"; "\u0001b", "A2"; "\u0001b\u00020", "\"x\""; "\u0001b\u00021", "{}" ],
                    """{"a\\":true,"b":["x",{}]}"""
                    // Inline leaves beside a member with a node: a string with an escaped control character, an empty array.
                    [ "", "O\u0001a\u00034\u0005\"x\\u0001\"\u0001b\u00034\u0001c\u00034\u0005[]"; "\u0001b", "O\u0001d\u00034\u0005-1.50" ],
                    """{"a":"x\u0001","b":{"d":-1.50},"c":[]}"""
                ] do
                let id = "wellformed-" + Guid.NewGuid().ToString "N"
                do! db.HashSetAsync(RedisKey.op_Implicit (store.KeyOf id), hash nodes)
                let! loaded = load sessions id
                Expect.equal loaded (Some(json expected)) expected
        }

        testCaseTask "a store that holds leaves inline reads and changes format 2 sessions, and one with the limit 0 writes no leaf inline"
        <| fun () -> task {
            let plain = server.Value.StoreInlining("formats:", 0)
            let inlining = server.Value.StoreInlining("formats:", 64)
            let db = server.Value.Admin.GetDatabase()
            let id = "formats-" + Guid.NewGuid().ToString "N"
            let key = RedisKey.op_Implicit (plain.KeyOf id)
            let fieldsNow () = task {
                let! entries = db.HashGetAllAsync key
                return entries |> Array.map (fun e -> string e.Name, string e.Value) |> Map.ofArray
            }
            let holdsInline (fields: Map<string, string>) = fields |> Map.exists (fun _ value -> value.Contains '\u0005')
            let commitBy (store: RedisStore) (updates: Update list) = task {
                let! result = (store :> SessionStore).CommitAsync(id, changeOf updates, creating, testToken ())
                Expect.equal result CommitResult.Committed "committed"
            }
            let expectTree (store: RedisStore) (expected: string) = task {
                let! loaded = load store id
                Expect.equal (loaded |> Option.map Json.serialize) (Some expected) "the tree"
            }
            // Written by a store that inlines nothing: format 2, a field per leaf (what an earlier Sesame reads).
            do! commitBy plain [ Update.set SessionPath.root (json """{"user":{"name":"ada","visits":3},"tags":["a","b"],"n":1}""") ]
            let! fields = fieldsNow ()
            Expect.equal fields["#v"] "2" "format 2"
            Expect.isFalse (holdsInline fields) "no leaf inline"
            Expect.equal fields["\u0001user\u0001name"] "\"ada\"" "a leaf's own field"
            // Read and changed by a store that inlines: a leaf in a field of its own is incremented there, one set again
            // goes inline (its field gone), a new one goes inline, a removed one's field goes.
            do! expectTree inlining """{"user":{"name":"ada","visits":3},"tags":["a","b"],"n":1}"""
            do! commitBy inlining [ Update.increment (path "user.visits") 1m; setAt "user.name" "\"bob\""; setAt "m" "true"; Update.remove (path "n") ]
            do! expectTree inlining """{"user":{"name":"bob","visits":4},"tags":["a","b"],"m":true}"""
            let! fields = fieldsNow ()
            Expect.equal fields["#v"] "3" "format 3 once a store that inlines writes it"
            Expect.equal fields["\u0001user\u0001visits"] "4" "incremented in its own field"
            Expect.isFalse (fields.ContainsKey "\u0001user\u0001name") "set again inline: its field is gone"
            Expect.isFalse (fields.ContainsKey "\u0001n") "removed"
            Expect.stringContains fields[""] "\u0001m\u00034\u0005true" "a new leaf inline in the root's node"
            // The store that inlines nothing reads format 3, and moves a leaf it changes out to a field of its own.
            do! expectTree plain """{"user":{"name":"bob","visits":4},"tags":["a","b"],"m":true}"""
            do! commitBy plain [ setAt "user.name" "\"carol\"" ]
            do! expectTree plain """{"user":{"name":"carol","visits":4},"tags":["a","b"],"m":true}"""
            let! fields = fieldsNow ()
            Expect.equal fields["\u0001user\u0001name"] "\"carol\"" "out of its object's node"
            Expect.isFalse (fields["\u0001user"].Contains '\u0005') "the user's node holds no leaf"
            Expect.equal fields["#v"] "3" "a format 3 session stays format 3"
        }

        testCaseTask "a node written under a longer inline limit gives up its inline leaves once a store with a shorter one changes it"
        <| fun () -> task {
            let struct (wide, id, key) = server.Value.InliningSession("lowered", 64)
            let narrow = server.Value.StoreInlining("lowered:", 16)
            let db = server.Value.Admin.GetDatabase()
            let commitBy (store: RedisStore) (updates: Update list) (expected: string) = task {
                let! result = (store :> SessionStore).CommitAsync(id, changeOf updates, creating, testToken ())
                Expect.equal result CommitResult.Committed expected
                let! loaded = load store id
                Expect.equal (loaded |> Option.map Json.serialize) (Some expected) expected
                let! root = db.HashGetAsync(key, RedisValue.op_Implicit "")
                return string root
            }
            // Within 64 bytes: all three inline (25 bytes).
            let! root = commitBy wide [ Update.set SessionPath.root (json """{"a":1,"b":"bb","c":"cc"}""") ] """{"a":1,"b":"bb","c":"cc"}"""
            Expect.equal root "O\u0001a\u00034\u00051\u0001b\u00034\u0005\"bb\"\u0001c\u00034\u0005\"cc\"" "inline within 64"
            // Changing an inline leaf under 16 bytes: the node gives up all of them.
            let! root = commitBy narrow [ setAt "a" "2" ] """{"a":2,"b":"bb","c":"cc"}"""
            Expect.equal root "O\u0001a\u00034\u0001b\u00034\u0001c\u00034" "no leaf inline past 16"
            // A leaf with a field of its own beside inline ones in a node past the shorter limit: the same.
            let long = String('x', 70)
            let! root = commitBy wide [ Update.set SessionPath.root (json $"{{\"a\":\"{long}\",\"b\":1,\"c\":2}}") ] $"{{\"a\":\"{long}\",\"b\":1,\"c\":2}}"
            Expect.equal root "O\u0001a\u00034\u0001b\u00034\u00051\u0001c\u00034\u00052" "the long leaf in its own field, the others inline (17 bytes)"
            let! root = commitBy narrow [ setAt "a" "\"y\"" ] """{"a":"y","b":1,"c":2}"""
            Expect.equal root "O\u0001a\u00034\u0001b\u00034\u0001c\u00034" "no leaf inline past 16"
        }

        testCaseTask "an object node that a commit gives up its inline leaves for is refused when one of its entries is malformed"
        <| fun () -> task {
            // Giving up the inline leaves rebuilds the node from its entries: one it cannot read must not vanish.
            let struct (store, id, key) = server.Value.InliningSession("spill-malformed", 16)
            let sessions = store :> SessionStore
            let db = server.Value.Admin.GetDatabase()
            let entry (field: string) (value: string) = HashEntry(RedisValue.op_Implicit field, RedisValue.op_Implicit value)
            do! db.HashSetAsync(key, [| entry "#v" "3"; entry "#s" "13"; entry "\u0004" "{}"; entry "" "O\u0001a\u0003\u00051\u0001c\u00034\u00052" |])
            let! e =
                throwsAsync<SessionStoreException>(fun () -> sessions.CommitAsync(id, changeOf [ setAt "longkeyname" "1" ], existing, testToken ()) :> Task)
            Expect.stringContains e.Message "an object member is malformed" "refused"
            let! root = db.HashGetAsync(key, RedisValue.op_Implicit "")
            Expect.equal (string root) "O\u0001a\u0003\u00051\u0001c\u00034\u00052" "left as it was"
        }

        testCaseTask "a commit that reads a malformed entry of a format 3 node is refused, and leaves the hash as it was"
        <| fun () -> task {
            let db = server.Value.Admin.GetDatabase()
            let entry (field: string) (value: string) = HashEntry(RedisValue.op_Implicit field, RedisValue.op_Implicit value)
            let long = "longkeynamelongkeyname"
            // The root node (and other nodes), and a commit whose path reads the malformed entry.
            let cases = [
                "no cost in the last entry", [ "", "O\u0001a\u00034\u00051\u0001b\u0003"; "\u0001b", "1" ], [ setAt "b" "2" ]
                "a cost whose first character is not a digit", [ "", "O\u0001longkey\u0003x0"; "\u0001longkey", "1" ], [ setAt "longkey" "2" ]
                "the same, removed", [ "", "O\u0001longkey\u0003x0"; "\u0001longkey", "1" ], [ Update.remove (path "longkey") ]
                "an inline leaf that reads as an array node", [ "", "O\u0001a\u00034\u0005A2" ], [ Update.append (path "a") (json "1") ]
                "an inline leaf that reads as an object node", [ "", "O\u0001a\u00034\u0005O" ], [ setAt "a.x" "1" ]
                "an inline leaf with a field of its own too, spilled", [ "", "O\u0001a\u00034\u00051"; "\u0001a", "2" ], [ setAt long "1" ]
                "an inline leaf that reads as an array node, spilled", [ "", "O\u0001a\u00034\u0005A2" ], [ setAt long "1" ]
            ]
            for why, nodes, updates in cases do
                let struct (store, id, key) = server.Value.InliningSession("refused", 16)
                do! db.HashSetAsync(key, [| yield entry "#v" "3"; yield entry "#s" "7"; yield entry "\u0004" "{}"; for f, v in nodes -> entry f v |])
                let! before = db.HashGetAllAsync key
                let! e = throwsAsync<SessionStoreException>(fun () -> (store :> SessionStore).CommitAsync(id, changeOf updates, existing, testToken ()) :> Task)
                Expect.stringContains e.Message "not hold a valid Sesame session" why
                let! after = db.HashGetAllAsync key
                let sorted (entries: HashEntry[]) = entries |> Array.map (fun e -> string e.Name, string e.Value) |> Array.sort
                Expect.equal (sorted after) (sorted before) $"{why}: left as it was"
        }

        testCaseTask "a leaf goes inline while its object's node stays within the limit, and has a field of its own past it"
        <| fun () -> task {
            let struct (store, id, key) = server.Value.InliningSession("spill", 24)
            let sessions = store :> SessionStore
            let db = server.Value.Admin.GetDatabase()
            let step (updates: Update list) (expected: string) (root: string) (ownFields: string list) = task {
                let! result = sessions.CommitAsync(id, changeOf updates, creating, testToken ())
                Expect.equal result CommitResult.Committed expected
                let! loaded = load sessions id
                Expect.equal (loaded |> Option.map Json.serialize) (Some expected) expected
                let! entries = db.HashGetAllAsync key
                let fields = entries |> Array.map (fun e -> string e.Name, string e.Value) |> Map.ofArray
                Expect.equal fields[""] root $"{expected}: the root's node"
                let nodes =
                    fields |> Map.toList |> List.map fst |> List.filter (fun name -> name <> "" && not (name.StartsWith '#') && not (name.StartsWith '\u0004'))
                Expect.equal nodes ownFields $"{expected}: the fields of their own"
                let! size = db.HashGetAsync(key, RedisValue.op_Implicit "#s")
                Expect.equal (string size) (string expected.Length) $"{expected}: the size"
            }
            // 'O', then \u0001 a \u0003 4 (4 bytes), then \u0005 and the leaf: 24 bytes hold a leaf of up to 18.
            do! step [ setAt "a" "1" ] """{"a":1}""" "O\u0001a\u00034\u00051" []
            do! step [ Update.increment (path "a") 99999999999999999999m ] """{"a":100000000000000000000}""" "O\u0001a\u00034" [ "\u0001a" ]
            do! step [ setAt "a" "2" ] """{"a":2}""" "O\u0001a\u00034\u00052" []
            // Up to the byte: the node 24 bytes long holds it, 25 does not.
            do! step [ setAt "a" "\"0123456789abcdef\"" ] """{"a":"0123456789abcdef"}""" "O\u0001a\u00034\u0005\"0123456789abcdef\"" []
            do! step [ setAt "a" "\"0123456789abcdefg\"" ] """{"a":"0123456789abcdefg"}""" "O\u0001a\u00034" [ "\u0001a" ]
            // An empty object inline gets a node of its own when something is set below it; an empty array when appended to.
            do! step [ setAt "a" "{}"; setAt "b" "[]" ] """{"a":{},"b":[]}""" "O\u0001a\u00034\u0005{}\u0001b\u00034\u0005[]" []
            do! step [ setAt "a.c" "1" ] """{"a":{"c":1},"b":[]}""" "O\u0001a\u00034\u0001b\u00034\u0005[]" [ "\u0001a" ]
            do!
                step [ Update.append (path "b") (json "3") ] """{"a":{"c":1},"b":[3]}""" "O\u0001a\u00034\u0001b\u00034" [
                    "\u0001a"
                    "\u0001b"
                    "\u0001b\u00020"
                ]
            // A container set back to a leaf: its nodes go, the leaf inline; a key set and removed in one request.
            do!
                step
                    [ setAt "b" "null"; setAt "k.x" "1"; Update.remove (path "k.x") ]
                    """{"a":{"c":1},"b":null,"k":{}}"""
                    "O\u0001a\u00034\u0001b\u00034\u0005null\u0001k\u00034"
                    [ "\u0001a"; "\u0001k" ]
            do! step [ Update.remove (path "a"); Update.remove (path "k") ] """{"b":null}""" "O\u0001b\u00034\u0005null" []
            // A new member that makes the node longer than the limit: the node gives up its inline leaves, and a leaf
            // that does not fit beside the members' entries has a field of its own.
            do!
                step [ setAt "longkeyname" "[1]" ] """{"b":null,"longkeyname":[1]}""" "O\u0001b\u00034\u0001longkeyname\u000314" [
                    "\u0001b"
                    "\u0001longkeyname"
                    "\u0001longkeyname\u00020"
                ]
            do!
                step [ setAt "d" "1" ] """{"b":null,"longkeyname":[1],"d":1}""" "O\u0001b\u00034\u0001longkeyname\u000314\u0001d\u00034" [
                    "\u0001b"
                    "\u0001d"
                    "\u0001longkeyname"
                    "\u0001longkeyname\u00020"
                ]
        }

        testCaseTask "the deepest tree Sesame writes is read back, and a hash one level deeper is refused, whatever a thread's stack"
        <| fun () -> task {
            let store = server.Value.Store()
            let sessions = store :> SessionStore
            let db = server.Value.Admin.GetDatabase()
            // A chain of objects whose one key is k, a leaf 1 at the end: the leaf lies `depth` levels below the root.
            let chainText (depth: int) = String.replicate depth "{\"k\":" + "1" + String.replicate depth "}"
            let chainNodes (depth: int) = [|
                yield HashEntry(RedisValue.op_Implicit "#v", RedisValue.op_Implicit "2")
                yield HashEntry(RedisValue.op_Implicit "#s", RedisValue.op_Implicit (string (6 * depth + 1)))
                yield HashEntry(RedisValue.op_Implicit "\u0004", RedisValue.op_Implicit "{}")
                for level in 0 .. depth - 1 do
                    yield HashEntry(RedisValue.op_Implicit (String.replicate level "\u0001k"), RedisValue.op_Implicit "O\u0001k\u00034")
                yield HashEntry(RedisValue.op_Implicit (String.replicate depth "\u0001k"), RedisValue.op_Implicit "1")
            |]
            // The deepest change Update.validate lets through: a path of Json.MaxDepth segments to a number.
            let deepest = "deepest-" + Guid.NewGuid().ToString "N"
            let path = SessionPath.ofKeys (List.replicate Json.MaxDepth "k")
            let! result = sessions.CommitAsync(deepest, changeOf [ Update.set path (Json.int64 1L) ], creating, testToken ())
            Expect.equal result CommitResult.Committed "the deepest change is committed"
            let! loaded = load sessions deepest
            Expect.equal (loaded |> Option.map Json.serialize) (Some(chainText Json.MaxDepth)) "the deepest tree is read back"
            // One level more is refused.
            let deeper = "deeper-" + Guid.NewGuid().ToString "N"
            do! db.HashSetAsync(RedisKey.op_Implicit (store.KeyOf deeper), chainNodes (Json.MaxDepth + 1))
            let! e = throwsAsync<SessionStoreException>(fun () -> load sessions deeper :> Task)
            Expect.stringContains e.Message "the tree is too deep" "one level more"
            // On a thread with Windows' default stack of 1 MB the walk reads the deepest tree it accepts, and refuses a far
            // deeper one with its reason: a walk that went on would end the process.
            let rebuiltOn (entries: HashEntry[]) =
                let outcome = ref (Error "not run")
                let thread = Threading.Thread((fun () -> outcome.Value <- RedisLayout.rebuildHash entries), 1024 * 1024)
                thread.Start()
                thread.Join()
                outcome.Value
            match rebuiltOn (chainNodes Json.MaxDepth) with
            | Ok(struct (data, _, _)) -> Expect.equal (Json.serialize data) (chainText Json.MaxDepth) "read on a 1 MB stack"
            | Error reason -> failtest $"the deepest tree accepted was refused on a 1 MB stack: {reason}"
            match rebuiltOn (chainNodes 3_000) with
            | Error reason -> Expect.stringContains reason "the tree is too deep" "3,000 levels"
            | Ok _ -> failtest "a tree 3,000 levels deep was read"
        }

        testCaseTask "a listing reads no more of a session's facts than its hash holds, whatever length an array node claims"
        <| fun () -> task {
            let store = server.Value.Store "claims:"
            let sessions = store :> SessionStore
            let db = server.Value.Admin.GetDatabase()
            let id = "claims-" + Guid.NewGuid().ToString "N"
            let! _ = sessions.CommitAsync(id, changeOf [ setAt "a" "1" ], creating, testToken ())
            // Facts of one array that claims a million items and holds one.
            let key = RedisKey.op_Implicit (store.KeyOf id)
            let entry (field: string) (value: string) = HashEntry(RedisValue.op_Implicit field, RedisValue.op_Implicit value)
            do! db.HashSetAsync(key, [| entry "\u0004" "O\u0001x\u00034"; entry "\u0004\u0001x" "A1000000"; entry "\u0004\u0001x\u00020" "1" |])
            let! before = server.Value.Server.CommandCallsAsync server.Value.Admin
            let! e = throwsAsync<SessionStoreException>(fun () -> sessions.ListAsync({ UserId = null; After = null; Limit = 10 }, testToken ()) :> Task)
            Expect.stringContains e.Message "more items than the hash has nodes" "the listing says why"
            let! after = server.Value.Server.CommandCallsAsync server.Value.Admin
            let reads = (after.TryFind "hget" |> Option.defaultValue 0L) - (before.TryFind "hget" |> Option.defaultValue 0L)
            Expect.isLessThan reads 10L "the listing's script read the nodes there are, not a million"
            let! _ = sessions.DeleteAsync(id, testToken ())
            ()
        }

        testCaseTask "a commit is one Redis command and a load is one, and scripts touch only keys of the session's hash tag"
        <| fun () -> task {
            use! connection = server.Value.Server.ConnectAsync(clientName = "sesame-round-trips")
            let store = storeRefreshing connection "rt:" TimeSpan.Zero
            let sessions = store :> SessionStore
            let id = Guid.NewGuid().ToString "N"
            // Once, so Redis has the library (the first call after a start loads it).
            let! _ = sessions.CommitAsync(id, changeOf [ setAt "warm" "true" ], creating, testToken ())
            let! _ = load sessions id
            let! clients = server.Value.Admin.GetServer(server.Value.Server.EndPoint).ClientListAsync(CommandFlags.None)
            let storeClients = clients |> Array.filter (fun c -> c.Name = "sesame-round-trips") |> Array.map (fun c -> string c.Address) |> Set.ofArray
            Expect.isNonEmpty storeClients "storeClients"
            use monitor = new RedisMonitor(server.Value.Server.Port)
            let! _ = monitor.ReadUntilMarkerAsync()
            for i in 1..10 do
                let! _ =
                    sessions.CommitAsync(
                        id,
                        changeOf [ setAt $"cart.items[{i - 1}]" $"{{\"sku\":{i}}}"; Update.increment (path "visits") 1m; Update.remove (path "warm") ],
                        creating,
                        testToken ()
                    )
                let! _ = load sessions id
                ()
            let! seen = monitor.ReadUntilMarkerAsync()
            let fromStore = seen |> List.filter (fun (client, _) -> storeClients.Contains client)
            // StackExchange.Redis puts a SELECT before a command it does not know (FCALL) on a server with databases:
            // written with it, in the same round trip.
            let commandNames = fromStore |> List.map (fun (_, words) -> List.head words |> _.ToLowerInvariant()) |> List.filter (fun name -> name <> "select")
            // A load: HGETALL of the hash, then the script that slides its expiry, in the same round trip.
            Expect.equal (commandNames: string list) (List.replicate 10 [ "fcall"; "hgetall"; "fcall" ] |> List.concat) "commandNames"
            // The session's hash and its shard's expiry set: both under the hash tag of the id's first character.
            let tagged = $"rt:{{{id[0]}}}"
            let inScripts = seen |> List.filter (fun (client, words) -> client = "lua" && List.head words <> "TIME" && List.head words <> "time")
            Expect.isNonEmpty inScripts "inScripts"
            for _, words in inScripts do
                Expect.stringStarts (List.item 1 words) tagged $"{List.head words} touches a key of the session's hash tag"
            Expect.contains (inScripts |> List.map (fun (_, words) -> List.item 1 words)) (store.KeyOf id) "the session's key"
        }

        testCaseTask "a listing over thousands of ids whose sessions Redis evicted lists the live ones, each script call looking at a bounded number of ids"
        <| fun () -> task {
            use! connection = server.Value.Server.ConnectAsync(clientName = "sesame-stale-listing")
            use store = new RedisStore(connection, RedisStoreOptions(KeyPrefix = "stale:", SweepInterval = TimeSpan.Zero), null)
            let db = connection.GetDatabase()
            // 2,500 sessions of one shard, of which Redis loses all but the last 40 and about one in 100 before them
            // (their keys deleted behind the store's back, as eviction under maxmemory does: their ids stay in the shard's
            // set until the sweep), so that thousands of ids in a row have no session.
            let random = Random 31
            let ids = [
                for _ in 1..2500 -> "q" + String([| for _ in 1..31 -> "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[random.Next 64] |])
            ]
            for id in ids do
                let! _ = store.CommitAsync(id, changeOf [ setAt "n" "1" ], creating, testToken ())
                ()
            let inOrder = ids |> List.sortWith (fun a b -> String.CompareOrdinal(a, b))
            let live = inOrder |> List.indexed |> List.filter (fun (i, _) -> i >= 2460 || random.Next 100 = 0) |> List.map snd |> Set.ofList
            for id in ids do
                if not (live.Contains id) then
                    let! _ = db.KeyDeleteAsync(RedisKey.op_Implicit (store.KeyOf id))
                    ()
            let! clients = server.Value.Admin.GetServer(server.Value.Server.EndPoint).ClientListAsync(CommandFlags.None)
            let storeClients = clients |> Array.filter (fun c -> c.Name = "sesame-stale-listing") |> Array.map (fun c -> string c.Address) |> Set.ofArray
            use monitor = new RedisMonitor(server.Value.Server.Port)
            let! _ = monitor.ReadUntilMarkerAsync()
            let seen = ResizeArray<string>()
            let mutable after = null
            let mutable more = true
            while more do
                let! page = store.ListAsync({ UserId = null; After = after; Limit = 7 }, testToken ())
                seen.AddRange(page.Sessions |> Seq.map _.Id)
                after <- page.Next
                more <- not (isNull after)
            let! commands = monitor.ReadUntilMarkerAsync()
            Expect.sequenceEqual seen (live |> Seq.sortWith (fun a b -> String.CompareOrdinal(a, b))) "every live session once, in order"
            // The ids each script call looked at (one HMGET or EXISTS each), grouped under the call.
            let perCall = ResizeArray<int>()
            for client, words in commands do
                let command = (List.head words).ToLowerInvariant()
                if storeClients.Contains client && command = "fcall" then
                    perCall.Add 0
                elif client = "lua" && perCall.Count > 0 && (command = "hmget" || command = "exists") then
                    perCall[perCall.Count - 1] <- perCall[perCall.Count - 1] + 1
            Expect.isGreaterThan perCall.Count 3 "the stale ids took several calls"
            Expect.isLessThanOrEqual (Seq.max perCall) 1000 "no call looked at more than its most ids (1,000)"
        }

        testCaseTask "a user with thousands of sessions is listed page by page in id order, each script call reading at most 1,000 entries of the user's index"
        <| fun () -> task {
            use! connection = server.Value.Server.ConnectAsync(clientName = "sesame-user-listing")
            use store = new RedisStore(connection, RedisStoreOptions(KeyPrefix = "ul:", SweepInterval = TimeSpan.Zero), null)
            let sessions = store :> SessionStore
            let db = connection.GetDatabase()
            // A client that signs in again and again, with no MaxSessionsPerUser: every sign-in binds one more session.
            let user = $"often-{Guid.NewGuid():N}"
            let bind = factsOf [ Update.set (SessionPath.ofKeys [ SessionMeta.User ]) (Json.string user) ]
            let ids = [ for _ in 1..2500 -> SessionId.createFor user ]
            for chunk in List.chunkBySize 100 ids do
                let! _ = Task.WhenAll [ for id in chunk -> sessions.MoveAsync(null, id, bind, creating, testToken ()) ]
                ()
            // Some sessions gone behind the store's back (as eviction does): their entries stay in the index until a listing.
            let random = Random 7
            let gone = ids |> List.filter (fun _ -> random.Next 10 = 0) |> Set.ofList
            for id in gone do
                let! _ = db.KeyDeleteAsync(RedisKey.op_Implicit (store.KeyOf id))
                ()
            let live = ids |> List.filter (gone.Contains >> not) |> List.sortWith (fun a b -> String.CompareOrdinal(a, b))
            let! clients = server.Value.Admin.GetServer(server.Value.Server.EndPoint).ClientListAsync(CommandFlags.None)
            let storeClients = clients |> Array.filter (fun c -> c.Name = "sesame-user-listing") |> Array.map (fun c -> string c.Address) |> Set.ofArray
            use monitor = new RedisMonitor(server.Value.Server.Port)
            let! _ = monitor.ReadUntilMarkerAsync()
            let listAll (limit: int) = task {
                let seen = ResizeArray<string>()
                let mutable after = null
                let mutable more = true
                while more do
                    let! page = sessions.ListAsync({ UserId = user; After = after; Limit = limit }, testToken ())
                    Expect.isLessThanOrEqual page.Sessions.Count limit "a page holds at most its Limit"
                    seen.AddRange(page.Sessions |> Seq.map _.Id)
                    after <- page.Next
                    more <- not (isNull after)
                return List.ofSeq seen
            }
            let! inSevens = listAll 7
            let! inOne = listAll Int32.MaxValue
            let! commands = monitor.ReadUntilMarkerAsync()
            Expect.sequenceEqual inSevens live "pages of 7: every live session once, in id order"
            Expect.sequenceEqual inOne live "one page: every live session once, in id order"
            // Each read of the user's index inside a script, grouped under its call: a range with a LIMIT of at most 1,000.
            let index = store.UserIndexKeyOf user
            let mutable calls = 0
            for client, words in commands do
                let command = (List.head words).ToLowerInvariant()
                if storeClients.Contains client && command = "fcall" then
                    calls <- calls + 1
                elif client = "lua" && command.StartsWith "zrange" && List.item 1 words = index then
                    let limit = words |> List.tryFindIndex (fun w -> w.ToUpperInvariant() = "LIMIT")
                    Expect.isSome limit $"{String.Join(' ', words)} reads the index with a LIMIT"
                    Expect.isLessThanOrEqual (int (List.item (limit.Value + 2) words)) 1000 "a read of at most 1,000 entries"
            Expect.isGreaterThan calls 3 "the page of every session took several calls"
            let! left = db.SortedSetLengthAsync(RedisKey.op_Implicit index)
            Expect.equal left (int64 live.Length) "the entries of the sessions that were gone are out of the index"
        }

        testCaseTask "a user's index an earlier Sesame wrote, its entries scored by when they were bound, is listed in id order and left scored 0"
        <| fun () -> task {
            let store = server.Value.Store "uo:"
            let sessions = store :> SessionStore
            let db = server.Value.Admin.GetDatabase()
            let user = $"earlier-{Guid.NewGuid():N}"
            let bind = factsOf [ Update.set (SessionPath.ofKeys [ SessionMeta.User ]) (Json.string user) ]
            let ids = [ for _ in 1..1500 -> SessionId.createFor user ]
            for chunk in List.chunkBySize 100 ids do
                let! _ = Task.WhenAll [ for id in chunk -> sessions.MoveAsync(null, id, bind, creating, testToken ()) ]
                ()
            let inOrder = ids |> List.sortWith (fun a b -> String.CompareOrdinal(a, b))
            // Scores as the bound times an earlier Sesame wrote: latest for the lowest id, so score order is not id order.
            let index = RedisKey.op_Implicit (store.UserIndexKeyOf user)
            let entries = inOrder |> List.mapi (fun i id -> SortedSetEntry(RedisValue.op_Implicit id, float (1764700000000L - int64 i))) |> Array.ofList
            let! _ = db.SortedSetAddAsync(index, entries)
            let! page = sessions.ListAsync({ UserId = user; After = null; Limit = 5 }, testToken ())
            Expect.sequenceEqual (page.Sessions |> Seq.map _.Id) (List.take 5 inOrder) "the first page: the lowest ids"
            let! all = SessionStore.listAllAsync { SessionQuery.OfUser user with Limit = 100 } (testToken ()) sessions
            Expect.sequenceEqual (all |> Seq.map _.Id) inOrder "every session once, in id order"
            let! scored = db.SortedSetLengthAsync(index, 0.0, Double.PositiveInfinity, Exclude.Start)
            Expect.equal scored 0L "no entry keeps a score other than 0"
            // A sign-in by this Sesame scores its entry 0.
            let later = SessionId.createFor user
            let! _ = sessions.MoveAsync(null, later, bind, creating, testToken ())
            let! score = db.SortedSetScoreAsync(index, RedisValue.op_Implicit later)
            Expect.equal score (Nullable 0.0) "a new entry's score"
        }

        testCaseTask "while Redis refuses writes, a user's index an earlier Sesame wrote is still listed in id order by scripts sent by EVALSHA"
        <| fun () -> task {
            // Functions are refused up front then, and the store sends its scripts by EVALSHA, which Redis refuses only at
            // a write: setting the index's scores to 0 is refused, and the listing reads the index whole, as before.
            let store = server.Value.Store "urw:"
            store.UsesFunctions <- false
            let sessions = store :> SessionStore
            let db = server.Value.Admin.GetDatabase()
            let user = $"refused-{Guid.NewGuid():N}"
            let bind = factsOf [ Update.set (SessionPath.ofKeys [ SessionMeta.User ]) (Json.string user) ]
            let ids = [ for _ in 1..300 -> SessionId.createFor user ]
            let! _ = Task.WhenAll [ for id in ids -> sessions.MoveAsync(null, id, bind, creating, testToken ()) ]
            let inOrder = ids |> List.sortWith (fun a b -> String.CompareOrdinal(a, b))
            let index = RedisKey.op_Implicit (store.UserIndexKeyOf user)
            let! _ =
                db.SortedSetAddAsync(
                    index,
                    inOrder |> List.mapi (fun i id -> SortedSetEntry(RedisValue.op_Implicit id, float (1764700000000L - int64 i))) |> Array.ofList
                )
            let gone = inOrder |> List.filter (fun id -> id.GetHashCode() % 7 = 0) |> Set.ofList
            for id in gone do
                let! _ = db.KeyDeleteAsync(RedisKey.op_Implicit (store.KeyOf id))
                ()
            let live = inOrder |> List.filter (gone.Contains >> not)
            let admin = server.Value.Admin.GetServer(server.Value.Server.EndPoint)
            // No replica: Redis refuses every write (NOREPLICAS).
            do! admin.ConfigSetAsync("min-replicas-to-write", RedisValue.op_Implicit 1)
            try
                let! refused =
                    throwsAsync<SessionStoreException>(fun () -> sessions.CommitAsync(ids.Head, changeOf [ setAt "a" "1" ], existing, testToken ()) :> Task)
                Expect.stringContains refused.Message "NOREPLICAS" "Redis refuses writes"
                let! inSevens = SessionStore.listAllAsync { SessionQuery.OfUser user with Limit = 7 } (testToken ()) sessions
                Expect.sequenceEqual (inSevens |> List.map _.Id) live "pages of 7: every live session once, in id order"
            finally
                admin.ConfigSet("min-replicas-to-write", RedisValue.op_Implicit 0)
            let! all = SessionStore.listAllAsync { SessionQuery.OfUser user with Limit = 7 } (testToken ()) sessions
            Expect.sequenceEqual (all |> List.map _.Id) live "once Redis takes writes again, the same"
            let! scored = db.SortedSetLengthAsync(index, 0.0, Double.PositiveInfinity, Exclude.Start)
            Expect.equal scored 0L "and the scores are set to 0"
        }

        testCaseTask "a listing finishes in a few script calls while an earlier Sesame keeps scoring the user's entries"
        <| fun () -> task {
            let store = server.Value.Store "utr:"
            let sessions = store :> SessionStore
            let user = $"trickle-{Guid.NewGuid():N}"
            let bind = factsOf [ Update.set (SessionPath.ofKeys [ SessionMeta.User ]) (Json.string user) ]
            let ids = [| for _ in 1..200 -> SessionId.createFor user |]
            let! _ = Task.WhenAll [ for id in ids -> sessions.MoveAsync(null, id, bind, creating, testToken ()) ]
            let inOrder = ids |> Array.sortWith (fun a b -> String.CompareOrdinal(a, b)) |> List.ofArray
            // The earlier Sesame's writes: one entry at a time scored by a binding time, without pause, on a connection of
            // its own.
            use! writer = server.Value.Server.ConnectAsync(clientName = "sesame-earlier-writer")
            let writes = writer.GetDatabase()
            let index = RedisKey.op_Implicit (store.UserIndexKeyOf user)
            use stop = new Threading.CancellationTokenSource()
            let scoring =
                Task.Run<unit>(fun () -> task {
                    let mutable n = 0
                    while not stop.IsCancellationRequested do
                        let! _ = writes.SortedSetAddAsync(index, RedisValue.op_Implicit ids[n % ids.Length], float (1764700000000L + int64 n))
                        n <- n + 1
                })
            try
                for _ in 1..20 do
                    let! before = server.Value.Server.CommandCallsAsync server.Value.Admin
                    let! page = sessions.ListAsync({ UserId = user; After = null; Limit = 1000 }, testToken ())
                    let! after = server.Value.Server.CommandCallsAsync server.Value.Admin
                    Expect.sequenceEqual (page.Sessions |> Seq.map _.Id) inOrder "every session once, in id order"
                    let calls name = (Map.tryFind name after |> Option.defaultValue 0L) - (Map.tryFind name before |> Option.defaultValue 0L)
                    // At most three calls that only set entries to 0 in a row, then one that reads the index whole.
                    Expect.isLessThanOrEqual (calls "fcall") 4L "script calls for one page"
            finally
                stop.Cancel()
            do! scoring
        }

        testCaseTask "a load whose expiry need not slide is one HGETALL and runs no script"
        <| fun () -> task {
            use! connection = server.Value.Server.ConnectAsync(clientName = "sesame-quick-loads")
            let store = storeRefreshing connection "ql:" (TimeSpan.FromMinutes 5.0)
            let sessions = store :> SessionStore
            let id = Guid.NewGuid().ToString "N"
            let! _ = sessions.CommitAsync(id, changeOf [ setAt "n" "1" ], creating, testToken ())
            let! clients = server.Value.Admin.GetServer(server.Value.Server.EndPoint).ClientListAsync(CommandFlags.None)
            let storeClients = clients |> Array.filter (fun c -> c.Name = "sesame-quick-loads") |> Array.map (fun c -> string c.Address) |> Set.ofArray
            use monitor = new RedisMonitor(server.Value.Server.Port)
            let! _ = monitor.ReadUntilMarkerAsync()
            for _ in 1..5 do
                let! loaded = load sessions id
                Expect.equal loaded (Some(json """{"n":1}""")) "loaded"
            let! seen = monitor.ReadUntilMarkerAsync()
            let name (words: string list) = (List.head words).ToLowerInvariant()
            // The SELECT that StackExchange.Redis sends after an FCALL (see above) aside.
            let fromStore = seen |> List.filter (fun (client, words) -> storeClients.Contains client && name words <> "select")
            // The store has read Redis's clock from nothing yet: the first load's script tells it. For the others the
            // deadline the hash's '#x' records decides that the expiry is not due.
            Expect.equal (fromStore |> List.map (snd >> name)) ("hgetall" :: "fcall" :: List.replicate 4 "hgetall") "the loads' commands"
            Expect.equal
                (fromStore |> List.filter (fun (_, words) -> name words <> "fcall") |> List.map (fun (_, words) -> List.item 1 words))
                (List.replicate 5 (store.KeyOf id))
                "HGETALL's key"
            let inScripts = seen |> List.filter (fun (client, _) -> client = "lua") |> List.map (fun (_, words) -> name words)
            Expect.equal inScripts [ "pttl"; "time" ] "what the one script ran: the expiry was not due"
            // Another idle timeout than the one the expiry last slid to runs the script, which applies it at once.
            let! _ = monitor.ReadUntilMarkerAsync()
            let! _ = sessions.LoadAsync(id, TimeSpan.FromMinutes 30.0, testToken ())
            let! seen = monitor.ReadUntilMarkerAsync()
            let fromStore = seen |> List.filter (fun (client, words) -> storeClients.Contains client && name words <> "select")
            Expect.equal (fromStore |> List.map (snd >> name)) [ "hgetall"; "fcall" ] "a load under another timeout"
            let! left = server.Value.Admin.GetDatabase().KeyTimeToLiveAsync(store.KeyOf id)
            Expect.isGreaterThan left.Value (TimeSpan.FromMinutes 29.0) "the longer timeout was applied at once"
        }

        testCaseTask "a load slides the expiry when it is due and reports a session that is gone, whatever its HGETALL read"
        <| fun () -> task {
            let store = storeRefreshing server.Value.Connection "qs:" (TimeSpan.FromMilliseconds 50.0)
            let sessions = store :> SessionStore
            let recorder = EndedRecorder()
            sessions.Observer <- recorder
            let db = server.Value.Admin.GetDatabase()
            let id = Guid.NewGuid().ToString "N"
            let idle = TimeSpan.FromSeconds 2.0
            let! _ = sessions.CommitAsync(id, changeOf [ setAt "n" "1" ], { creating with IdleTimeout = idle }, testToken ())
            let! seenBefore = db.HashGetAsync(store.KeyOf id, "#t")
            do! Task.Delay 300
            // Due: the script slides the expiry back to the whole timeout and sets the last-seen time.
            let! leftBefore = db.KeyTimeToLiveAsync(store.KeyOf id)
            let! loaded = sessions.LoadAsync(id, idle, testToken ())
            Expect.equal (Json.serialize loaded.Data) """{"n":1}""" "loaded"
            let! left = db.KeyTimeToLiveAsync(store.KeyOf id)
            Expect.isGreaterThan left.Value leftBefore.Value "the expiry slid back towards the idle timeout"
            let! seenAfter = db.HashGetAsync(store.KeyOf id, "#t")
            Expect.isGreaterThan (int64 seenAfter) (int64 seenBefore) "the last-seen time moved"
            // A shorter timeout than the key's TTL is cut to it, as the script does.
            let! _ = sessions.LoadAsync(id, TimeSpan.FromSeconds 1.0, testToken ())
            let! left = db.KeyTimeToLiveAsync(store.KeyOf id)
            Expect.isLessThanOrEqual left.Value (TimeSpan.FromSeconds 1.0) "the expiry was cut to the shorter timeout"
            // Gone by Redis's own expiry: the plain read finds nothing, and the script reports the session as ended.
            do! db.KeyDeleteAsync(store.KeyOf id) :> Task
            let! gone = sessions.LoadAsync(id, idle, testToken ())
            Expect.isNull gone "the session is gone"
            Expect.equal (recorder.Ended |> List.map (fun (ended, _, _) -> ended)) [ id ] "the ended session was reported"
            // A key of another type is an error naming it, whether its expiry would slide (no TTL) or not.
            for ttl in [ None; Some idle ] do
                let other = Guid.NewGuid().ToString "N"
                do! db.StringSetAsync(store.KeyOf other, "x") :> Task
                if ttl.IsSome then do! db.KeyExpireAsync(store.KeyOf other, Option.toNullable ttl) :> Task
                let! e = throwsAsync<SessionStoreException>(fun () -> sessions.LoadAsync(other, idle, testToken ()) :> Task)
                Expect.stringContains e.Message "string" $"the error names what the key holds (TTL {ttl})"
                let! left = db.KeyTimeToLiveAsync(store.KeyOf other)
                Expect.equal (left.HasValue) ttl.IsSome "the other key's expiry was left alone"
        }

        testCaseTask "a commit sets the last-seen time, and slides the expiry only when it is due or the timeout changed"
        <| fun () -> task {
            // An interval far longer than the steps between commits need, so that a slow machine does not make one due.
            let store = storeRefreshing server.Value.Connection "cs:" (TimeSpan.FromSeconds 2.0)
            let sessions = store :> SessionStore
            let db = server.Value.Admin.GetDatabase()
            let id = Guid.NewGuid().ToString "N"
            let key = RedisKey.op_Implicit (store.KeyOf id)
            let expirySet = RedisKey.op_Implicit $"cs:{{{id[0]}}}expiry"
            let idle = TimeSpan.FromSeconds 10.0
            let commit (n: int) (timeout: TimeSpan) =
                sessions.CommitAsync(id, changeOf [ setAt "n" (string n) ], { creating with IdleTimeout = timeout }, testToken ())
            let state () = task {
                let! left = db.KeyTimeToLiveAsync key
                let! score = db.SortedSetScoreAsync(expirySet, id)
                let! seen = db.HashGetAsync(key, "#t")
                return struct (left, score, int64 seen)
            }
            let! _ = commit 1 idle
            let! struct (_, createdScore, createdSeen) = state ()
            do! Task.Delay 100
            // Not due (about 100 ms of the 2 s interval have run down): the expiry is left as it was; the last-seen time moves.
            let! struct (leftBefore, _, _) = state ()
            use monitor = new RedisMonitor(server.Value.Server.Port)
            let! _ = monitor.ReadUntilMarkerAsync()
            let! result = commit 2 idle
            let! ran = monitor.ReadUntilMarkerAsync()
            Expect.equal result CommitResult.Committed "committed"
            // The time left is read from the deadline the hash's '#x' records, which the first commit wrote, not from the key.
            let inScript = ran |> List.filter (fun (client, _) -> client = "lua") |> List.map (fun (_, words) -> (List.head words).ToLowerInvariant())
            Expect.equal inScript [ "time"; "hmget"; "hmget"; "hset" ] "what the commit's script ran"
            let! struct (left, score, seen) = state ()
            Expect.isLessThanOrEqual left.Value leftBefore.Value "the TTL did not slide"
            Expect.equal score createdScore "the expiry set's entry did not move"
            Expect.isGreaterThan seen createdSeen "the last-seen time moved"
            do! Task.Delay 2000
            // Due: the TTL slides back to the whole timeout, and the expiry set's entry with it.
            let! struct (leftBefore, _, _) = state ()
            let! _ = commit 3 idle
            let! struct (left, score, _) = state ()
            Expect.isGreaterThan left.Value leftBefore.Value "the TTL slid"
            Expect.isGreaterThan score.Value createdScore.Value "the expiry set's entry moved with it"
            // A shorter timeout than the TTL left is taken at once, whatever the interval.
            let! _ = commit 4 (TimeSpan.FromSeconds 2.0)
            let! struct (left, _, _) = state ()
            Expect.isLessThanOrEqual left.Value (TimeSpan.FromSeconds 2.0) "the TTL was cut to the shorter timeout"
            // So is no expiry at all, and then back to a timeout.
            let! _ = commit 5 TimeSpan.MaxValue
            let! struct (left, score, _) = state ()
            Expect.isFalse left.HasValue "the key no longer expires"
            Expect.equal score (Nullable Double.PositiveInfinity) "nor does its expiry set's entry"
            let! _ = commit 6 idle
            let! struct (left, _, _) = state ()
            Expect.isTrue (left.HasValue && left.Value <= idle) $"the key expires again ({left})"
            let! loaded = sessions.LoadTreeAsync(id, idle, testToken ())
            Expect.equal loaded (Some(json """{"n":6}""")) "every commit was applied"
        }

        testCaseTask "the key prefix names every session's key"
        <| fun () -> task {
            let store = server.Value.Store "app-one:"
            let id = Guid.NewGuid().ToString "N"
            let! _ = (store :> SessionStore).CommitAsync(id, changeOf [ setAt "a" "1" ], creating, testToken ())
            let key = store.KeyOf id
            Expect.stringStarts key "app-one:" "the key starts with the prefix"
            let! exists = server.Value.Admin.GetDatabase().KeyExistsAsync(RedisKey.op_Implicit key)
            Expect.isTrue exists "exists"
            let! other = (server.Value.Store "app-two:" :> SessionStore).LoadTreeAsync(id, creating.IdleTimeout, testToken ())
            Expect.equal other None "other"
        }
    ]

/// The Redis store's v2 layout on one server: the memory store as its model, listings over the shards, moves
/// across slots forced on one server (as a cluster makes them), marks left by a mover.
let private layoutTests =
    let server = serverOfItsOwn ()
    testList "layout" [
        testCaseTask "every answer of the Redis store is the memory store's: commits, facts, upgrades, moves, limits, deletes, loads, listings"
        <| fun () -> task {
            // Loads refresh the last-seen time every time, as the memory store does, so "least recently seen" agrees.
            use store =
                new RedisStore(
                    server.Value.Connection,
                    RedisStoreOptions(KeyPrefix = "model-v2:", ExpiryRefreshInterval = TimeSpan.Zero, SweepInterval = TimeSpan.Zero),
                    null
                )
            let! counts = RedisModel.compare store 7 1500
            for outcome in
                [
                    "commit Committed"
                    "commit SessionGone"
                    "commit ShapeChanged"
                    "commit PathConflictException"
                    "commit SessionTooLargeException"
                    "commit ArgumentException"
                    "move Committed"
                    "move SessionGone"
                    "move UserLimitReached"
                    "listing"
                    "delete"
                    "load"
                ] do
                Expect.isGreaterThan (counts |> Map.tryFind outcome |> Option.defaultValue 0) 0 $"the walk went through {outcome}"
        }

        testCaseTask "with an inline limit so short that leaves move in and out of their nodes all the time, every answer is still the memory store's"
        <| fun () -> task {
            use store =
                new RedisStore(
                    server.Value.Connection,
                    RedisStoreOptions(KeyPrefix = "model-inline:", ExpiryRefreshInterval = TimeSpan.Zero, SweepInterval = TimeSpan.Zero, InlineLimit = 20),
                    null
                )
            let! counts = RedisModel.compare store 8 1500
            for outcome in [ "commit Committed"; "commit PathConflictException"; "move Committed"; "listing"; "load" ] do
                Expect.isGreaterThan (counts |> Map.tryFind outcome |> Option.defaultValue 0) 0 $"the walk went through {outcome}"
        }

        testCaseTask "all sessions are listed page by page in byte order of their ids, each once, whatever their ids' first characters"
        <| fun () -> task {
            use store = new RedisStore(server.Value.Connection, RedisStoreOptions(KeyPrefix = "shards:", SweepInterval = TimeSpan.Zero), null)
            // First characters in every shard: the 64 of Sesame's ids, and ones Sesame never makes.
            let firsts = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_ !\"#./:@[\\^`{|}~é𝄞\u0001"
            let ids = [ for c in firsts.EnumerateRunes() -> c.ToString() + Guid.NewGuid().ToString "N" ]
            for id in ids do
                let! _ = store.CommitAsync(id, changeOf [ setAt "n" "1" ], creating, testToken ())
                ()
            let seen = ResizeArray<string>()
            let mutable after = null
            let mutable more = true
            while more do
                let! page = store.ListAsync({ UserId = null; After = after; Limit = 7 }, testToken ())
                Expect.isLessThanOrEqual page.Sessions.Count 7 "a page holds at most the limit"
                seen.AddRange(page.Sessions |> Seq.map _.Id)
                after <- page.Next
                more <- not (isNull after)
            let utf8 (id: string) = Text.Encoding.UTF8.GetBytes id
            let byBytes = ids |> List.sortWith (fun a b -> MemoryExtensions.SequenceCompareTo(ReadOnlySpan(utf8 a), ReadOnlySpan(utf8 b)))
            Expect.sequenceEqual seen byBytes "every session once, in byte order"
        }

        testCaseTask "a sweep interval or an operation timeout a timer does not take is refused, naming the option"
        <| fun () -> task {
            // A .NET timer's period is at most about 49.7 days: past it, the store failed with the timer's own error
            // (the sweep interval), or every operation did (the operation timeout's time budget). Under a millisecond,
            // the sweeper's timer fired once and never again, and every time budget ran out at once.
            let refused (options: RedisStoreOptions) = throws<ArgumentException>(fun () -> new RedisStore(server.Value.Connection, options, null) |> ignore)
            for span in [ TimeSpan.FromDays 365.0; TimeSpan.FromTicks 5000L ] do
                Expect.stringContains
                    (refused (RedisStoreOptions(KeyPrefix = "long:", SweepInterval = span))).Message
                    "SweepInterval"
                    $"names the sweep interval ({span})"
                Expect.stringContains
                    (refused (RedisStoreOptions(KeyPrefix = "long:", OperationTimeout = span))).Message
                    "OperationTimeout"
                    $"names the operation timeout ({span})"
            // ConnectAsync refuses them too (it checks them before it connects).
            let! error =
                throwsAsync<ArgumentException>(fun () ->
                    RedisStore.ConnectAsync("127.0.0.1:1", RedisStoreOptions(SweepInterval = TimeSpan.FromDays 365.0), null) :> Task)
            Expect.stringContains error.Message "SweepInterval" "ConnectAsync names the sweep interval"
            // The store keeps its own copy: a later change to the options given does not reach its time budgets.
            let given = RedisStoreOptions(KeyPrefix = "long:", SweepInterval = TimeSpan.Zero)
            use kept = new RedisStore(server.Value.Connection, given, null)
            given.OperationTimeout <- TimeSpan.FromDays 365.0
            let! result = kept.CommitAsync(Guid.NewGuid().ToString "N", changeOf [ setAt "n" "1" ], creating, testToken ())
            Expect.equal result CommitResult.Committed "a commit after the options given changed"
            // The bounds work, as do no sweeper and no timeout.
            let longest = TimeSpan.FromMilliseconds 4294967294.0
            let pairs = [
                longest, longest
                TimeSpan.FromMilliseconds 1.0, TimeSpan.FromSeconds 5.0
                Threading.Timeout.InfiniteTimeSpan, Threading.Timeout.InfiniteTimeSpan
            ]
            for sweep, timeout in pairs do
                use store =
                    new RedisStore(server.Value.Connection, RedisStoreOptions(KeyPrefix = "long:", SweepInterval = sweep, OperationTimeout = timeout), null)
                let! result = store.CommitAsync(Guid.NewGuid().ToString "N", changeOf [ setAt "n" "1" ], creating, testToken ())
                Expect.equal result CommitResult.Committed $"a commit (sweep {sweep}, timeout {timeout})"
        }

        testCaseTask "an inline limit below 0 or past 65,536 bytes is refused, naming the option; the bounds are taken"
        <| fun () -> task {
            for limit in [ -1; 65537; Int32.MaxValue ] do
                let e =
                    throws<ArgumentException>(fun () ->
                        new RedisStore(server.Value.Connection, RedisStoreOptions(KeyPrefix = "inline:", InlineLimit = limit), null) |> ignore)
                Expect.stringContains e.Message "InlineLimit" $"names the option ({limit})"
            for limit in [ 0; 65536 ] do
                use store = new RedisStore(server.Value.Connection, RedisStoreOptions(KeyPrefix = "inline:", InlineLimit = limit), null)
                let id = Guid.NewGuid().ToString "N"
                let! result = store.CommitAsync(id, changeOf [ setAt "a" "{\"b\":1,\"c\":[true]}" ], creating, testToken ())
                Expect.equal result CommitResult.Committed $"a commit (limit {limit})"
                let! loaded = load store id
                Expect.equal loaded (Some(json """{"a":{"b":1,"c":[true]}}""")) $"read back (limit {limit})"
        }

        testCaseTask "a key prefix with a brace is refused: it would change the keys' hash tags"
        <| fun () -> task {
            let e = throws<ArgumentException>(fun () -> new RedisStore(server.Value.Connection, RedisStoreOptions(KeyPrefix = "app{1}:"), null) |> ignore)
            Expect.stringContains e.Message "cannot contain" "says why"
        }

        testCaseTask "while a session carries the mark of a move to another slot, a commit waits for the move to end, then applies"
        <| fun () -> task {
            use store = new RedisStore(server.Value.Connection, RedisStoreOptions(KeyPrefix = "mark:", SweepInterval = TimeSpan.Zero), null)
            let id = Guid.NewGuid().ToString "N"
            let! _ = store.CommitAsync(id, changeOf [ setAt "n" "1" ], creating, testToken ())
            let key = RedisKey.op_Implicit (store.KeyOf id)
            let db = server.Value.Admin.GetDatabase()
            let deadline = DateTimeOffset.UtcNow.AddSeconds(30.0).ToUnixTimeMilliseconds()
            // What the first step of a move across slots leaves: a mark with its deadline and the new id.
            let! _ = db.HashSetAsync(key, RedisValue.op_Implicit "#m", RedisValue.op_Implicit $"{deadline} new-id")
            let commit = store.CommitAsync(id, changeOf [ Update.increment (path "n") 1m ], existing, testToken ())
            let! _ = Task.WhenAny(commit, Task.Delay 300)
            Expect.isFalse commit.IsCompleted "the commit waits while the move is under way"
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"n":1}""")) "a load reads the session as it was"
            // The move was refused: its mover takes the mark away.
            let! _ = db.HashDeleteAsync(key, RedisValue.op_Implicit "#m")
            let! result = commit
            Expect.equal result CommitResult.Committed "then the commit applies"
            let! after = load store id
            Expect.equal after (Some(json """{"n":2}""")) "once"
        }

        testCaseTask "a mark its mover left behind is undone by the next commit: the copy at the new id is deleted and the session goes on"
        <| fun () -> task {
            use store = new RedisStore(server.Value.Connection, RedisStoreOptions(KeyPrefix = "stale:", SweepInterval = TimeSpan.Zero), null)
            let id, copy = Guid.NewGuid().ToString "N", SessionId.createFor "ada"
            let! _ = store.CommitAsync(id, changeOf [ setAt "n" "1" ], creating, testToken ())
            // The second step had written the copy under the new id, bound and indexed; then the mover died.
            let! _ =
                store.MoveAsync(
                    null,
                    copy,
                    SessionChange(Patch.fold [ setAt "n" "1" ], Patch.fold [ Update.set (path SessionMeta.User) (Json.string "ada") ]),
                    creating,
                    testToken ()
                )
            let! _ =
                server.Value.Admin
                    .GetDatabase()
                    .HashSetAsync(RedisKey.op_Implicit (store.KeyOf id), RedisValue.op_Implicit "#m", RedisValue.op_Implicit $"1000 {copy}")
            let! result = store.CommitAsync(id, changeOf [ Update.increment (path "n") 1m ], existing, testToken ())
            Expect.equal result CommitResult.Committed "the commit applies"
            let! session = load store id
            Expect.equal session (Some(json """{"n":2}""")) "to the session at its old id"
            let! gone = load store copy
            Expect.equal gone None "the copy is gone"
            let! ada = store |> SessionStore.listAllAsync (SessionQuery.OfUser "ada") (testToken ())
            Expect.isEmpty ada "and out of its user's index"
        }
    ]

/// Outages: each test stops and starts a server of its own.
let private outageTests =
    testList "outages" [
        testCaseTask "while Redis is down loads and commits fail with SessionStoreException within the timeout, and the same store works once it is back"
        <| fun () -> task {
            use server = new RedisServer()
            use! connection = server.ConnectAsync()
            let timeout = TimeSpan.FromSeconds 1.0
            let store = new RedisStore(connection, RedisStoreOptions(OperationTimeout = timeout), null) :> SessionStore
            let id = Guid.NewGuid().ToString "N"
            let! _ = store.CommitAsync(id, changeOf [ setAt "a" "1" ], creating, testToken ())
            server.Stop()
            // "Within the timeout": the failure comes when the timeout has passed, not long after (twice it, for a busy machine).
            let guard = timeout * 2.0
            let commit = throwsAsync<SessionStoreException>(fun () -> store.CommitAsync(id, changeOf [ setAt "b" "2" ], creating, testToken ()) :> Task)
            do! withinAsync guard commit
            let! failed = commit
            Expect.stringContains failed.Message "Redis" "failed.Message"
            let loading = throwsAsync<SessionStoreException>(fun () -> load store id :> Task)
            do! withinAsync guard loading
            let! _ = loading
            server.Start()
            // StackExchange.Redis reconnects by itself; nothing is restarted on our side.
            let clock = Stopwatch.StartNew()
            let mutable result = None
            while result.IsNone && clock.Elapsed < TimeSpan.FromSeconds 30.0 do
                try
                    let! committed = store.CommitAsync(id, changeOf [ setAt "back" "true" ], creating, testToken ())
                    result <- Some committed
                with :? SessionStoreException ->
                    do! Task.Delay 200
            Expect.equal result (Some CommitResult.Committed) "result"
            let! loaded = load store id
            // The restarted server kept nothing (no persistence): the commit made a new session.
            Expect.equal loaded (Some(json """{"back":true}""")) "loaded"
        }

        testCaseTask "a store connected while Redis is down works once Redis is up"
        <| fun () -> task {
            use server = new RedisServer()
            server.Stop()
            use! store = RedisStore.ConnectAsync($"{server.EndPoint},connectTimeout=500", RedisStoreOptions(OperationTimeout = TimeSpan.FromSeconds 1.0), null)
            let sessions = store :> SessionStore
            let id = Guid.NewGuid().ToString "N"
            let! _ = throwsAsync<SessionStoreException>(fun () -> sessions.CommitAsync(id, changeOf [ setAt "a" "1" ], creating, testToken ()) :> Task)
            server.Start()
            let clock = Stopwatch.StartNew()
            let mutable result = None
            while result.IsNone && clock.Elapsed < TimeSpan.FromSeconds 30.0 do
                try
                    let! committed = sessions.CommitAsync(id, changeOf [ setAt "a" "1" ], creating, testToken ())
                    result <- Some committed
                with :? SessionStoreException ->
                    do! Task.Delay 200
            Expect.equal result (Some CommitResult.Committed) "result"
        }
    ]


[<Tests>]
let tests = testList "RedisStore" [ contract; contractByEvalsha; storeTests; layoutTests; outageTests ]
