/// Where a new session's time goes (issue #21): a whole first visit (no cookie; the handler increments a counter, so
/// the session is created and its cookie written) against a returning visit, and the new session's own steps: Data
/// Protection's Protect of the cookie's ticket, the id from the CSPRNG, and the memory store's insert of a new session
/// below its bound and at it (where every insert evicts).
///
///   dotnet run -c Release --project bench/Sesame.Benchmarks -- --filter '*NewSession*'
module Sesame.Benchmarks.NewSessionBenchmarks

open System
open System.Threading
open BenchmarkDotNet.Attributes
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.DataProtection
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Logging
open Sesame

let private counter =
    RequestDelegate(fun ctx -> task {
        let! session = Session.loadAsync ctx
        let times = session |> Session.increment "times" 1m
        do! ctx.Response.WriteAsync $"{times} times!"
    })

let private creating = {
    IdleTimeout = TimeSpan.FromMinutes 20.0
    MustExist = false
    MaxSizeBytes = SesameOptions.DefaultMaxSessionBytes
    UserLimit = UserLimit.None
}

[<MemoryDiagnoser>]
type NewSessionBenchmarks() =
    let mutable services: IServiceProvider = null
    let mutable pipeline: RequestDelegate = null
    let mutable cookie = ""
    let mutable protector: IDataProtector = null
    let mutable belowBound: MemoryStore = Unchecked.defaultof<_>
    let mutable atBound: MemoryStore = Unchecked.defaultof<_>
    let ticket = SessionTicket.format { Id = SessionId.create (); Created = DateTimeOffset.UtcNow }
    let change = SessionChange(Patch.fold [ Update.increment (SessionPath.parse "times") 1m ])

    let context (cookie: string) =
        let context = DefaultHttpContext(RequestServices = services)
        context.Request.Method <- "GET"
        context.Request.Path <- PathString "/"
        if not (isNull cookie) then context.Request.Headers.Cookie <- cookie
        context

    [<GlobalSetup>]
    member _.Setup() =
        let builder = WebApplication.CreateBuilder()
        builder.Logging.ClearProviders() |> ignore
        builder.Services.AddSesame() |> ignore
        let app = builder.Build()
        services <- app.Services
        let pipe = ApplicationBuilder(services)
        pipe.UseSesame().Run counter
        pipeline <- pipe.Build()
        let first = context null
        pipeline.Invoke(first).GetAwaiter().GetResult()
        let setCookie = string first.Response.Headers.SetCookie
        cookie <- setCookie.Substring(0, setCookie.IndexOf ';')
        protector <- services.GetRequiredService<IDataProtectionProvider>().CreateProtector "Sesame.SessionCookie.v1"
        belowBound <- new MemoryStore(MemoryStoreOptions(MaxSessions = Int32.MaxValue))
        atBound <- new MemoryStore(MemoryStoreOptions(MaxSessions = 100_000))
        for _ in 1..100_000 do
            atBound.CommitAsync(SessionId.create (), change, creating, CancellationToken.None).Wait()

    /// A returning visit: the cookie validated from cache, one load and one commit.
    [<Benchmark(Baseline = true)>]
    member _.ReturningVisit() = pipeline.Invoke(context cookie).GetAwaiter().GetResult()

    /// A first visit: a new id, a commit that creates the session, and a protected cookie.
    [<Benchmark>]
    member _.FirstVisit() = pipeline.Invoke(context null).GetAwaiter().GetResult()

    /// Data Protection's Protect of a ticket: once per new session.
    [<Benchmark>]
    member _.ProtectTicket() = protector.Protect ticket

    /// 192 bits from the CSPRNG, as an id.
    [<Benchmark>]
    member _.CreateId() = SessionId.create ()

    /// The memory store's insert of a new session, far below its bound.
    [<Benchmark>]
    member _.InsertBelowBound() = belowBound.CommitAsync(SessionId.create (), change, creating, CancellationToken.None).Result

    /// The memory store's insert of a new session when it holds its bound of 100,000: each insert makes room.
    [<Benchmark>]
    member _.InsertAtBound() = atBound.CommitAsync(SessionId.create (), change, creating, CancellationToken.None).Result
