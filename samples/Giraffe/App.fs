/// node-sesame's examples as Giraffe handlers.
module Sesame.Samples.Giraffe.App

open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

/// GET /: counts visits with the increment operation, so concurrent requests count exactly.
let counter: HttpHandler =
    Session.handler (fun session ->
        let times = session |> Session.increment "times" 1m
        text $"{times} times!")

/// GET /nested: node-sesame's nested example, `foo.bar.baz *= 2` on a deep value.
let nested: HttpHandler =
    Session.handler (fun session ->
        let times = session |> Session.increment "times" 1m
        if (session |> Session.tryFind "foo").IsNone then session |> Session.set "foo" {| bar = {| baz = 1 |} |}
        let baz = (session |> Session.tryGet<int64> "foo.bar.baz" |> Option.defaultValue 0L) * 2L
        session |> Session.set "foo.bar.baz" baz
        text $"{times} times! baz = {baz}")

/// GET /session: the whole session as JSON, read-only.
let show: HttpHandler = Session.handler (fun session -> text (Json.serialize (Session.current session)))

/// The app: every route below gets a session. Login, logout and "your devices" are in Account.fs.
let webApp: HttpHandler =
    withSession
    >=> choose (
        [ GET >=> route "/" >=> counter; GET >=> route "/nested" >=> nested; GET >=> route "/session" >=> show ]
        @ Account.routes
        @ [ setStatusCode 404 >=> text "Not found" ]
    )
