/// The store contract, as Expecto tests: the cases live in the Sesame.Testing package (what a store author runs from
/// any test framework); this module turns them into an Expecto test list for Sesame's own stores, and keeps the
/// helpers other test files share (commit options, changes, the manual clock).
module Sesame.Tests.StoreContract

open System
open System.Threading.Tasks
open Expecto
open Sesame
open Sesame.Testing

/// Commit options for the tests: a long idle timeout, creation allowed, a 1 MiB limit.
let creating = { IdleTimeout = TimeSpan.FromMinutes 10.0; MustExist = false; MaxSizeBytes = 1024 * 1024; UserLimit = UserLimit.None }
let existing = { creating with MustExist = true }

/// A change of the tree only.
let changeOf (updates: Update list) = SessionChange(Patch.fold updates)

/// A change of the facts beside the tree only.
let factsOf (updates: Update list) = SessionChange(Patch.empty, Patch.fold updates)
let setAt (p: string) (value: string) = Update.set (SessionPath.parse p) (Json.parse value)

/// A clock that moves only when told (the package's: the contract hands one to stores that read a TimeProvider).
type ManualClock = Sesame.Testing.ManualClock

/// A store made for one contract test, and how that test moves the store's time forward.
/// The suite disposes the store, if it is disposable.
type ContractStore = { Store: SessionStore; Advance: TimeSpan -> Task }

/// <summary>The store contract for the stores made by <paramref name="start"/>, one per test.</summary>
let storeContractWith (name: string) (start: unit -> ContractStore) : Test =
    let start () =
        let under = start ()
        StoreUnderTest(under.Store, Func<TimeSpan, Task> under.Advance)
    testList name [ for case in SessionStoreContract.casesWith start -> testCaseTask case.Name (fun () -> task { do! case.RunAsync() }) ]

/// <summary>
/// The store contract for a store on real time (e.g. Redis, whose expiry is the server's): the
/// expiry test waits for the idle timeout to pass.
/// </summary>
let storeContract (name: string) (createStore: unit -> SessionStore) : Test =
    testList name [ for case in SessionStoreContract.casesOnRealTime createStore -> testCaseTask case.Name (fun () -> task { do! case.RunAsync() }) ]

/// <summary>
/// The store contract for a store that reads the given clock: each test gets a clock of its own,
/// and the expiry test moves it instead of waiting (what a store author writes in Expecto: docs/write-a-store.md).
/// </summary>
let storeContractOnClock (name: string) (createStore: TimeProvider -> SessionStore) : Test =
    testList name [ for case in SessionStoreContract.casesOnClock createStore -> testCaseTask case.Name (fun () -> task { do! case.RunAsync() }) ]

/// <summary>
/// For the stores that hold sessions as text (memory, file): commits a session of two 100,000-character strings
/// (200,000 bytes of JSON), has a request load it, and gives the bytes this thread allocated while the same request
/// then commits one small append to it, with the JSON's size and the commit's result. A store that parses the
/// session again, or writes it through a buffer that grows to the writer's worst case, allocates several times the JSON.
/// </summary>
let largeCommitAllocation (store: SessionStore) : struct (int64 * int64 * CommitResult) =
    let item (c: char) = Json.string (String(c, 100_000))
    let large = changeOf [ Update.set (SessionPath.parse "cart") (Json.array [ item 'x'; item 'y' ]) ]
    store.CommitAsync("cart", large, creating, Helpers.testToken ()).Result |> ignore
    // The request's load parses the session (its 100,000-character strings are large objects) ...
    let loaded = store.LoadAsync("cart", TimeSpan.FromMinutes 10.0, Helpers.testToken ()).Result
    // ... and its commit should apply the change to that same tree, writing it through a pooled buffer.
    let before = GC.GetAllocatedBytesForCurrentThread()
    let result = store.CommitAsync("cart", changeOf [ Update.Append(SessionPath.parse "cart", Json.string "z") ], existing, Helpers.testToken ()).Result
    let allocated = GC.GetAllocatedBytesForCurrentThread() - before
    GC.KeepAlive loaded
    struct (allocated, 200_000L, result)
