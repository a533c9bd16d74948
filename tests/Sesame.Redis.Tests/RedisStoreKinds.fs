/// The stores the linked end-to-end suites (SecurityTests.fs, ShapeTests.fs, FlashTests.fs) run on in this project: Redis only.
/// It stands in for tests/Sesame.Tests/StoreKinds.fs, which names the memory and file stores.
module Sesame.Tests.StoreKinds

open System
open Sesame
open Sesame.Redis
open Sesame.Redis.Tests.RedisServer

/// One redis-server and one connection for the whole test run, started when the first store is
/// made and stopped when the run ends.
let private shared =
    lazy
        (let server = new RedisServer()
         let connection = server.ConnectAsync().GetAwaiter().GetResult()
         // Kill the server first and leave the connection to the process's end: closing a
         // connection can take a while, and the runner does not wait long for the process to exit.
         AppDomain.CurrentDomain.ProcessExit.Add(fun _ -> (server :> IDisposable).Dispose())
         connection)

let all: StoreKind list =
    // A key prefix of its own per store: no test sees another's sessions. The store does not own
    // the shared connection, so the test host disposing it leaves the connection open. Expiry is
    // Redis's own (key TTLs), on real time: the clock is not the store's.
    [
        {
            Name = "redis"
            Create = fun _ -> new RedisStore(shared.Value, RedisStoreOptions(KeyPrefix = $"e2e-{Guid.NewGuid():N}:"), null) :> SessionStore
            FollowsClock = false
        }
    ]
