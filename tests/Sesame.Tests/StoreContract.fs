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
