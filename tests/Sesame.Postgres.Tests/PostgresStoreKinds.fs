/// The stores the linked end-to-end suites (SecurityTests.fs, ShapeTests.fs, FlashTests.fs) run on in this project: PostgreSQL only.
/// It stands in for tests/Sesame.Tests/StoreKinds.fs, which names the memory and file stores.
module Sesame.Tests.StoreKinds

open System
open System.Threading
open Sesame
open Sesame.Postgres
open Sesame.Postgres.Tests.PostgresServer

/// One database on the shared test server for every end-to-end store.
let private database = lazy (freshDatabase "e2e")

let private tables = ref 0

let all: StoreKind list =
    // Tables of their own per store: no test sees another's sessions. Expiry is the database's (its
    // clock), on real time: the test clock is not the store's.
    [
        {
            Name = "postgres"
            Create =
                fun _ ->
                    let options =
                        PostgresStoreOptions(
                            TableName = $"e2e_{Interlocked.Increment tables}",
                            SweepInterval = TimeSpan.FromSeconds 1.0,
                            OperationTimeout = TimeSpan.FromSeconds 60.0
                        )
                    new PostgresStore(database.Value, options, null) :> SessionStore
            FollowsClock = false
        }
    ]
