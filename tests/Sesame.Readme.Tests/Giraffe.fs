/// The few Giraffe functions the README's F# snippets use, with Giraffe's types, so the snippets (which
/// `open Giraffe`) compile here: the Giraffe package is not served on this machine. Like
/// samples/Giraffe/GiraffeShape.fs; with the real package this file goes and nothing else changes.
module Giraffe

open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open Sesame

/// Giraffe's compose.
let (>=>) (first: HttpHandler) (second: HttpHandler) : HttpHandler = fun final -> final |> second |> first

/// Giraffe's choose: the first handler that handles the request.
let choose (handlers: HttpHandler list) : HttpHandler =
    fun next ->
        let chained = handlers |> List.map (fun handler -> handler next)
        fun ctx -> task {
            let mutable result = None
            let mutable rest = chained
            while result.IsNone && not rest.IsEmpty do
                let! handled = rest.Head ctx
                result <- handled
                rest <- rest.Tail
            return result
        }

/// Giraffe's route: the request path, exactly.
let route (path: string) : HttpHandler = fun next ctx -> if ctx.Request.Path.Value = path then next ctx else Task.FromResult None

/// Giraffe's text: a text/plain response.
let text (body: string) : HttpHandler =
    fun _ ctx -> task {
        ctx.Response.ContentType <- "text/plain; charset=utf-8"
        do! ctx.Response.WriteAsync body
        return Some ctx
    }

/// Giraffe's redirectTo.
let redirectTo (permanent: bool) (location: string) : HttpHandler =
    fun _ ctx ->
        ctx.Response.Redirect(location, permanent)
        Task.FromResult(Some ctx)

/// Giraffe's setStatusCode.
let setStatusCode (statusCode: int) : HttpHandler =
    fun next ctx ->
        ctx.Response.StatusCode <- statusCode
        next ctx
