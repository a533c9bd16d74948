/// Many truly concurrent requests of one session, over a real Kestrel socket.
module Sesame.Tests.ConcurrencyTests

open System
open System.Net.Http
open System.Threading.Tasks
open Expecto
open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

let private noOptions (_: SesameOptions) = ()

let private app: HttpHandler =
    withSession
    >=> choose [
        route "/start"
        >=> Session.handler (fun s ->
            s |> Session.set "started" true
            text "ok")
        route "/increment" >=> Session.handler (fun s -> text (string (s |> Session.increment "counter" 1m)))
        route "/set"
        >=> fun next ctx ->
            Session.handler
                (fun s ->
                    s |> Session.set ("keys." + string ctx.Request.Query["k"]) true
                    text "ok")
                next
                ctx
        route "/show" >=> Session.handler (fun s -> text (Json.serialize (Session.current s)))
    ]

/// Runs the same request `count` times at once on one session; returns the final session.
let concurrentlyOnOneSession (store: SessionStore) (count: int) (url: int -> string) : Task<Json> = task {
    use! host = startHostOn Kestrel store noOptions (runHandler app) (new LogCapture())
    use client = kestrelClient host
    let! _ = client.GetStringAsync "/start"
    // Release all requests at once so they truly overlap.
    let gate = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    let requests = [
        for i in 1..count ->
            task {
                do! gate.Task
                let! response = client.GetAsync(url i)
                response.EnsureSuccessStatusCode() |> ignore
            }
    ]
    gate.SetResult()
    let! _ = Task.WhenAll requests
    let! shown = client.GetStringAsync "/show"
    return Json.parse shown
}

[<Tests>]
let tests =
    testList "Concurrency" [
        testCaseTask "100 concurrent requests each setting a different key keep all 100 keys"
        <| fun () -> task {
            let! session = concurrentlyOnOneSession (new MemoryStore()) 100 (fun i -> $"/set?k=k{i}")
            match SessionPath.tryGet (SessionPath.parse "keys") session with
            | Some(Json.Object keys) -> Expect.equal keys.Count 100 "keys.Count"
            | other -> failwith $"Expected 100 keys, got {other}"
        }

        testCaseTask "100 concurrent increments leave exactly 100"
        <| fun () -> task {
            let! session = concurrentlyOnOneSession (new MemoryStore()) 100 (fun _ -> "/increment")
            Expect.equal
                (SessionPath.tryGet (SessionPath.parse "counter") session)
                (Some(Json.int64 100L))
                "SessionPath.tryGet (SessionPath.parse 'counter') session"
        }
    ]
