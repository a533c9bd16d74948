/// What the index of sessions by user costs each store: a commit to a session bound to a user against the same
/// commit to an unbound one, a sign-in (a move that binds the session) against a plain rotation (a move that does
/// not), and listing a user's sessions.
///
///   dotnet fsi build.fsx bench -- --filter '*UserIndexBenchmarks*'
module Sesame.Benchmarks.UserIndexBenchmarks

open System
open System.Threading
open BenchmarkDotNet.Attributes
open Microsoft.Extensions.Logging.Abstractions
open Sesame
open Sesame.Redis

let private options = { IdleTimeout = TimeSpan.FromMinutes 20.0; MustExist = false; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }
let private existing = { options with MustExist = true }

/// A session of about 1 KB: 16 fields of 60 characters.
let private session = Json.object [ for i in 1..16 -> $"field{i}", Json.string (String('v', 60)) ]

let private metaKey (key: string) = SessionPath.ofKeys [ key ]

/// The facts a sign-in writes: the user and a device.
let private binding (user: string) =
    Patch.fold [
        Update.Set(metaKey SessionMeta.User, Json.string user)
        Update.Set(metaKey SessionMeta.Device, Json.object [ "userAgent", Json.string "Mozilla/5.0 (X11; Linux x86_64) bench" ])
    ]

/// One-key changes, made once so the benchmark measures the store.
let private oneKeyChanges = [| for n in 0..255 -> SessionChange(Patch.fold [ Update.set (SessionPath.parse "field7") (Json.int64 (int64 n)) ]) |]

/// The users in the store, each with this many sessions (a user's devices).
[<Literal>]
let SessionsPerUser = 4

[<Literal>]
let Users = 64

[<MemoryDiagnoser>]
type UserIndexBenchmarks() =
    let mutable store: SessionStore = null
    let mutable cleanup: unit -> unit = ignore
    let mutable counter = 0
    // Two ids each moving session goes back and forth between.
    let mutable signedIn = "bench-signin-a"
    let mutable rotated = "bench-rotate-a"

    /// The store under test.
    [<Params("memory", "file", "redis")>]
    member val Store = "memory" with get, set

    [<GlobalSetup>]
    member this.Setup() =
        match this.Store with
        | "memory" ->
            let memory = new MemoryStore()
            store <- memory
            cleanup <- fun () -> (memory :> IDisposable).Dispose()
        | "file" ->
            let directory = IO.Directory.CreateTempSubdirectory "sesame-bench-index-"
            let file = FileStore.Open(IO.Path.Combine(directory.FullName, "sessions"))
            store <- file
            cleanup <-
                fun () ->
                    (file :> IDisposable).Dispose()
                    directory.Delete true
        | _ ->
            let redis = new RedisBenchmarks.LocalRedis()
            let redisStore = RedisStore.ConnectAsync(redis.EndPoint, RedisStoreOptions(), NullLogger.Instance).GetAwaiter().GetResult()
            store <- redisStore
            cleanup <-
                fun () ->
                    (redisStore :> IDisposable).Dispose()
                    (redis :> IDisposable).Dispose()
        let whole = Patch.fold [ Update.set SessionPath.root session ]
        let run (t: Threading.Tasks.Task<CommitResult>) =
            match t.GetAwaiter().GetResult() with
            | CommitResult.Committed -> ()
            | other -> failwith $"setup commit answered {other}"
        run (store.CommitAsync("bench-plain", SessionChange whole, options, CancellationToken.None))
        run (store.CommitAsync(rotated, SessionChange whole, options, CancellationToken.None))
        for user in 1..Users do
            for device in 1..SessionsPerUser do
                let id = SessionId.createFor $"user{user}"
                run (store.MoveAsync(null, id, SessionChange(whole, binding $"user{user}"), options, CancellationToken.None))
        run (store.MoveAsync(null, "bench-bound", SessionChange(whole, binding "user0"), options, CancellationToken.None))
        run (store.MoveAsync(null, signedIn, SessionChange whole, options, CancellationToken.None))

    [<GlobalCleanup>]
    member _.Cleanup() = cleanup ()

    /// The baseline: a one-key commit to a session bound to no user.
    [<Benchmark(Baseline = true)>]
    member _.CommitUnbound() =
        counter <- counter + 1
        store.CommitAsync("bench-plain", oneKeyChanges[counter &&& 255], existing, CancellationToken.None).GetAwaiter().GetResult()

    /// The same commit to a session bound to a user (in the user's index).
    [<Benchmark>]
    member _.CommitBound() =
        counter <- counter + 1
        store.CommitAsync("bench-bound", oneKeyChanges[counter &&& 255], existing, CancellationToken.None).GetAwaiter().GetResult()

    /// A rotation: the session moves to a new id, bound to no user.
    [<Benchmark>]
    member _.Rotate() =
        let next = if rotated.EndsWith "a" then "bench-rotate-b" else "bench-rotate-a"
        let result = store.MoveAsync(rotated, next, SessionChange.Empty, existing, CancellationToken.None).GetAwaiter().GetResult()
        rotated <- next
        result

    /// A sign-in: the session moves to a new id and is bound to a user (its index entry moves with it).
    [<Benchmark>]
    member _.SignIn() =
        let next = if signedIn.EndsWith "a" then "bench-signin-b" else "bench-signin-a"
        let result = store.MoveAsync(signedIn, next, SessionChange(Patch.empty, binding "user1"), existing, CancellationToken.None).GetAwaiter().GetResult()
        signedIn <- next
        result

    /// Listing one user's sessions with their facts (a "your devices" page).
    [<Benchmark>]
    member _.ListUserSessions() = store.ListAsync(SessionQuery.OfUser "user7", CancellationToken.None).GetAwaiter().GetResult().Sessions.Count
