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

    /// The counter with no cookie: a first visit, which creates a session (for visit-allocs; NewSessionBenchmarks times it).
    member _.FirstVisit() = counting.Invoke(context null).GetAwaiter().GetResult()

/// What a returning visit allocates, by type (the runtime's allocation ticks, one every ~100 KB, over 1,000,000
/// visits), and its bytes a visit on this thread: `visit-allocs plain|untouched|read|counter|first` (first: the counter
/// without a cookie, a new session each visit).
let allocations (which: string) =
    let b = ReturningVisitBenchmarks()
    b.Setup()
    let visit =
        match which with
        | "plain" -> b.Plain
        | "untouched" -> b.Untouched
        | "read" -> b.Read
        | "first" -> b.FirstVisit
        | _ -> b.Counter
    for _ in 1..100000 do
        visit ()
    let visits = 1000000
    let mutable bytes = 0L
    let ticks =
        AllocationTicks.sample (fun () ->
            let before = System.GC.GetAllocatedBytesForCurrentThread()
            for _ in 1..visits do
                visit ()
            bytes <- System.GC.GetAllocatedBytesForCurrentThread() - before)
    printfn "%s: %d bytes a visit on this thread" which (bytes / int64 visits)
    let total = ticks |> List.sumBy snd
    for name, count in ticks |> List.truncate 40 do
        printfn "%5.1f%%  %6.0f B/visit  %s" (100.0 * float count / float total) (float bytes / float visits * float count / float total) name
