/// The plain ASP.NET Core form: AddSesame + UseSesame with endpoint routing and minimal APIs.
module Sesame.Tests.MiddlewareTests

open System
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Routing
open Xunit
open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

let private noOptions (_: SesameOptions) = ()

/// A minimal-API app: UseSesame, then endpoints that use the session.
let private minimalApi (app: IApplicationBuilder) =
    app.UseSesame().UseRouting() |> ignore
    app.UseEndpoints(fun endpoints ->
        endpoints.MapGet("/count", Func<HttpContext, Task<string>>(fun ctx ->
            task {
                let! session = Session.loadAsync ctx
                let times = session |> Session.increment "times" 1m
                return $"{times} times!"
            }))
        |> ignore
        endpoints.MapGet("/plain", Func<string>(fun () -> "no session here")) |> ignore
        // A Giraffe-style handler served from an endpoint: withSession passes through under UseSesame.
        let giraffe = (withSession >=> Session.handler (fun s -> text (Json.serialize (Session.current s)))) earlyReturn
        endpoints.MapGet("/giraffe", RequestDelegate(fun ctx -> giraffe ctx :> Task)) |> ignore)
    |> ignore

[<Fact>]
let ``minimal API endpoints share one session through UseSesame`` () =
    task {
        let store = ObservedStore()
        use! host = startHost store noOptions minimalApi (new LogCapture())
        let browser = Browser host
        let! one = browser.GetTextAsync "/count"
        let! two = browser.GetTextAsync "/count"
        Assert.Equal("1 times!", one)
        Assert.Equal("2 times!", two)
        let! fromGiraffe = browser.GetTextAsync "/giraffe"
        Assert.Equal("""{"times":2}""", fromGiraffe)
        Assert.Equal(2, store.Commits)
    }

[<Fact>]
let ``an endpoint that ignores the session costs no store I/O under UseSesame`` () =
    task {
        let store = ObservedStore()
        use! host = startHost store noOptions minimalApi (new LogCapture())
        let browser = Browser host
        let! _ = browser.GetTextAsync "/count"
        let loads = store.Loads
        let! response, body = browser.GetAsync "/plain"
        Assert.Equal("no session here", body)
        Assert.Empty(setCookies response)
        Assert.Equal(loads, store.Loads)
    }

[<Fact>]
let ``a handler outside UseSesame and withSession gets a clear error`` () =
    task {
        let app (builder: IApplicationBuilder) =
            builder.Run(fun ctx ->
                task {
                    let! error = Assert.ThrowsAsync<InvalidOperationException>(fun () -> Session.loadAsync ctx :> Task)
                    do! ctx.Response.WriteAsync error.Message
                })
        use! host = startHost (ObservedStore()) noOptions app (new LogCapture())
        let! body = (Browser host).GetTextAsync "/"
        Assert.Contains("UseSesame", body)
    }
