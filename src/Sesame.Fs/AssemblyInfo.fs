namespace Sesame

open System.Runtime.CompilerServices

// The benchmarks measure internal steps of a request (cookie validation, the
// session handle) on their own.
[<assembly: InternalsVisibleTo("Sesame.Benchmarks")>]
do ()
