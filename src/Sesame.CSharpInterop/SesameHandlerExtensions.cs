using Microsoft.AspNetCore.Http;
using Microsoft.FSharp.Core;

namespace Sesame;

/// <summary>Serving Giraffe-shaped F# handlers (<c>HttpHandler</c>) from C# endpoints, in apps that mix the two languages.</summary>
public static class SesameHandlerExtensions
{
    private static readonly FSharpFunc<HttpContext, Task<FSharpOption<HttpContext>>> Handled =
        FSharpFunc<HttpContext, Task<FSharpOption<HttpContext>>>.FromConverter(static context => Task.FromResult(FSharpOption<HttpContext>.Some(context)));

    /// <summary>
    /// An endpoint that runs an F# <c>HttpHandler</c> (Giraffe's shape: <c>HttpFunc -&gt; HttpFunc</c>) with the
    /// request's session: <c>app.MapGet("/fs", App.counter.ToRequestDelegate())</c>. The handler sees the same session
    /// as C# code in the same request, whether the app uses <c>app.UseSesame()</c> or not (it is wrapped in <c>withSession</c>).
    /// </summary>
    /// <param name="handler">The F# handler.</param>
    /// <returns>A request delegate; a request the handler skips (returns <c>None</c>) gets 404 if nothing was written.</returns>
    public static RequestDelegate ToRequestDelegate(
        this FSharpFunc<FSharpFunc<HttpContext, Task<FSharpOption<HttpContext>>>, FSharpFunc<HttpContext, Task<FSharpOption<HttpContext>>>> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        var run = handler.Invoke(Handled);
        return async context =>
        {
            var handled = await SessionHandlers.withSession(run, context).ConfigureAwait(false);
            if (handled is null && !context.Response.HasStarted)
            {
                context.Response.StatusCode = StatusCodes.Status404NotFound;
            }
        };
    }
}
