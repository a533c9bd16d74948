/// The plain ASP.NET Core form: AddSesame + UseSesame with endpoint routing and minimal APIs.
module Sesame.Tests.MiddlewareTests

open System
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Routing
open Expecto
open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

let private noOptions (_: SesameOptions) = ()

/// A minimal-API app: UseSesame, then endpoints that use the session.
let private minimalApi (app: IApplicationBuilder) =
    app.UseSesame().UseRouting() |> ignore
    app.UseEndpoints(fun endpoints ->
        endpoints.MapGet(
            "/count",
            Func<HttpContext, Task<string>>(fun ctx -> task {
                let! session = Session.loadAsync ctx
                let times = session |> Session.increment "times" 1m
                return $"{times} times!"
            })
        )
        |> ignore
        endpoints.MapGet("/plain", Func<string>(fun () -> "no session here")) |> ignore
        // The tree itself as the endpoint's result: ASP.NET Core serializes it with its own options.
        endpoints.MapGet(
            "/tree",
            Func<HttpContext, Task<Json>>(fun ctx -> task {
                let! session = Session.loadAsync ctx
                session |> Session.set "price" (Json.Number(JsonNumber.Parse "1.10"))
                return Session.current session
            })
        )
        |> ignore
        // A Giraffe-style handler served from an endpoint: withSession passes through under UseSesame.
        let giraffe = (withSession >=> Session.handler (fun s -> text (Json.serialize (Session.current s)))) earlyReturn
        endpoints.MapGet("/giraffe", RequestDelegate(fun ctx -> giraffe ctx :> Task)) |> ignore)
    |> ignore

[<Tests>]
let tests =
    testList "Middleware" [
        testCaseTask "minimal API endpoints share one session through UseSesame"
        <| fun () -> task {
            let store = ObservedStore()
            use! host = startHost store noOptions minimalApi (new LogCapture())
            let browser = Browser host
            let! one = browser.GetTextAsync "/count"
            let! two = browser.GetTextAsync "/count"
            Expect.equal one "1 times!" "one"
            Expect.equal two "2 times!" "two"
            let! fromGiraffe = browser.GetTextAsync "/giraffe"
            Expect.equal fromGiraffe ("""{"times":2}""") "fromGiraffe"
            Expect.equal store.Commits 2 "store.Commits"
        }

        testCaseTask "a minimal API endpoint returns the session's tree as the JSON it is"
        <| fun () -> task {
            use! host = startHost (ObservedStore()) noOptions minimalApi (new LogCapture())
            let browser = Browser host
            let! _ = browser.GetTextAsync "/count"
            let! response, body = browser.GetAsync "/tree"
            Expect.equal (int response.StatusCode) 200 "served"
            Expect.equal body """{"times":1,"price":1.10}""" "the tree's JSON, number text and key order included"
        }

        testCaseTask "an endpoint that ignores the session costs no store I/O under UseSesame"
        <| fun () -> task {
            let store = ObservedStore()
            use! host = startHost store noOptions minimalApi (new LogCapture())
            let browser = Browser host
            let! _ = browser.GetTextAsync "/count"
            let loads = store.Loads
            let! response, body = browser.GetAsync "/plain"
            Expect.equal body "no session here" "body"
            Expect.isEmpty (setCookies response) "setCookies response"
            Expect.equal store.Loads loads "store.Loads"
        }

        testCaseTask "a handler outside UseSesame and withSession gets a clear error"
        <| fun () -> task {
            let app (builder: IApplicationBuilder) =
                builder.Run(fun ctx -> task {
                    let! error = throwsAsync<InvalidOperationException>(fun () -> Session.loadAsync ctx :> Task)
                    do! ctx.Response.WriteAsync error.Message
                })
            use! host = startHost (ObservedStore()) noOptions app (new LogCapture())
            let! body = (Browser host).GetTextAsync "/"
            Expect.stringContains body "UseSesame" "body"
        }
    ]
