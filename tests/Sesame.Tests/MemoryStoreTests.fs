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

        testCaseTask "seeded sessions are served from the start" <| fun () -> task {
            let options = MemoryStoreOptions()
            options.InitialSessions["seeded"] <- json """{"times":41}"""
            let store = new MemoryStore(options) :> SessionStore
            let! _ = store.CommitAsync("seeded", changeOf [ Update.increment (path "times") 1m ], existing, testToken ())
            let! loaded = store.LoadTreeAsync("seeded", TimeSpan.FromMinutes 1.0, testToken ())
            Expect.equal loaded (Some(json """{"times":42}""")) "loaded"
        }

        testCaseTask "the store evicts the idlest sessions instead of growing past its bound" <| fun () -> task {
            let options = MemoryStoreOptions(MaxSessions = 100)
            let memory = new MemoryStore(options)
            let store = memory :> SessionStore
            // The first session is used with a long timeout, the rest with shorter ones: the first outlives them.
            let! _ = store.CommitAsync("keeper", changeOf [ setAt "a" "1" ], { creating with IdleTimeout = TimeSpan.FromDays 1.0 }, testToken ())
            for i in 1..500 do
                let! _ = store.CommitAsync($"s{i}", changeOf [ setAt "a" "1" ], { creating with IdleTimeout = TimeSpan.FromMinutes(float i) }, testToken ())
                Expect.isTrue (memory.Count <= 101) ($"The store holds {memory.Count} sessions, over its bound of 100.")
            let! keeper = store.LoadTreeAsync("keeper", TimeSpan.FromDays 1.0, testToken ())
            Expect.isTrue keeper.IsSome "The least idle session survives eviction."
            let! oldest = store.LoadTreeAsync("s1", TimeSpan.FromMinutes 1.0, testToken ())
            Expect.equal oldest None "oldest"
        }

        testCaseTask "the store evicts when its total size passes the byte bound" <| fun () -> task {
            let options = MemoryStoreOptions(MaxTotalBytes = 10_000L)
            let memory = new MemoryStore(options)
            let store = memory :> SessionStore
            for i in 1..100 do
                let! _ = store.CommitAsync($"s{i}", changeOf [ Update.set (path "blob") (Json.string (String('x', 500))) ], creating, testToken ())
                ()
            Expect.isTrue (memory.TotalBytes <= 10_600L) ($"The store holds {memory.TotalBytes} bytes, over its bound.")
        }
    ]
