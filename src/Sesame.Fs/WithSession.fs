namespace Sesame

open System
open System.Collections.Concurrent
open System.Threading.Tasks
open Microsoft.AspNetCore.Http

/// <summary>The Giraffe-style entry point.</summary>
[<AutoOpen>]
module SessionHandlers =

    /// <summary>
    /// Gives the handlers after it a session: <c>withSession &gt;=&gt; handler</c>. Changes are folded and
    /// committed in one write before the response starts. When <c>app.UseSesame()</c> or an enclosing
    /// <c>withSession</c> already gave the request a session, it passes straight through.
    /// </summary>
    /// <remarks>
    /// Any number of <c>withSession</c> may sit in any branches, nested or side by side (<c>choose</c> branches,
    /// Saturn routers that each <c>pipe_through</c> a pipeline plugging it): the request has one session. A branch
    /// that falls through (<c>None</c>) commits what it changed and leaves the request as if it had no scope; the
    /// next <c>withSession</c> continues the same session.
    /// </remarks>
    let withSession: HttpHandler =
        fun next ctx ->
            if not (isNull (RequestFeatures.get<SessionHandle> ctx.Features)) then
                next ctx
            else
                let scope = SessionScope.Begin(ctx, SesameRuntime.Of ctx)
                let running = scope.RunAsync(fun () -> next ctx)
                if running.IsCompletedSuccessfully && running.Result.IsSome then
                    running
                else
                    task {
                        let! result = running
                        if result.IsNone then scope.Detach()
                        return result
                    }
