/// <summary>
/// The few Giraffe combinators this sample uses, written out because the Giraffe package cannot be
/// installed here. They have Giraffe's types and semantics, so with Giraffe you delete this file
/// and `open Giraffe` instead: the handlers in App.fs stay as they are.
/// </summary>
module Sesame.Samples.Giraffe.GiraffeShape

open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open Sesame

/// Runs the second handler after the first (Giraffe's compose): the chain is built once.
let compose (first: HttpHandler) (second: HttpHandler) : HttpHandler =
    fun final ->
        let next = final |> second |> first
        fun ctx ->
            // Giraffe skips the rest of the chain once the response has started.
            if ctx.Response.HasStarted then final ctx else next ctx

/// Giraffe's fish operator.
let (>=>) = compose

let private skip: HttpFuncResult = Task.FromResult None

/// Tries each handler in turn until one handles the request (Giraffe's choose).
let choose (handlers: HttpHandler list) : HttpHandler =
    fun next ->
        let funcs = handlers |> List.map (fun handler -> handler next)
        fun ctx ->
            let rec tryEach funcs =
                match funcs with
                | [] -> skip
                | func :: rest -> task {
                    match! func ctx with
                    | Some result -> return Some result
                    | None -> return! tryEach rest
                  }
            tryEach funcs

/// Continues for GET requests only.
let GET: HttpHandler = fun next ctx -> if HttpMethods.IsGet ctx.Request.Method then next ctx else skip

/// Continues for POST requests only.
let POST: HttpHandler = fun next ctx -> if HttpMethods.IsPost ctx.Request.Method then next ctx else skip

/// Continues when the request path is exactly this.
let route (path: string) : HttpHandler = fun next ctx -> if ctx.Request.Path.Value = path then next ctx else skip

/// Writes a plain-text response.
let text (body: string) : HttpHandler =
    fun _next ctx -> task {
        ctx.Response.ContentType <- "text/plain; charset=utf-8"
        do! ctx.Response.WriteAsync body
        return Some ctx
    }

/// Writes an HTML response (Giraffe's htmlString).
let htmlString (html: string) : HttpHandler =
    fun _next ctx -> task {
        ctx.Response.ContentType <- "text/html; charset=utf-8"
        do! ctx.Response.WriteAsync html
        return Some ctx
    }

/// Redirects to a location (Giraffe's redirectTo): 301 when permanent, else 302. A browser follows a 302 after a
/// POST with a GET, which is what a form's post-redirect-get needs.
let redirectTo (permanent: bool) (location: string) : HttpHandler =
    fun _next ctx ->
        ctx.Response.Redirect(location, permanent)
        Task.FromResult(Some ctx)

/// Sets the status code and continues.
let setStatusCode (code: int) : HttpHandler =
    fun next ctx ->
        ctx.Response.StatusCode <- code
        next ctx

/// The end of a chain: the request is handled.
let earlyReturn: HttpFunc = fun ctx -> Task.FromResult(Some ctx)
