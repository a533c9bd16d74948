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

/// A change of the tree only, its patch as a request's commit makes it: checked, kept as recorded, folded only if the
/// store asks for its updates.
let recordedChangeOf (updates: Update list) = SessionChange(Patch.record updates)

/// A change of the facts beside the tree only.
let factsOf (updates: Update list) = SessionChange(Patch.empty, Patch.fold updates)
let setAt (p: string) (value: string) = Update.set (SessionPath.parse p) (Json.parse value)

/// Lists every page of a query in turn; gives the ids in page order and the most any one page allocated on this thread
/// (for a store whose listing completes at once, on the caller's thread: the memory and file stores').
let everyPage (store: SessionStore) (query: SessionQuery) = task {
    let seen = ResizeArray<string>()
    let mutable after = null
    let mutable more = true
    let mutable largest = 0L
    while more do
        let before = GC.GetAllocatedBytesForCurrentThread()
        let! page = store.ListAsync({ query with After = after }, testToken ())
        largest <- max largest (GC.GetAllocatedBytesForCurrentThread() - before)
        Expect.isLessThanOrEqual page.Sessions.Count query.Limit "a page holds at most the limit"
        seen.AddRange(page.Sessions |> Seq.map _.Id)
        after <- page.Next
        more <- not (isNull after)
    return struct (seen, largest)
}

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

/// Records the sessions a store ends by itself, in the order it reports them.
[<Sealed>]
type EndedRecorder() =
    let ended = ResizeArray<string * string * SessionEndReason>()

    /// (id, facts as JSON, reason), in the order reported.
    member _.Ended = lock ended (fun () -> List.ofSeq ended)

    /// (id, reason), in the order reported.
    member this.EndedIds = this.Ended |> List.map (fun (id, _, reason) -> id, reason)

    interface ISessionStoreObserver with
        member _.SessionEnded(id, meta, reason) = lock ended (fun () -> ended.Add((id, Json.serialize meta, reason)))

/// <summary>
/// For a store that reads a clock: ties of last-seen time at a user's limit. Sessions seen within one millisecond are
/// equally recent (Redis and PostgreSQL keep milliseconds), so <c>EndLeastRecent</c> ends the lowest ids first
/// (ordinal order) and reports them in that order, whichever was seen first within the millisecond.
/// </summary>
let leastRecentTies (createStore: TimeProvider -> SessionStore) : Test =
    testCaseTask "at a user's limit, sessions seen in the same millisecond end in id order, the lowest first"
    <| fun () -> task {
        // Ids are random: across the rounds, the session seen last within the millisecond has one of the two lowest ids
        // in all but (1/3)^12 of runs, where ending by tick would choose differently.
        for round in 1..12 do
            let clock = ManualClock()
            let store = createStore clock
            let recorder = EndedRecorder()
            store.Observer <- recorder
            let user = $"ties-{round}-{Guid.NewGuid():N}"
            let bind = factsOf [ Update.set (SessionPath.ofKeys [ SessionMeta.User ]) (Json.string user) ]
            let signIn (limit: int) = task {
                let id = SessionId.createFor user
                let! result =
                    store.MoveAsync(
                        null,
                        id,
                        bind,
                        { creating with UserLimit = { MaxSessions = limit; Policy = UserLimitPolicy.EndLeastRecent } },
                        Helpers.testToken ()
                    )
                Expect.equal result CommitResult.Committed $"round {round}: signed in"
                return id
            }
            // Three sessions within one millisecond (two at the same tick, one 0.4 ms later), then one 5 ms later.
            let! first = signIn 0
            let! second = signIn 0
            clock.Advance(TimeSpan.FromMilliseconds 0.4)
            let! third = signIn 0
            clock.Advance(TimeSpan.FromMilliseconds 5.0)
            let! _ = signIn 0
            // A fifth at a limit of three ends two: the two lowest ids of the three that tie.
            let! _ = signIn 3
            let expected = [ first; second; third ] |> List.sortWith (fun a b -> String.CompareOrdinal(a, b)) |> List.truncate 2
            Expect.equal recorder.EndedIds [ for id in expected -> id, SessionEndReason.UserLimit ] $"round {round}: ended and reported in id order"
            match box store with
            | :? IDisposable as disposable -> disposable.Dispose()
            | _ -> ()
    }

/// A store that keeps a session's user after it expired, until a sweep, must not keep it when the id is created again:
/// the new session is nobody's. (Give the store a sweep interval longer than the test's two minutes.)
let createdAgainIsNobodys (createStore: TimeProvider -> SessionStore) : Test =
    testCaseTask "a session created again under the id of an expired bound one is nobody's: not listed as the user's, not ended by the user's limit"
    <| fun () -> task {
        let clock = ManualClock()
        let store = createStore clock
        let user = $"again-{Guid.NewGuid():N}"
        let bind = factsOf [ Update.set (SessionPath.ofKeys [ SessionMeta.User ]) (Json.string user) ]
        let id = SessionId.createFor user
        let! _ = store.MoveAsync(null, id, bind, { creating with IdleTimeout = TimeSpan.FromMinutes 1.0 }, Helpers.testToken ())
        clock.Advance(TimeSpan.FromMinutes 2.0)
        let! result = store.CommitAsync(id, changeOf [ setAt "cart" "1" ], creating, Helpers.testToken ())
        Expect.equal result CommitResult.Committed "created again, with no user"
        let! listed = store |> SessionStore.listAllAsync (SessionQuery.OfUser user) (Helpers.testToken ())
        Expect.isEmpty listed "not in the user's listing"
        let limit = { creating with UserLimit = { MaxSessions = 1; Policy = UserLimitPolicy.EndLeastRecent } }
        let! _ = store.MoveAsync(null, SessionId.createFor user, bind, limit, Helpers.testToken ())
        let! loaded = store.LoadTreeAsync(id, creating.IdleTimeout, Helpers.testToken ())
        Expect.equal loaded (Some(Json.parse """{"cart":1}""")) "not ended by the user's limit"
        match box store with
        | :? IDisposable as disposable -> disposable.Dispose()
        | _ -> ()
    }
