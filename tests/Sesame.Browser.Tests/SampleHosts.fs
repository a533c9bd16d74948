/// The two samples, started in this process on a free loopback Kestrel port, wired as their Program files wire them.
module Sesame.Browser.Tests.SampleHosts

open System
open System.Collections.Concurrent
open System.Diagnostics
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Hosting
open Microsoft.Extensions.Logging
open Sesame

/// What the app saw of each request, in order of arrival: a failed browser step then says whether its request
/// reached the app, how it was answered and how long that took.
type RequestLog() =
    let lines = ConcurrentQueue<string>()
    let clock = Stopwatch.StartNew()

    /// Records each request's arrival and its answer (or its failure), around the rest of the pipeline.
    member _.Middleware =
        Func<HttpContext, RequestDelegate, Task>(fun context next ->
            task {
                let request = $"{context.Request.Method} {context.Request.Path}{context.Request.QueryString}"
                let started = clock.Elapsed
                lines.Enqueue $"{started.TotalSeconds, 7:F3} s  {request} arrived"
                try
                    do! next.Invoke context
                    let took = (clock.Elapsed - started).TotalMilliseconds
                    lines.Enqueue $"{clock.Elapsed.TotalSeconds, 7:F3} s  {request} answered {context.Response.StatusCode} in {took:F0} ms"
                with e ->
                    lines.Enqueue $"{clock.Elapsed.TotalSeconds, 7:F3} s  {request} failed: {e.GetType().Name}: {e.Message}"
                    raise e
            }
            :> Task)

    /// The log so far, one line per event.
    override _.ToString() = String.Join("\n", lines)

/// A sample app running on loopback; disposing it stops it.
type RunningSample(app: WebApplication, requests: RequestLog) =
    /// Where the app listens, e.g. http://127.0.0.1:40123.
    member _.Address = Seq.head app.Urls

    /// The requests the app has seen.
    member _.Requests = requests

    interface IAsyncDisposable with
        member _.DisposeAsync() =
            task {
                do! app.StopAsync()
                do! app.DisposeAsync()
            }
            |> ValueTask

/// A builder for a sample: port 0 (the system picks a free one) on loopback, no console logging.
let private builder () =
    let builder = WebApplication.CreateBuilder()
    builder.Logging.ClearProviders() |> ignore
    builder.WebHost.UseUrls "http://127.0.0.1:0" |> ignore
    builder

let private start (app: WebApplication) (requests: RequestLog) = task {
    do! app.StartAsync()
    return new RunningSample(app, requests)
}

/// The F# sample (samples/Giraffe) on the memory store.
let startGiraffe () : Task<RunningSample> =
    let builder = builder ()
    Samples.Giraffe.StoreChoice.register builder.Services Samples.Giraffe.StoreChoice.Memory (new MemoryStore())
    let app = builder.Build()
    let requests = RequestLog()
    app.Use requests.Middleware |> ignore
    let handle = Samples.Giraffe.App.webApp Samples.Giraffe.GiraffeShape.earlyReturn
    app.Run(fun ctx -> handle ctx :> Task)
    start app requests

/// The C# sample (samples/CSharp) on the memory store.
let startCSharp () : Task<RunningSample> = task {
    let builder = builder ()
    do! Samples.CSharp.StoreChoice(null).RegisterAsync builder.Services
    let app = builder.Build()
    let requests = RequestLog()
    app.Use requests.Middleware |> ignore
    app.UseSesame() |> ignore
    Samples.CSharp.SampleEndpoints.MapSesameSamples app |> ignore
    return! start app requests
}
