/// The README's F# code blocks, compiled. Each block is the code between `// readme: <name>` and `// readme end`
/// (ReadmeTests.fs checks every block appears here verbatim); the code around a snippet only gives a fragment what it
/// needs (a function with the values it names). Each block in a module of its own, so names do not clash.
module Sesame.Readme.Tests.Snippets

open System
open System.Collections.Concurrent
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.DependencyInjection
open Sesame

/// README: the Giraffe example at the top.
module CounterExample =
    // readme: giraffe-counter
    open Giraffe
    open Sesame

    let counter: HttpHandler =
        Session.handler (fun session ->
            let times = session |> Session.increment "times" 1m // exact, even under concurrency
            text $"{times} times!")

    let nested: HttpHandler =
        Session.handler (fun session ->
            if (session |> Session.tryFind "foo").IsNone then
                session |> Session.set "foo" {| bar = {| baz = 1 |} |}
            let baz = (session |> Session.tryGet<int64> "foo.bar.baz" |> Option.defaultValue 0L) * 2L
            session |> Session.set "foo.bar.baz" baz // one update at the full path
            text $"baz = {baz}")

    let webApp: HttpHandler = withSession >=> choose [ route "/" >=> counter; route "/nested" >=> nested ]

    // startup: services.AddSesame(fun o -> o.IdleTimeout <- TimeSpan.FromHours 1.0)
    // readme end

/// README: Minimal APIs.
module MinimalApiExample =
    let configure (builder: WebApplicationBuilder) =
        // readme: minimal-api
        builder.Services.AddSesame(fun options -> options.Cookie.Name <- "sid").AddMemoryStore() |> ignore
        let app = builder.Build()
        app.UseSesame() |> ignore
        app.MapGet("/count", Func<HttpContext, Task<string>>(fun ctx ->
            task {
                let! session = Session.loadAsync ctx
                let times = session |> Session.increment "times" 1m
                return $"{times} times!"
            })) |> ignore
        // readme end

/// README: Performance, Data Protection's algorithm for new sessions' cookies.
module DataProtectionAlgorithmExample =
    // readme: data-protection-gcm
    open Microsoft.AspNetCore.DataProtection
    open Microsoft.AspNetCore.DataProtection.AuthenticatedEncryption
    open Microsoft.AspNetCore.DataProtection.AuthenticatedEncryption.ConfigurationModel

    let configureServices (services: IServiceCollection) =
        services
            .AddDataProtection()
            .UseCryptographicAlgorithms(AuthenticatedEncryptorConfiguration(EncryptionAlgorithm = EncryptionAlgorithm.AES_256_GCM))
        |> ignore
        services.AddSesame() |> ignore
    // readme end

/// README: Security, tickets an older Sesame reads during a rolling upgrade.
module TicketFormatExample =
    // readme: ticket-format-protected
    let configureServices (services: IServiceCollection) =
        // Until no instance of a Sesame from before sealed tickets is left.
        services.AddSesame(fun options -> options.TicketFormat <- TicketFormat.Protected) |> ignore
    // readme end

/// README: flash messages.
module FlashExample =
    open Giraffe

    // readme: flash
    let save: HttpHandler =
        Session.handler (fun session ->
            session |> Session.flash "notice" "Saved."
            redirectTo false "/items")

    let items: HttpHandler =
        Session.handler (fun session ->
            let notice = session |> Session.tryGetFlash<string> "notice" // Some "Saved." once, then None
            text (defaultArg notice ""))
    // readme end

/// README: changing what you keep in sessions (types at module level, the registration in a function).
module ShapesExample =
    // readme: shapes
    type CartV1 = { Items: string list; Total: decimal }            // version 1
    type Line = { Sku: string; Qty: int }
    type Cart = { Lines: Line list; TotalCents: int64 }              // version 2

    // readme end

    let configure (services: IServiceCollection) =
        // readme: shapes
        services.AddSesame(fun options ->
            options.ShapeVersion <- 2
            options.Migrations
                .Add(0, fun tree -> tree) // version 1 was when the app started counting: its shape was the one before
                .Add(1, fun tree ->
                    match tree |> SessionPath.tryGet (SessionPath.parse "cart") with
                    | Some old ->
                        let v1 = Json.decodeWith<CartV1> options.SerializerOptions old
                        let cart = { Lines = [ for sku in v1.Items -> { Sku = sku; Qty = 1 } ]; TotalCents = int64 (v1.Total * 100m) }
                        tree |> SessionPath.set (SessionPath.parse "cart") (Json.encodeWith options.SerializerOptions cart)
                    | None -> tree)
            |> ignore)
        // readme end

    /// README: read fallbacks (the Cart above).
    let fallbacks (session: SessionHandle) (services: IServiceCollection) =
        // readme: read-fallbacks
        // per call
        let missing = session |> Session.tryGetWith<Cart> ReadFallback.Missing "cart"     // None
        let cart = session |> Session.getOr "cart" { Lines = []; TotalCents = 0L }       // the default
        // per path prefix, for every read at or below it
        services.AddSesame(fun options ->
            options.ReadFallbacks.Add("cart", ReadFallback.Remove).Add("prefs", ReadFallback.Missing) |> ignore
            options.ReadFallbacks.Default <- ReadFallback.Throw)
        // readme end

/// README: the file store.
module FileStoreExample =
    let configure (services: IServiceCollection) =
        // readme: file-store
        services.AddSesame().AddFileStore("sessions.db") |> ignore
        // readme end

/// README: the Redis store.
module RedisExample =
    // readme: redis-store
    open StackExchange.Redis

    // readme end

    let configure (services: IServiceCollection) =
        task {
            // readme: redis-store
            let! redis = ConnectionMultiplexer.ConnectAsync "localhost:6379,abortConnect=false" // any StackExchange.Redis configuration
            services
                .AddSesame(fun options -> options.IdleTimeout <- TimeSpan.FromHours 1.0) // cookie and timeouts, as usual
                .AddRedisStore(redis, "my-app", fun o -> o.KeyPrefix <- "shop:")
            |> ignore
            // readme end
        }

/// README: the Redis store's inline limit, at the suggested hash-max-listpack-value.
module RedisInlineLimitExample =
    let configure (services: IServiceCollection) (redis: StackExchange.Redis.IConnectionMultiplexer) =
        // readme: redis-inline-limit
        services
            .AddSesame()
            .AddRedisStore(redis, "my-app", fun o -> o.InlineLimit <- 256) // Redis's hash-max-listpack-value
        |> ignore
        // readme end

/// README: the PostgreSQL store.
module PostgresExample =
    let configure (services: IServiceCollection) =
        // readme: postgres-store
        services.AddSesame(fun options -> options.IdleTimeout <- TimeSpan.FromHours 1.0)
            .AddPostgresStore("Host=db;Database=app;Username=app;Password=...", fun o -> o.Schema <- "sessions")
        |> ignore
        // readme end

/// What the lifecycle-events example calls: an audit log and a cleanup queue of the app's.
type Audit() =
    member _.SignedIn(userId: string, handle: string) = ignore (userId, handle)

/// README: lifecycle events.
module EventsExample =
    let configure (services: IServiceCollection) (audit: Audit) (cleanup: ConcurrentQueue<string>) =
        // readme: lifecycle-events
        services.AddSesame(fun options ->
            options.Events.OnSignedIn <- Func<_, _>(fun ctx -> audit.SignedIn(ctx.UserId, ctx.Handle); Task.CompletedTask)
            options.Events.OnExpired <- Func<_, _>(fun ctx -> cleanup.Enqueue ctx.SessionId; Task.CompletedTask))
        // readme end

/// README: users and their devices.
module UsersExample =
    // readme: users-and-devices
    open Sesame

    let signIn (userId: string) : HttpHandler =
        fun next ctx ->
            task {
                let! session = Session.loadAsync ctx
                match! session |> Session.signInAsync userId with
                | SignInResult.SignedIn -> return! next ctx
                | _ -> return None // MaxSessionsPerUser reached with UserLimitPolicy.Refuse
            }

    let devices: HttpHandler =
        fun next ctx ->
            task {
                let! session = Session.loadAsync ctx
                match Session.userId session with
                | None -> return None
                | Some user ->
                    let! sessions = Sessions.ofUserAsync user ctx // least recently used first
                    for s in sessions do
                        // s.Handle names a session without giving its id away; s.Meta holds the device facts
                        printfn "%s last seen %O" s.Handle s.LastSeen
                    return! next ctx
            }
    // readme end

/// README: login, logout and your devices in the samples.
module SampleAccountExample =
    open Giraffe

    /// What the sample's formValue does: a posted field.
    let private formValue (name: string) (ctx: HttpContext) : Task<string> =
        task {
            let! form = ctx.Request.ReadFormAsync ctx.RequestAborted
            return string form[name]
        }

    // readme: sample-account
    // F#: samples/Giraffe/Account.fs (formValue reads a posted field)
    let login: HttpHandler =
        Session.handler (fun session next ctx ->
            task {
                let! user = formValue "user" ctx                  // a real app checks a password here
                match! Session.signInAsync user session with      // new id, bound to the user, device facts recorded
                | SignInResult.SignedIn -> return! redirectTo false "/me" next ctx
                | _ -> return! (setStatusCode 409 >=> text "Signed in on too many devices") next ctx
            })

    let logout: HttpHandler =
        Session.handler (fun session next ctx ->
            task {
                do! Session.signOutAsync session                  // destroyed: gone from the store and the user's devices
                return! redirectTo false "/login" next ctx
            })

    // "your devices": the user's sessions with their device facts, least recently used first
    let devices (user: string) (session: SessionHandle) (ctx: HttpContext) =
        task {
            let! sessions = Sessions.ofUserAsync user ctx         // s.Meta["device"]: userAgent, ip, signedIn
            let current = SessionSummary.HandleOf session.Id      // show handles, never ids
            return sessions |> List.map (fun s -> s.Handle, s.Handle = current)
        }

    let endDevice (user: string) (handle: string) (session: SessionHandle) (ctx: HttpContext) =
        task {
            let! _ = Sessions.endByHandleAsync user handle ctx    // the "Sign out" button of another device
            let! others = Sessions.endOthersAsync session ctx     // "Sign out all other devices"
            return others
        }
    // readme end

    /// A login that starts clean.
    let startClean (user: string) (session: SessionHandle) =
        task {
            // readme: start-clean
            do! Session.destroyAsync session                     // C#: await session.DestroyAsync();
            let! result = Session.signInAsync user session       // a new session, bound to the user, with nothing planted
            // readme end
            return result
        }
