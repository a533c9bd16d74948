namespace Sesame

open System.Runtime.CompilerServices

// The benchmarks measure internal steps of a request (cookie validation, the
// session handle) on their own; the tests check internal pieces (ids, tickets, the runtime)
// directly; the contract suite and the Redis memory measurement make ids the way Sesame does.
[<assembly: InternalsVisibleTo("Sesame.Benchmarks")>]
[<assembly: InternalsVisibleTo("Sesame.LoadTest")>]
[<assembly: InternalsVisibleTo("Sesame.RedisMemory")>]
[<assembly: InternalsVisibleTo("Sesame.Tests")>]
[<assembly: InternalsVisibleTo("Sesame.Redis.Tests")>]
[<assembly: InternalsVisibleTo("Sesame.Postgres.Tests")>]
[<assembly: InternalsVisibleTo("Sesame.Testing")>]
do ()
