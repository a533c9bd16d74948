/// The two samples, started in this process on a free loopback Kestrel port, wired as their Program files wire them.
module Sesame.Browser.Tests.SampleHosts

open System
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Hosting
open Microsoft.Extensions.Logging
open Sesame

/// A sample app running on loopback; disposing it stops it.
type RunningSample(app: WebApplication) =
    /// Where the app listens, e.g. http://127.0.0.1:40123.
    member _.Address = Seq.head app.Urls

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

let private start (app: WebApplication) = task {
    do! app.StartAsync()
    return new RunningSample(app)
}

/// The F# sample (samples/Giraffe) on the memory store.
let startGiraffe () : Task<RunningSample> =
    let builder = builder ()
    Samples.Giraffe.StoreChoice.register builder.Services Samples.Giraffe.StoreChoice.Memory (new MemoryStore())
    let app = builder.Build()
    let handle = Samples.Giraffe.App.webApp Samples.Giraffe.GiraffeShape.earlyReturn
    app.Run(fun ctx -> handle ctx :> Task)
    start app

/// The C# sample (samples/CSharp) on the memory store.
let startCSharp () : Task<RunningSample> = task {
    let builder = builder ()
    do! Samples.CSharp.StoreChoice(null).RegisterAsync builder.Services
    let app = builder.Build()
    app.UseSesame() |> ignore
    Samples.CSharp.SampleEndpoints.MapSesameSamples app |> ignore
    return! start app
}
