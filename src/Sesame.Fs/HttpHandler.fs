namespace Sesame

open System
open System.Threading.Tasks
open Microsoft.AspNetCore.Http

/// <summary>The result of an <see cref="T:Sesame.HttpFunc"/>: the context when handled, <c>None</c> to fall through. Identical to Giraffe's.</summary>
type HttpFuncResult = Task<HttpContext option>

/// <summary>A function that handles a request. Identical to Giraffe's, so the two mix freely.</summary>
type HttpFunc = HttpContext -> HttpFuncResult

/// <summary>A handler that takes the next function and returns a function. Identical to Giraffe's, so
/// Sesame's handlers compose with Giraffe's <c>&gt;=&gt;</c>, <c>choose</c> and Saturn's <c>plug</c>.</summary>
type HttpHandler = HttpFunc -> HttpFunc
