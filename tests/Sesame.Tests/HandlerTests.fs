/// Sesame's handlers are Giraffe's handlers: same erased types, same composition semantics.
module Sesame.Tests.HandlerTests

open System
open System.Threading.Tasks
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


type Address = { Street: string; Zip: string option }
type Shape =
    | Circle of radius: float
    | Square of side: float
type Profile = { Name: string; Tags: string list; Address: Address; Shape: Shape; Scores: Map<string, int> }

[<Tests>]
let tests =
    testList "Handler" [
        testCase "the handler types erase to exactly FSharp.Core's function types, as Giraffe's do" <| fun () ->
            let func = typeof<FSharpFunc<HttpContext, Task<option<HttpContext>>>>
            Expect.equal (typeof<HttpFuncResult>) (typeof<Task<option<HttpContext>>>) "typeof<HttpFuncResult>"
            Expect.equal (typeof<HttpFunc>) func "typeof<HttpFunc>"
            Expect.equal (typeof<HttpHandler>) (typedefof<FSharpFunc<_, _>>.MakeGenericType(func, func)) "typeof<HttpHandler>"
            // withSession is a value of that exact type, so a Giraffe pipeline accepts it unchanged.
            Expect.isTrue (typeof<HttpHandler>.IsInstanceOfType withSession) "typeof<HttpHandler>.IsInstanceOfType withSession"

        testCaseTask "withSession composes with Giraffe-shaped handlers: None falls through, a started response stops the chain" <| fun () -> task {
            let ran = ResizeArray<string>()
            let skipping: HttpHandler = fun _ _ -> Task.FromResult None
            let app =
                marker ran "outer"
                >=> withSession
                >=> choose
                    [ route "/a" >=> skipping // falls through to the next choice
                      route "/a" >=> Session.handler (fun s -> s |> Session.set "route" "a"; text "a") >=> marker ran "after-text"
                      text "fallback" ]
            use! host = startHost (ObservedStore()) noOptions (runHandler app) (new LogCapture())
            let browser = Browser host
            let! body = browser.GetTextAsync "/a"
            Expect.equal body "a" "body"
            // The response had started, so the Giraffe-style compose did not run what came after `text`.
            Expect.equal (List.ofSeq ran : string list) ([ "outer" ]) "List.ofSeq ran"
            let! shown = browser.GetTextAsync "/other"
            Expect.equal shown "fallback" "shown"
        }

        testCaseTask "a composed chain is built once and serves many requests" <| fun () -> task {
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

        testCaseTask "typed values round-trip through the F# API: records, options, lists, maps and unions" <| fun () -> task {
            let profile =
                { Name = "Ada"
                  Tags = [ "math"; "engines" ]
                  Address = { Street = "1 Analytical Way"; Zip = None }
                  Shape = Square 2.5
                  Scores = Map [ "chess", 3 ] }
            let write = Session.handler (fun s -> s |> Session.set "profile" profile; text "ok")
            let read = Session.handler (fun s -> text (if s |> Session.tryGet<Profile> "profile" = Some profile then "same" else "different"))
            let readZip = Session.handler (fun s -> text (sprintf "%A" (s |> Session.tryGet<string option> "profile.address.zip")))
            use! host = startHost (ObservedStore()) noOptions (runHandler (withSession >=> choose [ route "/write" >=> write; route "/read" >=> read; route "/zip" >=> readZip ])) (new LogCapture())
            let browser = Browser host
            let! _ = browser.GetTextAsync "/write"
            let! same = browser.GetTextAsync "/read"
            Expect.equal same "same" "same"
            let! zip = browser.GetTextAsync "/zip"
            Expect.equal zip "Some None" "zip"
        }

        testCaseTask "the F# API sets, removes, increments, replaces and clears" <| fun () -> task {
            let steps =
                Session.handler (fun s ->
                    s |> Session.set "cart.items" [ "apple"; "pear"; "fig" ]
                    s |> Session.remove "cart.items[1]"
                    s |> Session.set "user" {| name = "ada" |}
                    s |> Session.remove "user.name"
                    let total = s |> Session.increment "cart.total" 1.10m
                    let total2 = s |> Session.increment "cart.total" 1m
                    text $"{total} {total2} {Json.serialize (Session.current s)}")
            let replace = Session.handler (fun s -> s |> Session.replace {| fresh = true |}; text (Json.serialize (Session.current s)))
            let clear = Session.handler (fun s -> s |> Session.clear; text (Json.serialize (Session.current s)))
            let show = Session.handler (fun s -> text (Json.serialize (Session.current s)))
            use! host =
                startHost (ObservedStore()) noOptions (runHandler (withSession >=> choose [ route "/steps" >=> steps; route "/replace" >=> replace; route "/clear" >=> clear; route "/show" >=> show ])) (new LogCapture())
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

        testCaseTask "reading a value as the wrong type is an error that names the path" <| fun () -> task {
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
