/// Where a new session's time goes (issue #21): a whole first visit (no cookie; the handler increments a counter, so
/// the session is created and its cookie written) against a returning visit, and the new session's own steps: Data
/// Protection's Protect of the cookie's ticket, the id from the CSPRNG, and the memory store's insert of a new session
/// below its bound and at it (where every insert evicts). The first visit and Protect run twice: with Data Protection's
/// default algorithms (AES-256-CBC and HMACSHA256) and with AES-256-GCM, each app with a key ring of its own made for it.
/// The first visit runs with the ticket sealed (the default) and protected by Data Protection (TicketFormat.Protected),
/// and a sealed ticket's own steps beside Data Protection's: sealing one, and opening one whose key is known.
///
///   dotnet run -c Release --project bench/Sesame.Benchmarks -- --filter '*NewSession*'
module Sesame.Benchmarks.NewSessionBenchmarks

open System
open System.Threading
open BenchmarkDotNet.Attributes
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.DataProtection
open Microsoft.AspNetCore.DataProtection.AuthenticatedEncryption
open Microsoft.AspNetCore.DataProtection.AuthenticatedEncryption.ConfigurationModel
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Logging
open Microsoft.Extensions.Logging.Abstractions
open Sesame

/// The load test's counter handler (ReturningVisitBenchmarks runs it too).
let internal counter =
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

/// An app of Sesame over the counter, its Data Protection keys in a folder of their own (so that its key is made with
/// the algorithms asked for: they apply to keys made after they are set).
type private CounterApp = { Pipeline: RequestDelegate; Services: IServiceProvider; Protector: IDataProtector; Keys: string }

let private counterApp (aesGcm: bool) (format: TicketFormat) =
    let builder = WebApplication.CreateBuilder()
    builder.Logging.ClearProviders() |> ignore
    let keys = IO.Path.Combine(IO.Path.GetTempPath(), $"sesame-bench-keys-{Guid.NewGuid():N}")
    let protection = builder.Services.AddDataProtection().PersistKeysToFileSystem(IO.DirectoryInfo keys)
    if aesGcm then protection.UseCryptographicAlgorithms(AuthenticatedEncryptorConfiguration(EncryptionAlgorithm = EncryptionAlgorithm.AES_256_GCM)) |> ignore
    builder.Services.AddSesame(fun options -> options.TicketFormat <- format) |> ignore
    let app = builder.Build()
    let pipe = ApplicationBuilder(app.Services)
    pipe.UseSesame().Run counter
    {
        Pipeline = pipe.Build()
        Services = app.Services
        Protector = app.Services.GetRequiredService<IDataProtectionProvider>().CreateProtector "Sesame.SessionCookie.v1"
        Keys = keys
    }

[<MemoryDiagnoser>]
type NewSessionBenchmarks() =
    let mutable cbc = Unchecked.defaultof<CounterApp>
    let mutable gcm = Unchecked.defaultof<CounterApp>
    let mutable cbcProtected = Unchecked.defaultof<CounterApp>
    let mutable gcmProtected = Unchecked.defaultof<CounterApp>
    let mutable seal = Unchecked.defaultof<TicketSeal>
    let mutable sealedTicket = ""
    let mutable cookie = ""
    let mutable protectedByCbc = ""
    let mutable protectedByGcm = ""
    let mutable belowBound: MemoryStore = Unchecked.defaultof<_>
    let mutable atBound: MemoryStore = Unchecked.defaultof<_>
    let ticket = SessionTicket.format { Id = SessionId.create (); Created = DateTimeOffset.UtcNow }
    let change = SessionChange(Patch.fold [ Update.increment (SessionPath.parse "times") 1m ])

    let context (app: CounterApp) (cookie: string) =
        let context = DefaultHttpContext(RequestServices = app.Services)
        context.Request.Method <- "GET"
        context.Request.Path <- PathString "/"
        if not (isNull cookie) then context.Request.Headers.Cookie <- cookie
        context

    [<GlobalSetup>]
    member _.Setup() =
        cbc <- counterApp false TicketFormat.Sealed
        gcm <- counterApp true TicketFormat.Sealed
        cbcProtected <- counterApp false TicketFormat.Protected
        gcmProtected <- counterApp true TicketFormat.Protected
        seal <-
            TicketSeal(cbc.Services.GetRequiredService<IDataProtectionProvider>().CreateProtector TicketSeal.Purpose, TimeProvider.System, NullLogger.Instance)
        sealedTicket <- seal.Seal ticket
        let first = context cbc null
        cbc.Pipeline.Invoke(first).GetAwaiter().GetResult()
        let setCookie = string first.Response.Headers.SetCookie
        cookie <- setCookie.Substring(0, setCookie.IndexOf ';')
        protectedByCbc <- cbc.Protector.Protect ticket
        protectedByGcm <- gcm.Protector.Protect ticket
        belowBound <- new MemoryStore(MemoryStoreOptions(MaxSessions = Int32.MaxValue))
        atBound <- new MemoryStore(MemoryStoreOptions(MaxSessions = 100_000))
        for _ in 1..100_000 do
            atBound.CommitAsync(SessionId.create (), change, creating, CancellationToken.None).Wait()

    [<GlobalCleanup>]
    member _.Cleanup() =
        for app in [ cbc; gcm; cbcProtected; gcmProtected ] do
            if IO.Directory.Exists app.Keys then IO.Directory.Delete(app.Keys, true)

    /// A returning visit: the cookie validated from cache, one load and one commit.
    [<Benchmark(Baseline = true)>]
    member _.ReturningVisit() = cbc.Pipeline.Invoke(context cbc cookie).GetAwaiter().GetResult()

    /// A first visit: a new id, a commit that creates the session, and a sealed cookie.
    [<Benchmark>]
    member _.FirstVisit() = cbc.Pipeline.Invoke(context cbc null).GetAwaiter().GetResult()

    /// A first visit, the seal key protected with AES-256-GCM.
    [<Benchmark>]
    member _.FirstVisitAesGcm() = gcm.Pipeline.Invoke(context gcm null).GetAwaiter().GetResult()

    /// A first visit, the cookie protected by Data Protection (TicketFormat.Protected).
    [<Benchmark>]
    member _.FirstVisitProtected() = cbcProtected.Pipeline.Invoke(context cbcProtected null).GetAwaiter().GetResult()

    /// A first visit, the cookie protected by Data Protection with AES-256-GCM.
    [<Benchmark>]
    member _.FirstVisitProtectedAesGcm() = gcmProtected.Pipeline.Invoke(context gcmProtected null).GetAwaiter().GetResult()

    /// Sealing a ticket: once per new session.
    [<Benchmark>]
    member _.SealTicket() = seal.Seal ticket

    /// Opening a sealed ticket whose key is known: for every cookie the cookie cache does not hold.
    [<Benchmark>]
    member _.OpenSealedTicket() =
        let mutable reason = null
        let mutable trustedUntil = 0L
        seal.TryOpen(sealedTicket, &reason, &trustedUntil)

    /// Data Protection's Protect of a ticket: once per new session.
    [<Benchmark>]
    member _.ProtectTicket() = cbc.Protector.Protect ticket

    /// Protect with AES-256-GCM.
    [<Benchmark>]
    member _.ProtectTicketAesGcm() = gcm.Protector.Protect ticket

    /// Unprotect of a ticket: once per client's cookie a minute (Sesame trusts a validated cookie that long), and for
    /// every cookie the cache does not hold.
    [<Benchmark>]
    member _.UnprotectTicket() = cbc.Protector.Unprotect protectedByCbc

    /// Unprotect with AES-256-GCM.
    [<Benchmark>]
    member _.UnprotectTicketAesGcm() = gcm.Protector.Unprotect protectedByGcm

    /// 192 bits from the CSPRNG, as an id.
    [<Benchmark>]
    member _.CreateId() = SessionId.create ()

    /// The memory store's insert of a new session, far below its bound.
    [<Benchmark>]
    member _.InsertBelowBound() = belowBound.CommitAsync(SessionId.create (), change, creating, CancellationToken.None).Result

    /// The memory store's insert of a new session when it holds its bound of 100,000: each insert makes room.
    [<Benchmark>]
    member _.InsertAtBound() = atBound.CommitAsync(SessionId.create (), change, creating, CancellationToken.None).Result
