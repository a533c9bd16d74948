/// Sessions that survive deploys, end to end on every store kind: a cart whose shape changes between versions 1 and 2,
/// with app instances of both versions on one store (two test hosts sharing the store object and the cookie keys, as
/// the instances of a rolling deploy share theirs).
module Sesame.Tests.ShapeTests

open System
open System.Collections.Concurrent
open System.Net
open System.Runtime.ExceptionServices
open System.Text.Json
open System.Threading
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.DataProtection
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Logging
open Expecto
open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

/// Version 1 of the cart: item names, and a total in euros.
type CartV1 = { Items: string list; Total: decimal }

/// A line of version 2's cart.
type Line = { Sku: string; Qty: int }

/// Version 2 of the cart: lines with quantities, and a total in cents.
type CartV2 = { Lines: Line list; TotalCents: int64 }

let private cart = SessionPath.parse "cart"

/// The migration from version 1 to 2 (typed: the old record in, the new one out).
let private toV2 (serializer: JsonSerializerOptions) (tree: Json) : Json =
    match SessionPath.tryGet cart tree with
    | Some old ->
        let v1 = Json.decodeWith<CartV1> serializer old
        let v2 = { Lines = [ for sku in v1.Items -> { Sku = sku; Qty = 1 } ]; TotalCents = int64 (v1.Total * 100m) }
        SessionPath.set cart (Json.encodeWith serializer v2) tree
    | None -> tree

/// A real store wrapped to keep every change it is given (commits and moves), upgrades included.
type private ChangeLog(inner: SessionStore) =
    inherit SessionStore()
    let changes = ConcurrentQueue<string * SessionChange>()
    member _.Changes = List.ofSeq changes
    override _.IsShared = inner.IsShared
    override _.LoadAsync(id, idle, ct) = inner.LoadAsync(id, idle, ct)
    override _.CommitAsync(id, change, options, ct) =
        changes.Enqueue((id, change))
        inner.CommitAsync(id, change, options, ct)
    override _.MoveAsync(fromId, toId, change, options, ct) =
        changes.Enqueue((toId, change))
        inner.MoveAsync(fromId, toId, change, options, ct)
    override _.DeleteAsync(id, ct) = inner.DeleteAsync(id, ct)
    override _.ListAsync(query, ct) = inner.ListAsync(query, ct)
    interface IDisposable with
        member _.Dispose() =
            match box inner with
            | :? IDisposable as disposable -> disposable.Dispose()
            | _ -> ()

/// Requests that wait until `count` of them have loaded the session, so that all of them load it before any commits.
type private Together(count: int) =
    let mutable arrived = 0
    let all = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    member _.ArriveAndWait() : Task =
        if Interlocked.Increment &arrived = count then all.SetResult()
        all.Task.WaitAsync(TimeSpan.FromSeconds 60.0)

/// A request that has loaded its session and waits for the test's go.
type private InFlight() =
    let loaded = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    let go = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    member _.Loaded = loaded.Task
    member _.Go() = go.SetResult()
    member _.Wait() : Task =
        loaded.TrySetResult() |> ignore
        go.Task.WaitAsync(TimeSpan.FromSeconds 60.0)

let private query (ctx: HttpContext) (name: string) = string ctx.Request.Query[name]

let private showCart: HttpHandler = Session.handler (fun s -> text (Json.serialize (defaultArg (s |> Session.tryFind "cart") Json.Null)))

/// What both versions serve.
let private common: HttpHandler list = [
    route "/id" >=> Session.handler (fun s -> text (string s.Id))
    route "/state" >=> Session.handler (fun s -> text $"shape {s.ShapeVersion}, read-only {s.IsReadOnly}")
    route "/visit" >=> Session.handler (fun s -> text (string (s |> Session.increment "visits" 1m)))
    route "/cart" >=> showCart
]

/// Version 1 of the app: it fills carts of item names.
let private v1 (inFlight: InFlight) : HttpHandler =
    choose (
        common
        @ [
            route "/fill"
            >=> Session.handler (fun s ->
                s |> Session.set "cart" { Items = [ "apple"; "pear" ]; Total = 3.5m }
                s |> Session.set "prefs" {| theme = "dark" |}
                s |> Session.increment "visits" 1m |> ignore
                text "filled")
            route "/add"
            >=> fun next ctx ->
                Session.handler
                    (fun s ->
                        s |> Session.append "cart.items" (query ctx "sku") |> ignore
                        text "added")
                    next
                    ctx
            route "/slow-add"
            >=> fun next ctx -> task {
                let! s = Session.loadAsync ctx
                do! inFlight.Wait()
                s |> Session.append "cart.items" (query ctx "sku") |> ignore
                return! text "added" next ctx
            }
        ]
    )

/// Version 2 of the app: carts of lines.
let private v2 (together: Together) : HttpHandler =
    choose (
        common
        @ [
            route "/add"
            >=> fun next ctx ->
                Session.handler
                    (fun s ->
                        s |> Session.append "cart.lines" { Sku = query ctx "sku"; Qty = 1 } |> ignore
                        text "added")
                    next
                    ctx
            route "/add-together"
            >=> fun next ctx -> task {
                let! s = Session.loadAsync ctx
                do! together.ArriveAndWait()
                s |> Session.append "cart.lines" { Sku = query ctx "sku"; Qty = 1 } |> ignore
                return! text "added" next ctx
            }
            route "/login"
            >=> fun next ctx -> task {
                let! s = Session.loadAsync ctx
                s |> Session.append "cart.lines" { Sku = "fig"; Qty = 2 } |> ignore
                let! _ = s |> Session.signInAsync "ada"
                return! text "signed in" next ctx
            }
            route "/typed"
            >=> Session.handler (fun s ->
                match s |> Session.tryGet<CartV2> "cart" with
                | Some c -> text $"{c.Lines.Length} lines, {c.TotalCents} cents"
                | None -> text "no cart")
            route "/typed-missing"
            >=> Session.handler (fun s ->
                match s |> Session.tryGetWith<CartV2> ReadFallback.Missing "cart" with
                | Some c -> text $"{c.Lines.Length} lines"
                | None -> text "no cart")
            route "/typed-default"
            >=> Session.handler (fun s ->
                let c = s |> Session.getOr "cart" { Lines = []; TotalCents = -1L }
                text $"{c.Lines.Length} lines, {c.TotalCents} cents")
            route "/typed-int" >=> Session.handler (fun s -> text (string (s |> Session.tryGetWith<int> ReadFallback.Missing "cart")))
        ]
    )

/// Failures as the body of a 500: the exception's type and message (the tests read them).
let private showFailures (app: IApplicationBuilder) =
    app.Use(
        Func<HttpContext, RequestDelegate, Task>(fun ctx next ->
            task {
                try
                    do! next.Invoke ctx
                with e ->
                    if ctx.Response.HasStarted then ExceptionDispatchInfo.Throw e
                    ctx.Response.Clear()
                    ctx.Response.StatusCode <- 500
                    do! ctx.Response.WriteAsync($"{e.GetType().Name}: {e.Message}")
            }
            :> Task)
    )
    |> ignore

/// One app instance of the given version on the shared store, with the cookie keys all instances share.
let private startInstance
    (server: Server)
    (store: SessionStore)
    (keys: IDataProtectionProvider)
    (version: int)
    (configure: SesameOptions -> unit)
    (app: HttpHandler)
    (logs: LogCapture)
    =
    let services (services: IServiceCollection) =
        services
            .AddSesame(fun options ->
                options.ShapeVersion <- version
                // Version 1 is when the app started declaring its shape: the sessions before it were already of that shape.
                if version >= 1 then options.Migrations.Add(0, fun tree -> tree) |> ignore
                if version >= 2 then options.Migrations.Add(1, toV2 options.SerializerOptions) |> ignore
                configure options)
            .AddStore(store)
        |> ignore
        services.AddSingleton<IDataProtectionProvider>(keys) |> ignore
    let pipeline (builder: IApplicationBuilder) =
        showFailures builder
        runHandler (withSession >=> app) builder
    startHostWith server services pipeline logs

let private noOptions (_: SesameOptions) = ()

/// The session as the store holds it now.
let private storedAs (store: SessionStore) (id: string) : Task<StoredSession> = store.LoadAsync(id, TimeSpan.FromMinutes 5.0, testToken ())

let private browserWith (host: Microsoft.Extensions.Hosting.IHost) (cookie: string option) =
    let browser = Browser host
    browser.Cookie <- cookie
    browser

let private statusOf (browser: Browser) (url: string) = task {
    let! response, body = browser.GetAsync url
    return response.StatusCode, body
}

let private migratedCart = """{"lines":[{"sku":"apple","qty":1},{"sku":"pear","qty":1}],"totalCents":350}"""

let private onStore (kind: StoreKind) =
    /// A fresh store of this kind, in a change log, and fresh keys: one deploy's world.
    let world () =
        let store = new ChangeLog(kind.Create TimeProvider.System)
        store, (EphemeralDataProtectionProvider() :> IDataProtectionProvider)

    testList kind.Name [
        testCaseTask "a session of an older shape is read migrated, stays as stored while requests only read it, and is stored migrated with the first change"
        <| fun () -> task {
            let store, keys = world ()
            use _ = store
            use! old = startInstance InMemory store keys 1 noOptions (v1 (InFlight())) (new LogCapture())
            let v2logs = new LogCapture()
            use! current = startInstance InMemory store keys 2 noOptions (v2 (Together 1)) v2logs
            let visitor = Browser old
            let! _ = visitor.GetTextAsync "/fill"
            let! id = visitor.GetTextAsync "/id"
            let onV2 = browserWith current visitor.Cookie
            let! read = onV2.GetTextAsync "/cart"
            Expect.equal read migratedCart "the handler reads the migrated cart"
            let! typed = onV2.GetTextAsync "/typed"
            Expect.equal typed "2 lines, 350 cents" "typed reads of the new shape"
            let! state = onV2.GetTextAsync "/state"
            Expect.equal state "shape 2, read-only False" "state"
            let! untouched = storedAs store id
            Expect.equal (SessionMeta.shapeOf untouched.Meta) 1 "reading writes nothing: still version 1"
            Expect.equal
                (Json.serialize untouched.Data)
                """{"cart":{"items":["apple","pear"],"total":3.5},"prefs":{"theme":"dark"},"visits":1}"""
                "as version 1 wrote it"
            Expect.isEmpty (store.Changes |> List.filter (fun (_, c) -> c.Upgrade.IsSome)) "no upgrade committed by reads"
            let! visits = onV2.GetTextAsync "/visit"
            Expect.equal visits "2" "visits"
            let! stored = storedAs store id
            Expect.equal (SessionMeta.shapeOf stored.Meta) 2 "stored at version 2"
            Expect.equal
                (Json.serialize stored.Data)
                $$"""{"cart":{{migratedCart}},"prefs":{"theme":"dark"},"visits":2}"""
                "stored migrated, with the request's change"
            let _, change = store.Changes |> List.last
            match change.Upgrade with
            | ValueSome upgrade ->
                Expect.equal (upgrade.From, upgrade.To) (1, 2) "the upgrade's versions"
                Expect.equal
                    (upgrade.Data.Updates |> List.map (fun u -> string u.Path) |> List.sort)
                    [ "cart.items"; "cart.lines"; "cart.total"; "cart.totalCents" ]
                    "the upgrade's patch touches only what the migration changed (not prefs, not visits)"
            | ValueNone -> failtest "the first change carries the upgrade"
            Expect.isTrue (v2logs.Entries |> List.exists (fun e -> e.EventId.Name = "SessionMigrated")) "the migration is logged (debug)"
            // Migrated once: the next request reads what is stored, with nothing to migrate.
            let! again = onV2.GetTextAsync "/visit"
            Expect.equal again "3" "again"
            let _, next = store.Changes |> List.last
            Expect.equal
                (next.Upgrade |> ValueOption.map (fun u -> u.From, u.To, u.Data.IsEmpty))
                (ValueSome(2, 2, true))
                "later changes only say which shape they were made for"
        }

        testCaseTask "a new session is created at the app's shape version"
        <| fun () -> task {
            let store, keys = world ()
            use _ = store
            use! current = startInstance InMemory store keys 2 noOptions (v2 (Together 1)) (new LogCapture())
            let visitor = Browser current
            let! _ = visitor.GetTextAsync "/add?sku=kiwi"
            let! id = visitor.GetTextAsync "/id"
            let! stored = storedAs store id
            Expect.equal (SessionMeta.shapeOf stored.Meta) 2 "created at version 2"
            Expect.equal (Json.serialize stored.Data) """{"cart":{"lines":[{"sku":"kiwi","qty":1}]}}""" "stored"
        }

        testCaseTask "concurrent requests that all loaded an old session migrate it once, and all their changes survive"
        <| fun () -> task {
            let store, keys = world ()
            use _ = store
            let count = 20
            use! old = startInstance InMemory store keys 1 noOptions (v1 (InFlight())) (new LogCapture())
            use! current = startInstance Kestrel store keys 2 noOptions (v2 (Together count)) (new LogCapture())
            let visitor = Browser old
            let! _ = visitor.GetTextAsync "/fill"
            let! id = visitor.GetTextAsync "/id"
            let onV2 = browserWith current visitor.Cookie
            let requests = [ for i in 1..count -> onV2.GetTextAsync $"/add-together?sku=s{i}" ]
            let! answers = Task.WhenAll requests
            Expect.allEqual answers "added" "every request succeeded"
            let upgrades = store.Changes |> List.filter (fun (_, c) -> c.Upgrade |> ValueOption.exists (fun u -> u.From = 1))
            Expect.equal upgrades.Length count "every request loaded version 1 and brought the upgrade"
            let! stored = storedAs store id
            Expect.equal (SessionMeta.shapeOf stored.Meta) 2 "version 2"
            let skus =
                match SessionPath.tryGet (SessionPath.parse "cart.lines") stored.Data with
                | Some(Json.Array lines) -> [ for line in lines -> Json.serialize (SessionPath.tryGet (SessionPath.parse "sku") line).Value ]
                | other -> failtest $"cart.lines is %A{other}"
            // Applied twice, the upgrade would have set the lines back to the migrated two, losing earlier appends.
            Expect.equal skus.[0..1] [ "\"apple\""; "\"pear\"" ] "the migrated lines, once"
            Expect.equal (List.sort skus.[2..]) (List.sort [ for i in 1..count -> $"\"s{i}\"" ]) "every request's line, once"
            Expect.equal (SessionPath.tryGet (SessionPath.parse "cart.totalCents") stored.Data) (Some(Json.int64 350L)) "the total in cents"
            Expect.isNone (SessionPath.tryGet (SessionPath.parse "cart.items") stored.Data) "nothing of the old shape"
        }

        testCaseTask "during a rolling deploy an old instance serves a session a new one migrated read-only, and never writes its shape into it"
        <| fun () -> task {
            let store, keys = world ()
            use _ = store
            let oldLogs = new LogCapture()
            use! old = startInstance InMemory store keys 1 noOptions (v1 (InFlight())) oldLogs
            use! current = startInstance InMemory store keys 2 noOptions (v2 (Together 1)) (new LogCapture())
            let visitor = Browser old
            let! _ = visitor.GetTextAsync "/fill"
            let! id = visitor.GetTextAsync "/id"
            let onV2 = browserWith current visitor.Cookie
            let! _ = onV2.GetTextAsync "/visit"
            let! before = storedAs store id
            let backOnOld = browserWith old visitor.Cookie
            let! state = backOnOld.GetTextAsync "/state"
            Expect.equal state "shape 2, read-only True" "the old instance sees a newer shape, read-only"
            let! read = backOnOld.GetTextAsync "/cart"
            Expect.equal read migratedCart "it reads the session as stored"
            let! status, body = statusOf backOnOld "/add?sku=plum"
            Expect.equal status HttpStatusCode.InternalServerError "a change is refused"
            Expect.stringStarts body "SessionShapeException: Cannot change 'cart.items'" "body"
            Expect.isFalse (body.Contains "plum") "the refusal names the path, not the value"
            let! visitStatus, _ = statusOf backOnOld "/visit"
            Expect.equal visitStatus HttpStatusCode.InternalServerError "any change of the tree"
            let! after = storedAs store id
            Expect.equal (Json.serialize after.Data) (Json.serialize before.Data) "the stored session is untouched"
            Expect.equal (SessionMeta.shapeOf after.Meta) 2 "still version 2"
            let newer = oldLogs.Entries |> List.filter (fun e -> e.EventId.Name = "SessionShapeNewer")
            Expect.isNonEmpty newer "the old instance logs what it met"
            Expect.stringContains newer.Head.Message "read-only" "and what it did"
            let! visits = onV2.GetTextAsync "/visit"
            Expect.equal visits "3" "the new instance carries on"
        }

        testCaseTask "an old instance set to start afresh gives a newer session's visitor a new session and leaves the stored one to the new instances"
        <| fun () -> task {
            let store, keys = world ()
            use _ = store
            use! old = startInstance InMemory store keys 1 (fun o -> o.NewerShape <- NewerShapePolicy.StartNew) (v1 (InFlight())) (new LogCapture())
            use! current = startInstance InMemory store keys 2 noOptions (v2 (Together 1)) (new LogCapture())
            let visitor = Browser old
            let! _ = visitor.GetTextAsync "/fill"
            let! id = visitor.GetTextAsync "/id"
            let migratedCookie = visitor.Cookie
            let! _ = (browserWith current migratedCookie).GetTextAsync "/visit"
            let! before = storedAs store id
            let backOnOld = browserWith old migratedCookie
            let! read = backOnOld.GetTextAsync "/cart"
            Expect.equal read "null" "a new, empty session"
            let! visits = backOnOld.GetTextAsync "/visit"
            Expect.equal visits "1" "changed, it is created"
            Expect.notEqual backOnOld.Cookie migratedCookie "under a new id, with a new cookie"
            let! after = storedAs store id
            Expect.equal (Json.serialize after.Data) (Json.serialize before.Data) "the newer session is untouched"
            let! onNew = (browserWith current migratedCookie).GetTextAsync "/cart"
            Expect.equal onNew migratedCart "the new instances still serve it"
        }

        testCaseTask "an old instance set to fail refuses a newer session and leaves it alone"
        <| fun () -> task {
            let store, keys = world ()
            use _ = store
            use! old = startInstance InMemory store keys 1 (fun o -> o.NewerShape <- NewerShapePolicy.Fail) (v1 (InFlight())) (new LogCapture())
            use! current = startInstance InMemory store keys 2 noOptions (v2 (Together 1)) (new LogCapture())
            let visitor = Browser old
            let! _ = visitor.GetTextAsync "/fill"
            let! id = visitor.GetTextAsync "/id"
            let! _ = (browserWith current visitor.Cookie).GetTextAsync "/visit"
            let! before = storedAs store id
            let! status, body = statusOf (browserWith old visitor.Cookie) "/cart"
            Expect.equal status HttpStatusCode.InternalServerError "refused"
            Expect.stringStarts body "SessionShapeException: The session's shape is version 2, newer than this app's 1" "body"
            let! after = storedAs store id
            Expect.equal (Json.serialize after.Data) (Json.serialize before.Data) "untouched"
        }

        testCaseTask "a change made for the old shape is not stored when a new instance migrates the session while the request runs"
        <| fun () -> task {
            let store, keys = world ()
            use _ = store
            let inFlight = InFlight()
            let oldLogs = new LogCapture()
            // On Kestrel: a commit that fails as the response starts is a 500, as a real server gives.
            use! old = startInstance Kestrel store keys 1 noOptions (v1 inFlight) oldLogs
            use! current = startInstance InMemory store keys 2 noOptions (v2 (Together 1)) (new LogCapture())
            let visitor = Browser old
            let! _ = visitor.GetTextAsync "/fill"
            let! id = visitor.GetTextAsync "/id"
            // The old instance loads version 1 and waits; meanwhile the new instance migrates and stores version 2.
            let slow = statusOf (browserWith old visitor.Cookie) "/slow-add?sku=plum"
            do! inFlight.Loaded
            let! _ = (browserWith current visitor.Cookie).GetTextAsync "/visit"
            inFlight.Go()
            let! status, _ = slow
            Expect.equal status HttpStatusCode.InternalServerError "the handler's change was not stored, and the request says so"
            let! stored = storedAs store id
            Expect.equal
                (Json.serialize stored.Data)
                $$"""{"cart":{{migratedCart}},"prefs":{"theme":"dark"},"visits":2}"""
                "nothing of version 1's change lands in version 2's tree"
            let warning = oldLogs.Entries |> List.find (fun e -> e.EventId.Name = "SessionShapeChanged")
            Expect.equal warning.Level LogLevel.Warning "warning.Level"
            Expect.isFalse (oldLogs.Entries |> List.exists (fun e -> e.EventId.Name = "SessionCommitFailed")) "logged once, as what it is"
        }

        testCaseTask "signing in a session of an older shape stores it migrated, with the request's change, under the new id"
        <| fun () -> task {
            let store, keys = world ()
            use _ = store
            use! old = startInstance InMemory store keys 1 noOptions (v1 (InFlight())) (new LogCapture())
            use! current = startInstance InMemory store keys 2 noOptions (v2 (Together 1)) (new LogCapture())
            let visitor = Browser old
            let! _ = visitor.GetTextAsync "/fill"
            let onV2 = browserWith current visitor.Cookie
            let! _ = onV2.GetTextAsync "/login"
            let! id = onV2.GetTextAsync "/id"
            let! stored = storedAs store id
            Expect.equal (SessionMeta.shapeOf stored.Meta) 2 "version 2"
            Expect.equal (SessionMeta.userOf stored.Meta) (Some "ada") "signed in"
            Expect.equal
                (Json.serialize (SessionPath.tryGet cart stored.Data).Value)
                """{"lines":[{"sku":"apple","qty":1},{"sku":"pear","qty":1},{"sku":"fig","qty":2}],"totalCents":350}"""
                "migrated, with the line the request added"
        }

        testCaseTask "a session whose migration fails starts afresh, logged, and the stored one is left as it is"
        <| fun () -> task {
            let store, keys = world ()
            use _ = store
            use! old = startInstance InMemory store keys 1 noOptions (v1 (InFlight())) (new LogCapture())
            let logs = new LogCapture()
            // Version 2 whose migration from 1 throws: built by hand, since startInstance adds the working one.
            let services (services: IServiceCollection) =
                services
                    .AddSesame(fun options ->
                        options.ShapeVersion <- 2
                        options.Migrations.Add(0, fun tree -> tree).Add(1, fun _ -> failwith "the migration has a bug") |> ignore)
                    .AddStore(store)
                |> ignore
                services.AddSingleton<IDataProtectionProvider>(keys) |> ignore
            use! current =
                startHostWith
                    InMemory
                    services
                    (fun app ->
                        showFailures app
                        runHandler (withSession >=> v2 (Together 1)) app)
                    logs
            let visitor = Browser old
            let! _ = visitor.GetTextAsync "/fill"
            let! id = visitor.GetTextAsync "/id"
            let! before = storedAs store id
            let onV2 = browserWith current visitor.Cookie
            let! read = onV2.GetTextAsync "/cart"
            Expect.equal read "null" "a new, empty session"
            let failure = logs.Entries |> List.find (fun e -> e.EventId.Name = "SessionMigrationFailed")
            Expect.equal failure.Level LogLevel.Error "failure.Level"
            Expect.equal failure.Error.Message "the migration has a bug" "with the migration's error"
            let! _ = onV2.GetTextAsync "/visit"
            Expect.notEqual onV2.Cookie visitor.Cookie "a change creates a new session"
            let! after = storedAs store id
            Expect.equal (Json.serialize after.Data) (Json.serialize before.Data) "the old session is left as it is"
            Expect.equal (SessionMeta.shapeOf after.Meta) 1 "at its version"
        }

        testCaseTask "a typed read of a value that no longer fits gets the fallback the app chose, per call or per path, and is logged once without its value"
        <| fun () -> task {
            let store, keys = world ()
            use _ = store
            use! old = startInstance InMemory store keys 1 noOptions (v1 (InFlight())) (new LogCapture())
            // Version 2 deployed without its migration (declared at 1): the stored carts no longer fit CartV2.
            let logs = new LogCapture()
            use! forgetful = startInstance InMemory store keys 1 noOptions (v2 (Together 1)) logs
            let visitor = Browser old
            let! _ = visitor.GetTextAsync "/fill"
            let! id = visitor.GetTextAsync "/id"
            let onV2 = browserWith forgetful visitor.Cookie
            let! status, body = statusOf onV2 "/typed"
            Expect.equal status HttpStatusCode.InternalServerError "by default a read that does not fit throws, as before"
            Expect.stringStarts body "JsonException: The session value at 'cart' cannot be read as CartV2" "naming the path and the type"
            let! missing = onV2.GetTextAsync "/typed-missing"
            Expect.equal missing "no cart" "per call: read as missing"
            let! again = onV2.GetTextAsync "/typed-missing"
            Expect.equal again "no cart" "again"
            let! byDefault = onV2.GetTextAsync "/typed-default"
            Expect.equal byDefault "0 lines, -1 cents" "per call: a default value"
            let! stored = storedAs store id
            Expect.isSome (SessionPath.tryGet cart stored.Data) "reading as missing leaves the stored value"
            let unreadable = logs.Entries |> List.filter (fun e -> e.EventId.Name = "SessionValueUnreadable")
            Expect.equal unreadable.Length 1 "logged once for the path and type, whatever the requests and fallbacks"
            Expect.equal unreadable.Head.Level LogLevel.Warning "unreadable.Head.Level"
            Expect.stringContains unreadable.Head.Message "'cart'" "with the path"
            Expect.stringContains unreadable.Head.Message "CartV2" "and the type"
            let! asInt = onV2.GetTextAsync "/typed-int"
            Expect.equal asInt "" "another type at the same path: missing too"
            let all = logs.Entries |> List.filter (fun e -> e.EventId.Name = "SessionValueUnreadable")
            Expect.equal all.Length 2 "another type is another failure to log, once"
            // Sesame's own entries, without the durations they name (a load may take 3.58 ms: not the cart's 3.5).
            for entry in logs.Entries |> List.filter (fun e -> e.Category.StartsWith "Sesame") do
                let message = Text.RegularExpressions.Regex.Replace(entry.Message, @"[0-9][0-9.]* ms\b", "(duration)")
                Expect.isFalse (message.Contains "apple" || message.Contains "pear" || message.Contains "3.5") $"no value in the log: {entry.Message}"
        }

        testCaseTask "a path prefix set to remove drops the value that no longer fits, stored with the request's changes"
        <| fun () -> task {
            let store, keys = world ()
            use _ = store
            use! old = startInstance InMemory store keys 1 noOptions (v1 (InFlight())) (new LogCapture())
            let removing (options: SesameOptions) = options.ReadFallbacks.Add("cart", ReadFallback.Remove) |> ignore
            use! forgetful = startInstance InMemory store keys 1 removing (v2 (Together 1)) (new LogCapture())
            let visitor = Browser old
            let! _ = visitor.GetTextAsync "/fill"
            let! id = visitor.GetTextAsync "/id"
            let onV2 = browserWith forgetful visitor.Cookie
            let! read = onV2.GetTextAsync "/typed"
            Expect.equal read "no cart" "the plain read uses the path's fallback"
            let! stored = storedAs store id
            Expect.equal (Json.serialize stored.Data) """{"prefs":{"theme":"dark"},"visits":1}""" "the value is gone from the store; the rest stays"
            let! next = onV2.GetTextAsync "/add?sku=kiwi"
            Expect.equal next "added" "the session heals: the app writes the new shape"
        }
    ]

[<Tests>]
let tests =
    testList "Shapes" [
        for kind in StoreKinds.all do
            onStore kind

        testCaseTask "an app whose shape version its migrations do not reach fails at startup, saying what to add"
        <| fun () -> task {
            let services (services: IServiceCollection) = services.AddSesame(fun options -> options.ShapeVersion <- 2) |> ignore
            let! error =
                throwsAsync<InvalidOperationException>(fun () ->
                    startHostWith InMemory services (fun app -> app.UseSesame() |> ignore) (new LogCapture()) :> Task)
            Expect.stringContains error.Message "no migration into it" "error.Message"
        }
    ]
