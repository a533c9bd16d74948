/// The app under load: one Kestrel server on loopback with a branch per contender, each written
/// the way its users write it. Every branch answers the same routes:
///   /counter      increment a counter, answer "N times!"
///   /nested       node-sesame's example: make foo.bar.baz if missing, then double it
///   /read         read the counter, change nothing
///   /untouched    answer without using the session (what the middleware costs a request that ignores it)
///   /value        the counter's value (for the lost-update check)
///   /key?k=NAME   set one key of its own (for the lost-update check)
///   /keys         how many keys /key has set
/// The floors (Floors.fs, under /floor/redis and /floor/file) answer /counter only.
/// With ?work=MS a route waits that long after changing the session, before answering (a stand-in for
/// a database call), so that concurrent requests of one session overlap.
module Sesame.LoadTest.App

open System
open System.Net
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.DataProtection
open Microsoft.AspNetCore.DataProtection.AuthenticatedEncryption
open Microsoft.AspNetCore.DataProtection.AuthenticatedEncryption.ConfigurationModel
open Microsoft.AspNetCore.Hosting
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Logging
open Sesame
open Sesame.Redis

/// node-sesame's nested value, typed as an ASP.NET Core Session user would type it.
type Bar = { Baz: int64 }
type Foo = { Bar: Bar }

/// Doubles baz, starting again at 1 before it overflows (so every request does the same work).
let doubled (baz: int64) = if baz >= (1L <<< 40) then 1L else baz * 2L

let private reply (ctx: HttpContext) (text: string) = ctx.Response.WriteAsync text

/// The ?work=MS pause (none without a query string, so the measured routes never parse one).
let private work (ctx: HttpContext) : Task =
    if ctx.Request.QueryString.HasValue then
        match Int32.TryParse(string ctx.Request.Query["work"]) with
        | true, ms when ms > 0 -> Task.Delay ms
        | _ -> Task.CompletedTask
    else
        Task.CompletedTask

/// The usual JSON helpers people write over ASP.NET Core's byte-oriented ISession.
type ISession with
    member session.GetJson<'value>(key: string) : 'value option =
        match session.GetString key with
        | null -> None
        | text -> Some(JsonSerializer.Deserialize<'value> text)

    member session.SetJson<'value>(key: string, value: 'value) = session.SetString(key, JsonSerializer.Serialize value)

/// ASP.NET Core Session over AddDistributedMemoryCache, as people use it.
let aspNetCoreSession (ctx: HttpContext) : Task =
    let session = ctx.Session
    task {
        match ctx.Request.Path.Value with
        | "/counter" ->
            let times = (session.GetInt32 "times" |> Option.ofNullable |> Option.defaultValue 0) + 1
            session.SetInt32("times", times)
            do! work ctx
            do! reply ctx $"{times} times!"
        | "/nested" ->
            let foo = session.GetJson<Foo> "foo" |> Option.defaultValue { Bar = { Baz = 1L } }
            let baz = doubled foo.Bar.Baz
            session.SetJson("foo", { foo with Bar = { Baz = baz } })
            do! reply ctx $"baz = {baz}"
        | "/read"
        | "/value" ->
            let times = session.GetInt32 "times" |> Option.ofNullable |> Option.defaultValue 0
            do! reply ctx $"{times}"
        | "/key" ->
            session.SetInt32("key:" + string ctx.Request.Query["k"], 1)
            do! work ctx
            do! reply ctx "ok"
        | "/keys" ->
            let count = session.Keys |> Seq.filter (fun k -> k.StartsWith "key:") |> Seq.length
            do! reply ctx $"{count}"
        | _ -> ctx.Response.StatusCode <- 404
    }

/// Sesame, through its F# API (the same whatever the store).
let sesame (ctx: HttpContext) : Task =
    if ctx.Request.Path.Value = "/untouched" then
        reply ctx "ok"
    else
        task {
            let! session = Session.loadAsync ctx
            match ctx.Request.Path.Value with
            | "/counter" ->
                let times = session |> Session.increment "times" 1m
                do! work ctx
                do! reply ctx $"{times} times!"
            | "/nested" ->
                if (session |> Session.tryFind "foo").IsNone then session |> Session.set "foo" {| bar = {| baz = 1 |} |}
                let baz = session |> Session.tryGet<int64> "foo.bar.baz" |> Option.defaultValue 0L |> doubled
                session |> Session.set "foo.bar.baz" baz
                do! reply ctx $"baz = {baz}"
            | "/read"
            | "/value" ->
                let times = session |> Session.tryGet<int64> "times" |> Option.defaultValue 0L
                do! reply ctx $"{times}"
            | "/key" ->
                let key = string ctx.Request.Query["k"]
                session |> Session.set $"keys.{key}" 1
                do! work ctx
                do! reply ctx "ok"
            | "/keys" ->
                let count =
                    match session |> Session.tryFind "keys" with
                    | Some(Json.Object keys) -> keys.Count
                    | _ -> 0
                do! reply ctx $"{count}"
            | _ -> ctx.Response.StatusCode <- 404
        }

/// The environment variable that carries the load test's --ticket-format choice to the app ("protected", or the default).
[<Literal>]
let TicketFormatVariable = "SESAME_LOADTEST_TICKET_FORMAT"

/// Sesame's options as the load test's --ticket-format says: the default, or tickets protected by Data Protection.
let private configureSesame (options: SesameOptions) =
    if Environment.GetEnvironmentVariable TicketFormatVariable = "protected" then options.TicketFormat <- TicketFormat.Protected

/// Sesame over a store of its own: a runtime built by AddSesame in a container of its own, given to
/// the branch's middleware (one app, several stores, each configured exactly as an app would configure it).
let private sesameOver (store: SessionStore) (loggerFactory: ILoggerFactory) =
    let services = ServiceCollection()
    services.AddSingleton<ILoggerFactory>(loggerFactory).AddLogging() |> ignore
    services.AddSesame(configureSesame).AddStore(store) |> ignore
    Func<RequestDelegate, RequestDelegate>(SesameMiddleware.create (services.BuildServiceProvider().GetRequiredService<SesameRuntime>()))

/// The environment variable that carries the load test's --data-protection choice to the app ("aes-gcm", or the default).
[<Literal>]
let DataProtectionVariable = "SESAME_LOADTEST_DATA_PROTECTION"

/// Runs the app on 127.0.0.1:port until killed; prints READY once it listens.
let serve (port: int) (redisPort: int) (filePath: string) (postgresPort: int) =
    let builder = WebApplication.CreateBuilder()
    builder.Logging.ClearProviders().AddSimpleConsole().SetMinimumLevel(LogLevel.Warning) |> ignore
    // At the end of every run wrk drops its connections with requests in flight; their commits are
    // cancelled with them (the file and Redis stores honour the request's abort token) and logged as
    // errors. That is noise here: a failure a client sees is counted by wrk as a non-2xx response.
    builder.Logging.AddFilter("Sesame", LogLevel.Critical).AddFilter("Microsoft.AspNetCore.Server.Kestrel", LogLevel.Critical) |> ignore
    builder.WebHost.UseKestrel(fun kestrel ->
        kestrel.AddServerHeader <- false
        kestrel.Listen(IPAddress.Loopback, port))
    |> ignore
    builder.Services.AddDistributedMemoryCache().AddSession() |> ignore
    builder.Services.AddSesame(configureSesame) |> ignore // the memory store, Sesame's default
    // --data-protection aes-gcm: every cookie the app protects (Sesame's and ASP.NET Core Session's) with AES-256-GCM,
    // under a key made for it (the algorithm applies to keys made after it is set, not to an existing one), kept beside
    // the session file, in the folder the load test deletes at its end.
    if Environment.GetEnvironmentVariable DataProtectionVariable = "aes-gcm" then
        builder.Services
            .AddDataProtection()
            .PersistKeysToFileSystem(IO.DirectoryInfo(IO.Path.Combine(IO.Path.GetDirectoryName filePath, "keys")))
            .UseCryptographicAlgorithms(AuthenticatedEncryptorConfiguration(EncryptionAlgorithm = EncryptionAlgorithm.AES_256_GCM))
        |> ignore
    let app = builder.Build()
    let loggerFactory = app.Services.GetRequiredService<ILoggerFactory>()
    let file = FileStore.Open(filePath, FileStoreOptions(), loggerFactory.CreateLogger "FileStore")
    let redis = (RedisStore.ConnectAsync($"127.0.0.1:{redisPort}", RedisStoreOptions(), loggerFactory.CreateLogger "RedisStore")).Result
    let postgres =
        new Sesame.Postgres.PostgresStore(
            $"Host=127.0.0.1;Port={postgresPort};Username=sesame;Database=postgres",
            Sesame.Postgres.PostgresStoreOptions(),
            loggerFactory.CreateLogger "PostgresStore"
        )
    postgres.EnsureSchemaAsync(Threading.CancellationToken.None).GetAwaiter().GetResult()
    let redisFloor = (Floors.RedisFloor.ConnectAsync $"127.0.0.1:{redisPort}").Result
    // On the same disk as the file store's file, in a file of its own.
    let fileFloor = new Floors.FileFloor(IO.Path.Combine(IO.Path.GetDirectoryName filePath, "floor.db"))
    let branch (prefix: string) (configure: IApplicationBuilder -> unit) = app.Map(PathString prefix, Action<IApplicationBuilder> configure) |> ignore
    branch "/plain" (fun b -> b.Run(fun ctx -> reply ctx "ok"))
    branch "/aspnet" (fun b -> b.UseSession().Run(RequestDelegate aspNetCoreSession))
    branch "/memory" (fun b -> b.UseSesame().Run(RequestDelegate sesame))
    branch "/file" (fun b -> b.Use(sesameOver file loggerFactory).Run(RequestDelegate sesame))
    branch "/redis" (fun b -> b.Use(sesameOver redis loggerFactory).Run(RequestDelegate sesame))
    branch "/postgres" (fun b -> b.Use(sesameOver postgres loggerFactory).Run(RequestDelegate sesame))
    branch "/floor/redis" (fun b -> b.Run(RequestDelegate redisFloor.HandleAsync))
    branch "/floor/file" (fun b -> b.Run(RequestDelegate fileFloor.HandleAsync))
    app.Lifetime.ApplicationStarted.Register(fun () -> Console.WriteLine "READY") |> ignore
    app.Run()
    (file :> IDisposable).Dispose()
    (redis :> IDisposable).Dispose()
    (postgres :> IDisposable).Dispose()
    (redisFloor :> IDisposable).Dispose()
    (fileFloor :> IDisposable).Dispose()
