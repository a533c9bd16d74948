/// Sesame's handlers are Giraffe's handlers: same erased types, same composition semantics.
module Sesame.Tests.HandlerTests

open System
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.FSharp.Core
open Expecto
open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

let private noOptions (_: SesameOptions) = ()


/// A handler written the Giraffe way, knowing nothing of Sesame: it records that it ran.
let private marker (log: ResizeArray<string>) (name: string) : HttpHandler =
    fun next ctx ->
        log.Add name
        next ctx

/// Giraffe's clearResponse: the status, the headers (Set-Cookie among them) and the body, before they go out.
let private clearResponse: HttpHandler =
    fun next ctx ->
        ctx.Response.Clear()
        next ctx

/// Giraffe's error handler middleware around an app: it catches what the app's handler threw and runs the error handler
/// on the same request.
let private withErrorHandler (app: HttpHandler) (errorHandler: HttpHandler) (builder: IApplicationBuilder) =
    let run = app (fun ctx -> Task.FromResult(Some ctx))
    let recover = errorHandler (fun ctx -> Task.FromResult(Some ctx))
    builder.Run(fun ctx -> task {
        try
            let! _ = run ctx
            ()
        with _ ->
            let! _ = recover ctx
            ()
    })

type Address = { Street: string; Zip: string option }
type Shape =
    | Circle of radius: float
    | Square of side: float
type Profile = { Name: string; Tags: string list; Address: Address; Shape: Shape; Scores: Map<string, int> }

[<Tests>]
let tests =
    testList "Handler" [
        testCase "the handler types erase to exactly FSharp.Core's function types, as Giraffe's do"
        <| fun () ->
            let func = typeof<FSharpFunc<HttpContext, Task<option<HttpContext>>>>
            Expect.equal (typeof<HttpFuncResult>) (typeof<Task<option<HttpContext>>>) "typeof<HttpFuncResult>"
            Expect.equal (typeof<HttpFunc>) func "typeof<HttpFunc>"
            Expect.equal (typeof<HttpHandler>) (typedefof<FSharpFunc<_, _>>.MakeGenericType(func, func)) "typeof<HttpHandler>"
            // withSession is a value of that exact type, so a Giraffe pipeline accepts it unchanged.
            Expect.isTrue (typeof<HttpHandler>.IsInstanceOfType withSession) "typeof<HttpHandler>.IsInstanceOfType withSession"

        testCaseTask "withSession composes with Giraffe-shaped handlers: None falls through, a started response stops the chain"
        <| fun () -> task {
            let ran = ResizeArray<string>()
            let skipping: HttpHandler = fun _ _ -> Task.FromResult None
            let app =
                marker ran "outer"
                >=> withSession
                >=> choose [
                    route "/a" >=> skipping // falls through to the next choice
                    route "/a"
                    >=> Session.handler (fun s ->
                        s |> Session.set "route" "a"
                        text "a")
                    >=> marker ran "after-text"
                    text "fallback"
                ]
            use! host = startHost (ObservedStore()) noOptions (runHandler app) (new LogCapture())
            let browser = Browser host
            let! body = browser.GetTextAsync "/a"
            Expect.equal body "a" "body"
            // The response had started, so the Giraffe-style compose did not run what came after `text`.
            Expect.equal (List.ofSeq ran: string list) ([ "outer" ]) "List.ofSeq ran"
            let! shown = browser.GetTextAsync "/other"
            Expect.equal shown "fallback" "shown"
        }

        testCaseTask "withSession in several branches of choose gives the request one session, whichever branch handles it"
        <| fun () -> task {
            let counter (name: string) =
                Session.handler (fun s ->
                    let times = s |> Session.increment "times" 1m
                    text $"{name} {times}")
            // Giraffe's choose tries the next branch when one falls through (None); each branch has its own withSession.
            let app = choose [ withSession >=> route "/a" >=> counter "a"; withSession >=> route "/b" >=> counter "b" ]
            use! host = startHost (ObservedStore()) noOptions (runHandler app) (new LogCapture())
            let browser = Browser host
            let! a = browser.GetTextAsync "/a"
            Expect.equal a "a 1" "the first branch"
            // GET /b passes through the first branch's withSession, which falls through, before the second.
            let! b = browser.GetTextAsync "/b"
            Expect.equal b "b 2" "the second branch continues the same session"
            let! again = browser.GetTextAsync "/b"
            Expect.equal again "b 3" "and again"
            let! a2 = browser.GetTextAsync "/a"
            Expect.equal a2 "a 4" "back to the first branch"
        }

        testCaseTask "a branch that falls through commits what it changed, and the next withSession continues that session"
        <| fun () -> task {
            let store = ObservedStore()
            let skipping: HttpHandler = fun _ _ -> Task.FromResult None
            let app =
                choose [
                    withSession
                    >=> Session.handler (fun s ->
                        s |> Session.set "seen" true
                        skipping)
                    withSession
                    >=> route "/b"
                    >=> Session.handler (fun s ->
                        s |> Session.set "b" 1
                        text (Json.serialize (Session.current s)))
                ]
            use! host = startHost store noOptions (runHandler app) (new LogCapture())
            let browser = Browser host
            let! response, body = browser.GetAsync "/b"
            Expect.equal (int response.StatusCode) 200 "handled by the second branch"
            Expect.equal body """{"seen":true,"b":1}""" "the second branch reads what the first stored"
            // One session: both commits went to one id, and the client got one cookie for it.
            let ids = store.Patches |> List.map fst |> List.distinct
            Expect.hasLength ids 1 "one session id in the store"
            Expect.hasLength (setCookies response |> List.filter (fun c -> c.StartsWith "sesame=")) 1 "one cookie"
            let! shown = browser.GetTextAsync "/b"
            Expect.equal shown """{"seen":true,"b":1}""" "the next request sees the same session"
        }

        testCaseTask "a new session's cookie still goes out when a handler after the branch that made it clears the response"
        <| fun () -> task {
            let skipping: HttpHandler = fun _ _ -> Task.FromResult None
            let app =
                choose [
                    withSession
                    >=> Session.handler (fun s ->
                        s |> Session.set "a" 1
                        skipping)
                    clearResponse
                    >=> withSession
                    >=> Session.handler (fun s ->
                        s |> Session.set "b" 2
                        text (Json.serialize (Session.current s)))
                ]
            use! host = startHost (ObservedStore()) noOptions (runHandler app) (new LogCapture())
            let browser = Browser host
            let! response, body = browser.GetAsync "/"
            Expect.equal body """{"a":1,"b":2}""" "the second branch continues the session the first made"
            Expect.hasLength (setCookies response |> List.filter (fun c -> c.StartsWith "sesame=")) 1 "one cookie, sent again"
            let! shown = browser.GetTextAsync "/"
            Expect.equal shown """{"a":1,"b":2}""" "the client found its session"
        }

        testCaseTask "a handler that signs in and throws, under Giraffe's error handler: the error page's ticket is the last scope's, kept from caches"
        <| fun () -> task {
            let failing: HttpHandler =
                withSession
                >=> choose [
                    route "/set"
                    >=> Session.handler (fun s ->
                        s |> Session.set "cart" [ 1; 2 ]
                        text "set")
                    route "/sign-in-then-fail"
                    >=> Session.handler (fun s ->
                        fun _ _ -> task {
                            let! _ = s |> Session.signInAsync "alice"
                            return failwith "the audit log is down"
                        })
                    route "/show" >=> Session.handler (fun s -> text (Json.serialize (Session.current s)))
                ]
            let headerOf (response: Net.Http.HttpResponseMessage) =
                match response.Headers.TryGetValues SesameOptions.DefaultHeaderName with
                | true, values -> Some(Seq.exactlyOne values)
                | _ -> None
            let sessionCookies response = setCookies response |> List.filter (fun c -> c.StartsWith "sesame=")
            // An error handler that signs the visitor out: its expiry of the ticket stands, in either transport.
            let signsOut = withSession >=> Session.destroy >=> clearResponse >=> setStatusCode 500 >=> text "error"
            for transport in [ SessionTransport.CookieAndHeader; SessionTransport.Header ] do
                let store = ObservedStore()
                use! host = startHost store (fun o -> o.Transport <- transport) (withErrorHandler failing signsOut) (new LogCapture())
                let client = (Microsoft.AspNetCore.TestHost.HostBuilderTestServerExtensions.GetTestServer host).CreateClient()
                let! set = client.GetAsync "/set"
                use failing = new Net.Http.HttpRequestMessage(Net.Http.HttpMethod.Get, "/sign-in-then-fail")
                failing.Headers.Add(SesameOptions.DefaultHeaderName, (headerOf set).Value)
                let! response = client.SendAsync failing
                Expect.equal (int response.StatusCode) 500 "the error handler answered"
                let! left = store.Inner |> SessionStore.listAllAsync (SessionQuery.OfUser "alice") (testToken ())
                Expect.isEmpty left $"the error handler's sign-out ended the session ({transport})"
                Expect.equal (headerOf response) (Some "") $"the session header comes blank ({transport})"
                if transport = SessionTransport.CookieAndHeader then
                    Expect.hasLength (sessionCookies response) 1 $"one Set-Cookie for the session, its expiry: {sessionCookies response}"
            // An error handler that leaves the session alone: the ticket of the new id goes out, with no-cache headers.
            let plain = clearResponse >=> setStatusCode 500 >=> text "error"
            use! host = startHost (ObservedStore()) noOptions (withErrorHandler failing plain) (new LogCapture())
            let browser = Browser host
            let! _ = browser.GetTextAsync "/set"
            let before = browser.Cookie
            let! response, _ = browser.GetAsync "/sign-in-then-fail"
            Expect.notEqual browser.Cookie before "the error page carries the cookie of the new id"
            Expect.stringContains (string response.Headers.CacheControl) "no-store" "no cache may keep the ticket"
            Expect.contains (List.ofSeq response.Headers.Vary) "Cookie" "the response varies by cookie"
            let! shown = browser.GetTextAsync "/show"
            Expect.equal shown """{"cart":[1,2]}""" "the session keeps its data under its new id"
        }

        testCaseTask "an error handler after a withSession whose handler threw goes on with the session as stored"
        <| fun () -> task {
            // The error handler, which Giraffe's error handler middleware (withErrorHandler) runs on the same request after
            // the handler threw: it clears the response.
            let errorHandler: HttpHandler =
                withSession
                >=> Session.handler (fun s ->
                    s |> Session.flash "error" "it broke"
                    clearResponse >=> setStatusCode 500 >=> text "error")
            let app: HttpHandler =
                withSession
                >=> choose [
                    route "/set"
                    >=> Session.handler (fun s ->
                        s |> Session.set "kept" 1
                        text "set")
                    route "/fail"
                    >=> Session.handler (fun s ->
                        s |> Session.set "thrown" 1
                        fun _ _ -> failwith "boom")
                    route "/read"
                    >=> Session.handler (fun s ->
                        let error = s |> Session.tryGetFlash<string> "error" |> Option.defaultValue "(none)"
                        text $"{Json.serialize (Session.current s)} {error}")
                ]
            for existing in [ false; true ] do
                use! host = startHost (ObservedStore()) noOptions (withErrorHandler app errorHandler) (new LogCapture())
                let browser = Browser host
                if existing then
                    let! _ = browser.GetTextAsync "/set"
                    ()
                let! response, body = browser.GetAsync "/fail"
                Expect.equal (int response.StatusCode, body) (500, "error") $"the error handler answered (existing session: {existing})"
                let! shown = browser.GetTextAsync "/read"
                let expected = if existing then """{"kept":1}""" else "{}"
                Expect.equal shown $"{expected} it broke" $"the flash it set is read, what the failed handler set is not (existing session: {existing})"
        }

        testCaseTask "a Saturn-like layout, one router forwarding to two routers that each pipe through withSession, has one session"
        <| fun () -> task {
            // Saturn: `forward "/shop" shopRouter`, and each router `pipe_through` a pipeline that plugs withSession.
            let forward (prefix: string) (router: HttpHandler) : HttpHandler =
                fun next ctx -> if ctx.Request.Path.StartsWithSegments(PathString prefix) then router next ctx else Task.FromResult None
            let pipeline: HttpHandler = withSession
            let router (routes: (string * HttpHandler) list) : HttpHandler = pipeline >=> choose [ for path, handler in routes -> route path >=> handler ]
            let hit (name: string) =
                Session.handler (fun s ->
                    let mine = s |> Session.increment name 1m
                    let all = s |> Session.increment "all" 1m
                    text $"{name} {mine} of {all}")
            let shop = router [ "/shop/cart", hit "cart" ]
            let account = router [ "/account/me", hit "me" ]
            // The first router matches every path (as a router at "/" would) but has no route for /account/me.
            let site = router [ "/", hit "home" ]
            let app = choose [ forward "/" site; forward "/shop" shop; forward "/account" account ]
            use! host = startHost (ObservedStore()) noOptions (runHandler app) (new LogCapture())
            let browser = Browser host
            let! cart = browser.GetTextAsync "/shop/cart"
            Expect.equal cart "cart 1 of 1" "shop"
            let! me = browser.GetTextAsync "/account/me"
            Expect.equal me "me 1 of 2" "account, the same session"
            let! home = browser.GetTextAsync "/"
            Expect.equal home "home 1 of 3" "home, the same session"
        }

        testCaseTask "withSession nested in withSession is one session"
        <| fun () -> task {
            let app = withSession >=> choose [ withSession >=> route "/n" >=> Session.handler (fun s -> text (string (s |> Session.increment "n" 1m))) ]
            use! host = startHost (ObservedStore()) noOptions (runHandler app) (new LogCapture())
            let browser = Browser host
            let! first = browser.GetTextAsync "/n"
            let! second = browser.GetTextAsync "/n"
            Expect.equal [ first; second ] [ "1"; "2" ] "counted in one session"
        }

        testCaseTask "a composed chain is built once and serves many requests"
        <| fun () -> task {
            let mutable built = 0
            let counting: HttpHandler =
                fun next ->
                    built <- built + 1
                    fun ctx -> next ctx
            let app = withSession >=> counting >=> Session.handler (fun s -> text (string (s |> Session.increment "n" 1m)))
            use! host = startHost (ObservedStore()) noOptions (runHandler app) (new LogCapture())
            let browser = Browser host
            for expected in 1..3 do
                let! body = browser.GetTextAsync "/"
                Expect.equal body (string expected) "body"
            Expect.equal built 1 "built"
        }

        testCaseTask "typed values round-trip through the F# API: records, options, lists, maps and unions"
        <| fun () -> task {
            let profile = {
                Name = "Ada"
                Tags = [ "math"; "engines" ]
                Address = { Street = "1 Analytical Way"; Zip = None }
                Shape = Square 2.5
                Scores = Map [ "chess", 3 ]
            }
            let write =
                Session.handler (fun s ->
                    s |> Session.set "profile" profile
                    text "ok")
            let read = Session.handler (fun s -> text (if s |> Session.tryGet<Profile> "profile" = Some profile then "same" else "different"))
            let readZip = Session.handler (fun s -> text (sprintf "%A" (s |> Session.tryGet<string option> "profile.address.zip")))
            use! host =
                startHost
                    (ObservedStore())
                    noOptions
                    (runHandler (withSession >=> choose [ route "/write" >=> write; route "/read" >=> read; route "/zip" >=> readZip ]))
                    (new LogCapture())
            let browser = Browser host
            let! _ = browser.GetTextAsync "/write"
            let! same = browser.GetTextAsync "/read"
            Expect.equal same "same" "same"
            let! zip = browser.GetTextAsync "/zip"
            Expect.equal zip "Some None" "zip"
        }

        testCaseTask "the F# API sets, removes, increments, replaces and clears"
        <| fun () -> task {
            let steps =
                Session.handler (fun s ->
                    s |> Session.set "cart.items" [ "apple"; "pear"; "fig" ]
                    s |> Session.remove "cart.items[1]"
                    s |> Session.set "user" {| name = "ada" |}
                    s |> Session.remove "user.name"
                    let total = s |> Session.increment "cart.total" 1.10m
                    let total2 = s |> Session.increment "cart.total" 1m
                    text $"{total} {total2} {Json.serialize (Session.current s)}")
            let replace =
                Session.handler (fun s ->
                    s |> Session.replace {| fresh = true |}
                    text (Json.serialize (Session.current s)))
            let clear =
                Session.handler (fun s ->
                    s |> Session.clear
                    text (Json.serialize (Session.current s)))
            let show = Session.handler (fun s -> text (Json.serialize (Session.current s)))
            use! host =
                startHost
                    (ObservedStore())
                    noOptions
                    (runHandler (
                        withSession >=> choose [ route "/steps" >=> steps; route "/replace" >=> replace; route "/clear" >=> clear; route "/show" >=> show ]
                    ))
                    (new LogCapture())
            let browser = Browser host
            let! body = browser.GetTextAsync "/steps"
            Expect.equal body ("""1.10 2.10 {"cart":{"items":["apple","fig"],"total":2.10},"user":{}}""") "body"
            let! stored = browser.GetTextAsync "/show"
            Expect.equal stored ("""{"cart":{"items":["apple","fig"],"total":2.10},"user":{}}""") "stored"
            let! replaced = browser.GetTextAsync "/replace"
            Expect.equal replaced ("""{"fresh":true}""") "replaced"
            let! cleared = browser.GetTextAsync "/clear"
            Expect.equal cleared "{}" "cleared"
            let! after = browser.GetTextAsync "/show"
            Expect.equal after "{}" "after"
        }

        testCaseTask "reading a value as the wrong type is an error that names the path"
        <| fun () -> task {
            let mutable error: exn = null
            let wrong =
                Session.handler (fun s ->
                    s |> Session.set "age" "forty"
                    try
                        s |> Session.tryGet<int> "age" |> ignore
                    with e ->
                        error <- e
                    text "ok")
            use! host = startHost (ObservedStore()) noOptions (runHandler (withSession >=> wrong)) (new LogCapture())
            let! _ = (Browser host).GetTextAsync "/"
            let jsonError = isType<System.Text.Json.JsonException> error
            Expect.stringContains jsonError.Message "'age'" "jsonError.Message"
        }
    ]
