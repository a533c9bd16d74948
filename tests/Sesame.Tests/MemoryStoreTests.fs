module Sesame.Tests.MemoryStoreTests

open Sesame
open System
open System.Threading.Tasks
open Expecto
open Sesame.Tests.StoreContract

[<Tests>]
let tests =
    testList "MemoryStore" [
        // The store contract, run against the memory store on a clock of each test's own.
        storeContractOnClock "contract" (fun clock -> new MemoryStore(MemoryStoreOptions(), clock) :> SessionStore)

        testCaseTask "seeded sessions are served from the start"
        <| fun () -> task {
            let options = MemoryStoreOptions()
            options.InitialSessions["seeded"] <- json """{"times":41}"""
            let store = new MemoryStore(options) :> SessionStore
            let! _ = store.CommitAsync("seeded", changeOf [ Update.increment (path "times") 1m ], existing, testToken ())
            let! loaded = store.LoadTreeAsync("seeded", TimeSpan.FromMinutes 1.0, testToken ())
            Expect.equal loaded (Some(json """{"times":42}""")) "loaded"
        }

        testCaseTask "the store evicts the least recently used new sessions instead of growing past its bound"
        <| fun () -> task {
            let options = MemoryStoreOptions(MaxSessions = 100)
            let memory = new MemoryStore(options)
            let store = memory :> SessionStore
            // The keeper is used by a second request; every other session by one request only.
            let! _ = store.CommitAsync("keeper", changeOf [ setAt "a" "1" ], creating, testToken ())
            let! _ = store.LoadTreeAsync("keeper", TimeSpan.FromMinutes 10.0, testToken ())
            for i in 1..500 do
                let! _ = store.CommitAsync($"s{i}", changeOf [ setAt "a" "1" ], creating, testToken ())
                Expect.isTrue (memory.Count <= 100) ($"The store holds {memory.Count} sessions, over its bound of 100.")
            let! keeper = store.LoadTreeAsync("keeper", TimeSpan.FromMinutes 10.0, testToken ())
            Expect.isTrue keeper.IsSome "The returning session survives eviction."
            let! oldest = store.LoadTreeAsync("s1", TimeSpan.FromMinutes 1.0, testToken ())
            Expect.equal oldest None "oldest"
            let! newest = store.LoadTreeAsync("s500", TimeSpan.FromMinutes 1.0, testToken ())
            Expect.isSome newest "newest"
        }

        testCaseTask "the store evicts when its total size passes the byte bound, only as much as it must"
        <| fun () -> task {
            let options = MemoryStoreOptions(MaxTotalBytes = 10_000L)
            let memory = new MemoryStore(options)
            let store = memory :> SessionStore
            let mutable oneSession = 0L
            for i in 1..100 do
                let! _ = store.CommitAsync($"s{i:D3}", changeOf [ Update.set (path "blob") (Json.string (String('x', 500))) ], creating, testToken ())
                if i = 1 then oneSession <- memory.TotalBytes
                Expect.isLessThanOrEqual memory.TotalBytes 10_000L "The store holds no more than its bound."
            // Only what was needed went: the sessions held fill the bound to within one session and the 1/64 hysteresis.
            Expect.isGreaterThan memory.TotalBytes (10_000L - 10_000L / 64L - oneSession) "held"
        }

        testCase "a commit of a large session a request loaded allocates little more than its new JSON: no second parse, no growing buffer"
        <| fun () ->
            let store = new MemoryStore(MemoryStoreOptions()) :> SessionStore
            // Only the new JSON is allocated, not a second tree (whose strings alone take twice the JSON, as UTF-16) nor a
            // buffer that grows to the writer's worst case (six bytes a character).
            let struct (allocated, json, result) = largeCommitAllocation store
            Expect.equal result CommitResult.Committed "committed"
            Expect.isLessThan allocated (json + json / 2L) $"the commit allocated {allocated} bytes for a session of {json} bytes of JSON"

        testCaseTask "the bounds must be at least 1"
        <| fun () -> task {
            let error = throws<ArgumentException>(fun () -> new MemoryStore(MemoryStoreOptions(MaxSessions = 0)) |> ignore)
            Expect.stringContains error.Message "MaxSessions" "names the option"
            let error = throws<ArgumentException>(fun () -> new MemoryStore(MemoryStoreOptions(MaxTotalBytes = 0L)) |> ignore)
            Expect.stringContains error.Message "MaxTotalBytes" "names the option"
        }
    ]
