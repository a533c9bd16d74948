/// Apps on the PostgreSQL store, end to end through Kestrel: two instances sharing one database, concurrent
/// increments and appends through the real HTTP pipeline, registration on Sesame's builder, sign-in.
/// They load the machine (hundreds of concurrent requests), so they run on their own (testSequenced).
module Sesame.Postgres.Tests.PostgresAppTests

open System
open System.IO
open System.Net
open System.Net.Http
open System.Threading
open System.Threading.Tasks
open Microsoft.AspNetCore.DataProtection
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Hosting
open Expecto
open Sesame
open Sesame.Postgres
open Sesame.Postgres.Tests.PostgresServer
open Sesame.Samples.Giraffe
open Sesame.Samples.Giraffe.GiraffeShape
open Sesame.Tests

/// The sample's counter, nested and show handlers, plus a cart, an append, and a sign-in.
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
        route "/log"
        >=> fun next ctx ->
            Session.handler
                (fun s ->
                    s |> Session.append "log" (string ctx.Request.Query["n"]) |> ignore
                    text "logged")
                next
                ctx
        route "/sign-in"
        >=> fun next ctx -> task {
            let! session = Session.loadAsync ctx
            let! result = session |> Session.signInAsync "ada"
            return! text (string result) next ctx
        }
    ]

/// Starts an app instance registered with AddPostgresStore on the given database and tables; its Data Protection
/// keys live in `keys` under a fixed application name, so instances given the same folder share them.
let private startInstance (connectionString: string) (table: string) (keys: DirectoryInfo) (logs: LogCapture) : Task<IHost> =
    let services (services: IServiceCollection) =
        services.AddRouting() |> ignore
        services
            .AddSesame()
            .AddPostgresStore(
                connectionString,
                fun o ->
                    o.TableName <- table
                    // Far above what a commit takes: a loaded machine slows the test down without failing it.
                    o.OperationTimeout <- TimeSpan.FromSeconds 60.0
            )
        |> ignore
        services.AddDataProtection().PersistKeysToFileSystem(keys).SetApplicationName("sesame-postgres-test") |> ignore
    startHostWith Kestrel services (runHandler app) logs

let private keysNotShared (logs: LogCapture) = logs.Entries |> List.filter (fun e -> e.EventId.Name = "DataProtectionKeysNotShared")

[<Tests>]
let tests =
    testSequenced
    <| testList "postgres apps" [
        testCaseTask "two app instances on one database serve one session alternately, and concurrent increments and appends across both are all kept"
        <| fun () -> task {
            let database = freshDatabase "apps"
            use keys = new TempDirectory "sesame-keys-"
            let logsA, logsB = new LogCapture(), new LogCapture()
            use! instanceA = startInstance database "shared" keys.Info logsA
            use! instanceB = startInstance database "shared" keys.Info logsB
            Expect.notEqual (addressOf instanceB) (addressOf instanceA) "two instances"
            // One browser's cookie jar: both instances are on 127.0.0.1, and cookies do not care about ports.
            let jar = CookieContainer()
            let clientOf host = new HttpClient(new HttpClientHandler(CookieContainer = jar, UseCookies = true), BaseAddress = addressOf host)
            use onA = clientOf instanceA
            use onB = clientOf instanceB
            let get (client: HttpClient) (url: string) = task {
                let! response = client.GetAsync url
                let! body = response.Content.ReadAsStringAsync()
                Expect.isTrue response.IsSuccessStatusCode $"GET {url} on {client.BaseAddress} answered {int response.StatusCode}: {body}"
                return body
            }
            let! first = get onA "/"
            Expect.equal first "1 times!" "first, on A"
            let! second = get onB "/"
            Expect.equal second "2 times!" "second, on B"
            let! nested1 = get onA "/nested"
            Expect.equal nested1 "3 times! baz = 2" "nested on A"
            let! nested2 = get onB "/nested"
            Expect.equal nested2 "4 times! baz = 4" "nested on B, doubling what A stored"
            let! _ = get onA "/cart"
            let! _ = get onB "/cart/add"
            let! seenOnA = get onA "/session"
            Expect.equal
                seenOnA
                """{"times":4,"foo":{"bar":{"baz":4}},"cart":{"items":[{"qty":2,"sku":"apple"},{"qty":1,"sku":"pear"}]}}"""
                "set on A, extended on B, read on A"
            let! _ = get onB "/cart/remove"
            // 100 increments and 100 appends at once, half on each instance, all of one session.
            let gate = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
            let requests = [
                for i in 1..200 ->
                    task {
                        do! gate.Task
                        let client = if i % 2 = 0 then onA else onB
                        let! _ = get client (if i <= 100 then "/hit" else $"/log?n={i}")
                        ()
                    }
            ]
            gate.SetResult()
            let! _ = Task.WhenAll requests
            let! final = get onA "/session"
            let tree = Json.parse final
            Expect.equal (SessionPath.tryGet (SessionPath.parse "hits") tree) (Some(Json.parse "100")) "every increment"
            match SessionPath.tryGet (SessionPath.parse "log") tree with
            | Some(Json.Array items) ->
                let logged =
                    items
                    |> Seq.map (function
                        | Json.String s -> s
                        | other -> failtestf "log item %A" other)
                    |> Seq.sort
                    |> List.ofSeq
                Expect.equal logged ([ for i in 101..200 -> string i ] |> List.sort) "every append, once"
            | other -> failtestf "log is %A" other
            let! finalOnB = get onB "/session"
            Expect.equal finalOnB final "both instances see the same session"
            Expect.isEmpty (keysNotShared logsA @ keysNotShared logsB) "no key-ring warning with a shared key ring"
        }

        testCaseTask "an app on the PostgreSQL store without a persisted key ring is warned about at startup"
        <| fun () -> task {
            let database = freshDatabase "warned"
            let logs = new LogCapture()
            let services (services: IServiceCollection) =
                services.AddRouting() |> ignore
                services.AddSesame().AddPostgresStore(database) |> ignore
            use! _host = startHostWith InMemory services (runHandler app) logs
            let warning = keysNotShared logs |> List.exactlyOne
            Expect.stringContains warning.Message "PostgresStore" "names the store"
        }

        testCaseTask "the Giraffe sample's --store postgres: mode opens the store, and its start-up line keeps the password out"
        <| fun () -> task {
            let database = freshDatabase "sample"
            let withPassword = database + ";Password=not-to-be-shown"
            match StoreChoice.parse ("postgres:" + withPassword) with
            | Ok(StoreChoice.Postgres connection as choice) ->
                Expect.equal connection withPassword "the connection string, as given"
                use loggers = Microsoft.Extensions.Logging.LoggerFactory.Create(fun _ -> ())
                let! store, description = StoreChoice.openStore choice loggers
                use _ = box store :?> IDisposable
                Expect.isFalse (description.Contains "not-to-be-shown") "no password in the start-up line"
                Expect.stringContains description "postgres 127.0.0.1/" "host and database"
                let! committed =
                    store.CommitAsync(
                        "sample-session",
                        SessionChange(Patch.fold [ Update.Set(SessionPath.parse "a", Json.Bool true) ]),
                        { IdleTimeout = TimeSpan.FromMinutes 1.0; MustExist = false; MaxSizeBytes = 1000; UserLimit = UserLimit.None },
                        CancellationToken.None
                    )
                Expect.equal committed CommitResult.Committed "the store works"
            | other -> failtestf "parsed as %A" other
        }

        testCaseTask "a sign-in through the app binds the session to its user in the database"
        <| fun () -> task {
            let database = freshDatabase "signin"
            use keys = new TempDirectory "sesame-keys-"
            let logs = new LogCapture()
            use! host = startInstance database "signin" keys.Info logs
            let browser = Browser host
            let! _ = browser.GetTextAsync "/"
            let before = browser.Cookie
            let! result = browser.GetTextAsync "/sign-in"
            Expect.equal result (string SignInResult.SignedIn) "signed in"
            Expect.notEqual browser.Cookie before "the id rotated"
            let! after = browser.GetTextAsync "/"
            Expect.equal after "2 times!" "the session went on under its new id"
            let store = host.Services.GetRequiredService<SessionStore>()
            let! sessions = store |> SessionStore.listAllAsync (SessionQuery.OfUser "ada") CancellationToken.None
            Expect.equal sessions.Length 1 "the user's index"
        }
    ]
