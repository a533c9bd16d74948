/// Apps on the Redis store, end to end: the key-ring check, two app instances sharing one Redis,
/// and a Redis outage seen through the real HTTP pipeline. These load the machine (hundreds of
/// concurrent requests), so they run on their own, after the other tests (testSequenced), rather
/// than slowing those down.
module Sesame.Redis.Tests.RedisAppTests

open System
open System.Collections.Concurrent
open System.Diagnostics
open System.IO
open System.Net
open System.Net.Http
open System.Text.Json
open System.Threading
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.DataProtection
open Microsoft.AspNetCore.Hosting
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.TestHost
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open Expecto
open Sesame
open Sesame.Redis
open Sesame.Redis.Tests.RedisServer
open Sesame.Samples.Giraffe
open Sesame.Samples.Giraffe.GiraffeShape
open Sesame.Tests

/// The sample's counter, nested and show handlers, plus a cart that one instance sets and another removes.
let private app: HttpHandler =
    withSession
    >=> choose [
        route "/" >=> App.counter
        route "/nested" >=> App.nested
        route "/session" >=> App.show
        route "/cart"
        >=> Session.handler (fun s ->
            s |> Session.set "cart" {| items = [ {| sku = "apple"; qty = 2 |} ] |}
            text "cart set")
        route "/cart/add"
        >=> Session.handler (fun s ->
            s |> Session.set "cart.items[1]" {| sku = "pear"; qty = 1 |}
            text "added")
        route "/cart/remove"
        >=> Session.handler (fun s ->
            s |> Session.remove "cart"
            text "cart removed")
        route "/hit" >=> Session.handler (fun s -> text (string (s |> Session.increment "hits" 1m)))
        // A logout whose client hung up before anything loaded its session: the request's abort token is cancelled.
        route "/logout-hung-up"
        >=> (fun next ctx ->
            ctx.RequestAborted <- CancellationToken(true)
            next ctx)
        >=> Session.destroy
        >=> text "out"
    ]

/// Starts an app instance on its own Redis connection (to one server, or to a cluster's nodes); with a
/// key directory, its Data Protection keys live there under a fixed application name, so instances given
/// the same folder share them.
let private startInstance (server: Server) (configuration: string) (keys: DirectoryInfo option) (logs: LogCapture) : Task<IHost> = task {
    // The host's container owns the store and disposes it (and its connection) with the host.
    let! store = RedisStore.ConnectAsync(configuration)
    let services (services: IServiceCollection) =
        services.AddSesame().AddStore(fun _ -> store :> SessionStore) |> ignore
        match keys with
        | Some directory -> services.AddDataProtection().PersistKeysToFileSystem(directory).SetApplicationName("sesame-test") |> ignore
        | None -> ()
    return! startHostWith server services (runHandler app) logs
}

let private keysNotShared (logs: LogCapture) = logs.Entries |> List.filter (fun e -> e.EventId.Name = "DataProtectionKeysNotShared")

/// Two app instances on one Redis (or one cluster), their Data Protection keys in one folder: one browser's
/// session goes back and forth between them, and 100 concurrent increments, half on each, add up.
let private twoInstances (configuration: string) : Task = task {
    use keys = new TempDirectory "sesame-keys-"
    let logsA, logsB = new LogCapture(), new LogCapture()
    use! instanceA = startInstance Kestrel configuration (Some keys.Info) logsA
    use! instanceB = startInstance Kestrel configuration (Some keys.Info) logsB
    Expect.notEqual (addressOf instanceB) (addressOf instanceA) "addressOf instanceB"
    // One browser's cookie jar: both instances are on 127.0.0.1, and cookies do not care about ports.
    let jar = CookieContainer()
    let clientOf host = new HttpClient(new HttpClientHandler(CookieContainer = jar, UseCookies = true), BaseAddress = addressOf host)
    use onA = clientOf instanceA
    use onB = clientOf instanceB
    let get (client: HttpClient) (url: string) = task {
        let! response = client.GetAsync url
        let! body = response.Content.ReadAsStringAsync()
        Expect.isTrue response.IsSuccessStatusCode ($"GET {url} on {client.BaseAddress} answered {int response.StatusCode}: {body}")
        return body
    }
    let! first = get onA "/"
    Expect.equal first "1 times!" "first"
    let cookie = jar.GetCookies(addressOf instanceA) |> Seq.exactlyOne
    let! second = get onB "/"
    Expect.equal second "2 times!" "second"
    let! third = get onA "/"
    Expect.equal third "3 times!" "third"
    // node-sesame's nested example, alternating: each instance doubles what the other stored.
    let! nested1 = get onB "/nested"
    Expect.equal nested1 "4 times! baz = 2" "nested1"
    let! nested2 = get onA "/nested"
    Expect.equal nested2 "5 times! baz = 4" "nested2"
    let! nested3 = get onB "/nested"
    Expect.equal nested3 "6 times! baz = 8" "nested3"
    // Set on A, read and extended on B, read on A, removed on B, gone on A.
    let! _ = get onA "/cart"
    let! seenOnB = get onB "/session"
    Expect.equal seenOnB ("""{"times":6,"foo":{"bar":{"baz":8}},"cart":{"items":[{"qty":2,"sku":"apple"}]}}""") "seenOnB"
    let! _ = get onB "/cart/add"
    let! seenOnA = get onA "/session"
    Expect.equal seenOnA ("""{"times":6,"foo":{"bar":{"baz":8}},"cart":{"items":[{"qty":2,"sku":"apple"},{"qty":1,"sku":"pear"}]}}""") "seenOnA"
    let! _ = get onB "/cart/remove"
    let! afterRemove = get onA "/session"
    Expect.equal afterRemove ("""{"times":6,"foo":{"bar":{"baz":8}}}""") "afterRemove"
    // 100 increments at once, half on each instance, all of one session.
    let gate = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    let hits = [
        for i in 1..100 ->
            task {
                do! gate.Task
                let! _ = get (if i % 2 = 0 then onA else onB) "/hit"
                ()
            }
    ]
    gate.SetResult()
    let! _ = Task.WhenAll hits
    let! finalOnA = get onA "/session"
    let! finalOnB = get onB "/session"
    Expect.equal finalOnA ("""{"times":6,"foo":{"bar":{"baz":8}},"hits":100}""") "finalOnA"
    Expect.equal finalOnB finalOnA "finalOnB"
    // One session throughout: neither instance ever replaced the cookie with one of its own.
    let cookies = jar.GetCookies(addressOf instanceB) |> Seq.exactlyOne
    Expect.equal cookies.Value cookie.Value "cookies.Value"
    Expect.isEmpty (keysNotShared logsA @ keysNotShared logsB) "keysNotShared logsA @ keysNotShared logsB"
}

/// What one request of the outage test saw.
type private Outcome = {
    Session: int
    Mark: string
    /// The test's phase when the request was sent and when its answer came.
    SentIn: int
    AnsweredIn: int
    /// The status code, or None when no answer came within the guard.
    Status: int option
    Elapsed: TimeSpan
}

// The phases of the outage test.
[<Literal>]
let private RedisUp = 0

[<Literal>]
let private RedisDown = 1

[<Literal>]
let private LoadOver = 2

let private outageApp: HttpHandler =
    withSession
    >=> choose [
        route "/mark"
        >=> fun next ctx ->
            Session.handler
                (fun s ->
                    let mark = string ctx.Request.Query["m"]
                    s |> Session.set ("marks." + mark) mark
                    s |> Session.increment "count" 1m |> ignore
                    text "marked")
                next
                ctx
        route "/health" >=> Session.handler (fun s -> text (string (s |> Session.increment "health" 1m)))
        route "/session" >=> App.show
    ]

[<Tests>]
let tests =
    testSequenced
    <| testList "RedisApp" [
        testCaseTask "an app on a Redis store without a persisted key ring is warned about at startup"
        <| fun () -> task {
            use redis = new RedisServer()
            let logs = new LogCapture()
            use! _host = startInstance InMemory redis.EndPoint None logs
            let warning = keysNotShared logs |> List.exactlyOne
            Expect.equal warning.Level LogLevel.Warning "warning.Level"
            Expect.stringContains warning.Message "RedisStore" "warning.Message"
            Expect.stringContains warning.Message "PersistKeysTo" "warning.Message"
            // The same app with its keys persisted to a shared folder starts quietly.
            use keys = new TempDirectory "sesame-keys-"
            let quiet = new LogCapture()
            use! _other = startInstance InMemory redis.EndPoint (Some keys.Info) quiet
            Expect.isEmpty (keysNotShared quiet) "keysNotShared quiet"
        }

        testCaseTask "a logout whose client hung up before its session was loaded still ends the session"
        <| fun () -> task {
            use redis = new RedisServer()
            use! host = startInstance InMemory redis.EndPoint None (new LogCapture())
            let user = Browser host
            let! _ = user.GetTextAsync "/cart"
            let old = user.Cookie
            // The client is gone: whatever the request answers, nobody reads it.
            try
                let! _ = user.GetAsync "/logout-hung-up"
                ()
            with _ ->
                ()
            let replay = Browser host
            replay.Cookie <- old
            let! body = replay.GetTextAsync "/session"
            Expect.equal body "{}" "the session the logout named is gone"
        }

        testCaseTask
            "two app instances on one Redis with a shared key ring serve one user's session alternately, and concurrent increments across both add up exactly"
        <| fun () -> task {
            use redis = new RedisServer()
            do! twoInstances redis.EndPoint
        }

        testCaseTask
            "two app instances on a Redis Cluster with a shared key ring serve one user's session alternately, and concurrent increments across both add up exactly"
            (fun () -> task {
                let cluster, _ = RedisCluster.shared.Value
                do! twoInstances cluster.Configuration
            })
        |> testSequencedGroup "redis cluster"

        testCaseTask
            "through Kestrel, Redis going down mid-load gives quick 5xx answers, and once it is back every request succeeds and every acknowledged change is there"
        <| fun () -> task {
            use data = new TempDirectory "sesame-redis-aof-"
            use redis = new RedisServer(data.Info.FullName)
            // Short, but not so short that a healthy Redis misses it: on a busy two-core machine this
            // process was seen to stall every Redis call at once for up to 1.6 s now and then (with
            // Redis itself answering in milliseconds), and a 1 s timeout turned those into 500s.
            let timeout = TimeSpan.FromSeconds 3.0
            // Far more than a request may take with Redis down (a load and a commit, each bounded by
            // the timeout): a request still unanswered past it hangs.
            let guard = TimeSpan.FromSeconds 10.0
            let logs = new LogCapture()
            use storeLogs = LoggerFactory.Create(fun logging -> logging.AddProvider logs |> ignore)
            let! store = RedisStore.ConnectAsync(redis.EndPoint, RedisStoreOptions(OperationTimeout = timeout), storeLogs.CreateLogger "Sesame.Redis")
            use! host = startHostOn Kestrel store ignore (runHandler outageApp) logs
            let sessions = 3
            let workersPerSession = 2
            let clients = [|
                for _ in 1..sessions ->
                    let client = kestrelClient host
                    client.Timeout <- guard
                    client
            |]
            use _clients = {
                new IDisposable with
                    member _.Dispose() =
                        for c in clients do
                            c.Dispose()
            }
            let phase = ref RedisUp
            let outcomes = ConcurrentQueue<Outcome>()
            let mark (session: int) (name: string) = task {
                let sentIn = Volatile.Read &phase.contents
                let clock = Stopwatch.StartNew()
                let! status = task {
                    try
                        use! response = clients[session].GetAsync($"/mark?m={name}")
                        return Some(int response.StatusCode)
                    with
                    | :? TaskCanceledException
                    | :? HttpRequestException -> return None
                }
                let outcome = {
                    Session = session
                    Mark = name
                    SentIn = sentIn
                    AnsweredIn = Volatile.Read &phase.contents
                    Status = status
                    Elapsed = clock.Elapsed
                }
                outcomes.Enqueue outcome
                return outcome
            }
            // Fails with the last things Sesame and the store logged, to explain the failure.
            let failWithLogs (message: string) =
                let logged =
                    logs.Entries
                    |> List.filter (fun e -> e.Category.StartsWith "Sesame" && e.Level >= LogLevel.Information)
                    |> List.map (fun e -> $"{e.Level} {e.EventId.Name}: {e.Message}" + (if isNull e.Error then "" else $" ({e.Error.Message})"))
                    |> List.rev
                    |> List.truncate 40
                    |> List.rev
                failwith (String.Join("\n", message :: logged))
            let acknowledged () = outcomes |> Seq.filter (fun o -> o.Status = Some 200) |> List.ofSeq
            let waitUntil (what: string) (condition: unit -> bool) = task {
                let clock = Stopwatch.StartNew()
                while not (condition ()) do
                    if clock.Elapsed > TimeSpan.FromSeconds 60.0 then failwith $"Still waiting after a minute: {what}."
                    do! Task.Delay 20
            }

            // A set of changes, each acknowledged with 200 (this also gives each client its session).
            for session in 0 .. sessions - 1 do
                for i in 1..10 do
                    let! outcome = mark session $"before{session}x{i}"
                    if outcome.Status <> Some 200 then failWithLogs $"Before the outage, /mark answered %A{outcome}"

            // A load from several tasks, two per session; Redis is killed in the middle of it.
            let loading = ref true
            let worker (session: int) (worker: int) = task {
                let mutable i = 0
                while Volatile.Read &loading.contents do
                    i <- i + 1
                    let! _ = mark session $"load{session}w{worker}x{i}"
                    ()
            }
            let workers = [
                for session in 0 .. sessions - 1 do
                    for w in 1..workersPerSession -> worker session w
            ]
            do! waitUntil "60 acknowledged changes under load" (fun () -> (acknowledged ()).Length >= 30 + 60)
            redis.Stop()
            Volatile.Write(&phase.contents, RedisDown)
            let duringOutage () = outcomes |> Seq.filter (fun o -> o.SentIn = RedisDown && o.AnsweredIn = RedisDown) |> List.ofSeq
            do! waitUntil "30 requests sent and answered while Redis was down" (fun () -> (duringOutage ()).Length >= 30)
            Volatile.Write(&loading.contents, false)
            let! _ = Task.WhenAll workers
            Volatile.Write(&phase.contents, LoadOver)

            // Every request had an answer within the guard; while Redis was down, each was a 5xx.
            let hung = outcomes |> Seq.filter (fun o -> o.Status.IsNone || o.Elapsed >= guard) |> List.ofSeq
            Expect.isTrue hung.IsEmpty ($"{hung.Length} requests got no answer within {guard}; the first: %A{List.tryHead hung}")
            let answeredDuringOutage = duringOutage ()
            Seq.iter (fun o -> Expect.isTrue (o.Status.Value >= 500) ($"While Redis was down, /mark answered %A{o}")) answeredDuringOutage

            // Redis comes back on the same port with the same data folder. A grace period for the
            // reconnect: health checks until one succeeds; from then on, every request must.
            redis.Start()
            use health = kestrelClient host
            health.Timeout <- guard
            let clock = Stopwatch.StartNew()
            let mutable healthy = false
            while not healthy do
                if clock.Elapsed > TimeSpan.FromSeconds 30.0 then failwith "The app did not get Redis back within 30 seconds of its restart."
                try
                    use! response = health.GetAsync "/health"
                    healthy <- response.StatusCode = HttpStatusCode.OK
                with
                | :? HttpRequestException
                | :? TaskCanceledException -> ()
                if not healthy then do! Task.Delay 100
            let after = [
                for session in 0 .. sessions - 1 do
                    for w in 1..workersPerSession ->
                        task {
                            for i in 1..20 do
                                let! outcome = mark session $"after{session}w{w}x{i}"
                                if outcome.Status <> Some 200 then failWithLogs $"After the restart, /mark answered %A{outcome}"
                        }
            ]
            let! _ = Task.WhenAll after

            // Every change acknowledged with 200, before, during or after the outage, is stored; a
            // request that failed may or may not have been applied, so the count lies between the two.
            for session in 0 .. sessions - 1 do
                let! shown = clients[session].GetStringAsync "/session"
                use stored = JsonDocument.Parse shown
                let marks = stored.RootElement.GetProperty "marks"
                let acked = acknowledged () |> List.filter (fun o -> o.Session = session)
                for outcome in acked do
                    match marks.TryGetProperty outcome.Mark with
                    | true, value -> Expect.equal (value.GetString()) outcome.Mark "value.GetString()"
                    | _ -> failwith $"Session {session} lost the acknowledged change {outcome.Mark}."
                let attempted = outcomes |> Seq.filter (fun o -> o.Session = session) |> Seq.length
                let count = stored.RootElement.GetProperty("count").GetInt32()
                Expect.isGreaterThanOrEqual count acked.Length "Every acknowledged increment is counted."
                Expect.isLessThanOrEqual count attempted "No increment is counted that was never attempted."
        }

        testCaseTask "ISession on Redis: while Redis is down, an explicit CommitAsync throws the store's error, so a change it dropped is never reported saved"
        <| fun () -> task {
            use data = new TempDirectory "sesame-redis-isession-"
            use redis = new RedisServer(data.Info.FullName)
            let! store = RedisStore.ConnectAsync(redis.EndPoint, RedisStoreOptions(OperationTimeout = TimeSpan.FromSeconds 3.0), null)
            // As an app that saves before answering: a write it cannot save answers 503, not "saved".
            let handler: HttpHandler =
                fun next ctx -> task {
                    let key = string ctx.Request.Query["key"]
                    match ctx.Request.Path.Value with
                    | "/save" ->
                        ctx.Session.SetString(key, "saved")
                        let! saved = task {
                            try
                                do! ctx.Session.CommitAsync()
                                return true
                            with _ ->
                                return false
                        }
                        if not saved then ctx.Response.StatusCode <- 503
                        return! text (if saved then "saved" else "not saved") next ctx
                    | _ ->
                        return!
                            text
                                (match ctx.Session.GetString key with
                                 | null -> "(none)"
                                 | value -> value)
                                next
                                ctx
                }
            let services (services: IServiceCollection) = services.AddSesame().AddStore(store :> SessionStore).AddSessionCompatibility() |> ignore
            let pipeline (app: IApplicationBuilder) =
                app.UseSesame() |> ignore
                runHandler handler app
            use! host = startHostWith InMemory services pipeline (new LogCapture())
            let browser = Browser host
            let! before = browser.GetTextAsync "/save?key=before"
            Expect.equal before "saved" "saved while Redis is up"
            redis.Stop()
            let! response, body = browser.GetAsync "/save?key=during"
            Expect.equal (int response.StatusCode, body) (503, "not saved") "the commit threw: the app knows the change was not saved"
            redis.Start()
            // Once the connection is back, the session holds what was saved, and nothing reported unsaved.
            let clock = Stopwatch.StartNew()
            let mutable shown = None
            while shown.IsNone do
                let! response, body = browser.GetAsync "/get?key=before"
                if response.IsSuccessStatusCode && body = "saved" then shown <- Some body
                elif clock.Elapsed > TimeSpan.FromSeconds 30.0 then failwith $"Redis was not back within 30 s: {int response.StatusCode} {body}"
                else do! Task.Delay 100
            let! during = browser.GetTextAsync "/get?key=during"
            Expect.equal during "(none)" "the change made while Redis was down is not there"
        }
    ]
