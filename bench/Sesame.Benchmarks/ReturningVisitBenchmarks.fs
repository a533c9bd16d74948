/// What Sesame adds to a returning visit (the load test's counter, read and untouched rows, without Kestrel and the
/// network): the same handlers through one app's pipeline, with the session cookie of a session in the memory store,
/// against the handler of the load test's plain row with no Sesame at all.
///
///   dotnet run -c Release --project bench/Sesame.Benchmarks -- --filter '*ReturningVisitBenchmarks*'
module Sesame.Benchmarks.ReturningVisitBenchmarks

open BenchmarkDotNet.Attributes
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Logging
open Sesame

let private read =
    RequestDelegate(fun ctx -> task {
        let! session = Session.loadAsync ctx
        let times = session |> Session.tryGet<int64> "times" |> Option.defaultValue 0L
        do! ctx.Response.WriteAsync $"{times}"
    })

let private answer = RequestDelegate(fun ctx -> ctx.Response.WriteAsync "ok")

[<MemoryDiagnoser>]
type ReturningVisitBenchmarks() =
    let mutable services: System.IServiceProvider = null
    let mutable plain: RequestDelegate = null
    let mutable untouched: RequestDelegate = null
    let mutable reading: RequestDelegate = null
    let mutable counting: RequestDelegate = null
    let mutable cookie = ""

    let context (cookie: string) =
        let context = DefaultHttpContext(RequestServices = services)
        context.Request.Method <- "GET"
        context.Request.Path <- PathString "/"
        if not (isNull cookie) then context.Request.Headers.Cookie <- cookie
        context

    let pipeline (sesame: bool) (handler: RequestDelegate) =
        let pipe = ApplicationBuilder(services)
        if sesame then pipe.UseSesame() |> ignore
        pipe.Run handler
        pipe.Build()

    [<GlobalSetup>]
    member _.Setup() =
        let builder = WebApplication.CreateBuilder()
        builder.Logging.ClearProviders() |> ignore
        builder.Services.AddSesame() |> ignore
        services <- builder.Build().Services
        plain <- pipeline false answer
        untouched <- pipeline true answer
        reading <- pipeline true read
        counting <- pipeline true NewSessionBenchmarks.counter
        let first = context null
        counting.Invoke(first).GetAwaiter().GetResult()
        let setCookie = string first.Response.Headers.SetCookie
        cookie <- setCookie.Substring(0, setCookie.IndexOf ';')

    /// The plain row's handler, no Sesame.
    [<Benchmark(Baseline = true)>]
    member _.Plain() = plain.Invoke(context cookie).GetAwaiter().GetResult()

    /// Sesame's middleware, a handler that ignores the session.
    [<Benchmark>]
    member _.Untouched() = untouched.Invoke(context cookie).GetAwaiter().GetResult()

    /// The counter read, nothing changed: the cookie, the load, a typed read.
    [<Benchmark>]
    member _.Read() = reading.Invoke(context cookie).GetAwaiter().GetResult()

    /// The counter incremented: the read's work, one update and one commit.
    [<Benchmark>]
    member _.Counter() = counting.Invoke(context cookie).GetAwaiter().GetResult()
