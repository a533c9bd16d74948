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
        leastRecentTies (fun clock -> new MemoryStore(MemoryStoreOptions(), clock) :> SessionStore)
        createdAgainIsNobodys (fun clock -> new MemoryStore(MemoryStoreOptions(SweepInterval = TimeSpan.FromDays 1.0), clock) :> SessionStore)

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

        testCaseTask "a request's patch is applied as recorded: the memory store never folds it, nor its facts"
        <| fun () -> task {
            let store = new MemoryStore(MemoryStoreOptions()) :> SessionStore
            let! _ = store.CommitAsync("s", changeOf [ setAt "a" "1" ], creating, testToken ())
            // As a request's commit makes them (SessionHandle): checked when recorded, folded only when asked for.
            let data = Patch.foldChecked [| setAt "a" "2"; setAt "b" "[]"; Update.append (path "b") (json "3"); setAt "a" "4" |]
            let facts = Patch.foldChecked [| setAt "device" "\"x\""; Update.remove (path "device") |]
            let! result = store.CommitAsync("s", SessionChange(data, facts), existing, testToken ())
            Expect.equal result CommitResult.Committed "committed"
            let! loaded = store.LoadAsync("s", TimeSpan.FromMinutes 1.0, testToken ())
            Expect.equal (Json.serialize loaded.Data) """{"a":4,"b":[3]}""" "the tree the updates give one by one"
            Expect.equal (Json.serialize loaded.Meta) "{}" "the facts the updates give one by one"
            // The fold is for stores that write the patch; applying the updates as recorded gives the same tree for less.
            Expect.isNotNull data.Recorded "the tree's patch was folded"
            Expect.isNotNull facts.Recorded "the facts' patch was folded"
        }

        testCase "a commit of a large session a request loaded allocates little more than its new JSON: no second parse, no growing buffer"
        <| fun () ->
            let store = new MemoryStore(MemoryStoreOptions()) :> SessionStore
            // Only the new JSON is allocated, not a second tree (whose strings alone take twice the JSON, as UTF-16) nor a
            // buffer that grows to the writer's worst case (six bytes a character).
            let struct (allocated, json, result) = largeCommitAllocation store
            Expect.equal result CommitResult.Committed "committed"
            Expect.isLessThan allocated (json + json / 2L) $"the commit allocated {allocated} bytes for a session of {json} bytes of JSON"

        // Sequenced: Expecto runs it alone, after the parallel tests, so that the heap it measures is the store's.
        testSequenced
        <| testCase "what the byte bound counts is the memory the sessions take, one-request sessions and returning ones" (fun () ->
            let memory = new MemoryStore(MemoryStoreOptions())
            let store = memory :> SessionStore
            // Ids as Sesame makes them (43 characters), made before the heap is measured.
            let ids = [| for _ in 1..40_000 -> SessionId.create () |]
            let facts = Update.set (SessionPath.parse SessionMeta.Created) (Json.int64 1_700_000_000_000L)
            // No test token: each holds a timer for a minute, which the heap measured here would count.
            let none = Threading.CancellationToken.None
            let before = GC.GetTotalMemory true
            for id in ids do
                store.CommitAsync(id, SessionChange(Patch.fold [ setAt "times" "1" ], Patch.fold [ facts ]), creating, none).Wait()
            // A quarter come back: loaded by a later request, and changed by it.
            for id in ids |> Array.take 10_000 do
                store.LoadAsync(id, creating.IdleTimeout, none).Wait()
                store.CommitAsync(id, changeOf [ Update.increment (path "times") 1m ], existing, none).Wait()
            let heap = GC.GetTotalMemory true - before
            GC.KeepAlive ids
            // Besides what is counted: the ring's head array and a spare (1 MiB each) and the parsed trees kept (2 MiB).
            let slack = 4L * 1024L * 1024L
            Expect.isLessThanOrEqual
                heap
                (memory.TotalBytes + memory.TotalBytes / 10L + slack)
                $"the heap grew by {heap} bytes; the store counts {memory.TotalBytes}"
            Expect.equal memory.Count 40_000 "every session is held")

        testCaseTask "sessions one request made are evicted before a session signed in on its first visit"
        <| fun () -> task {
            let store = new MemoryStore(MemoryStoreOptions(MaxSessions = 10)) :> SessionStore
            let signIn = SessionChange(Patch.empty, Patch.fold [ Update.set (path SessionMeta.User) (Json.string "ada") ])
            let! moved = store.MoveAsync(null, "signed-in", signIn, creating, testToken ())
            Expect.equal moved CommitResult.Committed "signed in"
            for i in 1..30 do
                let! result = store.CommitAsync($"flood{i}", changeOf [ setAt "times" "1" ], creating, testToken ())
                Expect.equal result CommitResult.Committed $"flood{i}"
            let! kept = store |> SessionStore.listAllAsync (SessionQuery.OfUser "ada") (testToken ())
            Expect.equal (kept |> List.map _.Id) [ "signed-in" ] "the signed-in session outlived thirty one-request sessions"
        }

        testCaseTask "a sign-in past its user's limit ends the least recent session even while a request commits to it"
        <| fun () -> task {
            let store = new MemoryStore(MemoryStoreOptions()) :> SessionStore
            let atLimit = { creating with UserLimit = { MaxSessions = 1; Policy = UserLimitPolicy.EndLeastRecent } }
            let signIn = SessionChange(Patch.empty, Patch.fold [ Update.set (path SessionMeta.User) (Json.string "ada") ])
            let! first = store.MoveAsync(null, "device0", signIn, atLimit, testToken ())
            Expect.equal first CommitResult.Committed "ada signed in"
            let mutable over = 0
            for round in 1..3000 do
                // The device before keeps committing while ada signs in on the next one.
                let commits =
                    Task.Run<unit>(fun () -> task {
                        for _ in 1..3 do
                            let! _ = store.CommitAsync($"device{round - 1}", changeOf [ Update.increment (path "n") 1m ], existing, testToken ())
                            ()
                    })
                let! moved = store.MoveAsync(null, $"device{round}", signIn, atLimit, testToken ())
                Expect.equal moved CommitResult.Committed $"round {round}: signed in"
                do! commits
                let! listed = store |> SessionStore.listAllAsync (SessionQuery.OfUser "ada") (testToken ())
                if listed.Length > 1 then over <- over + 1
                // Every round starts from one session, whatever the last one left.
                for session in listed do
                    if session.Id <> $"device{round}" then
                        let! _ = store.DeleteAsync(session.Id, testToken ())
                        ()
            Expect.equal over 0 "rounds that left ada more sessions than her limit"
        }

        testCaseTask "sessions just made, loaded, changed and deleted by concurrent requests lose nothing and leak nothing"
        <| fun () -> task {
            let memory = new MemoryStore(MemoryStoreOptions())
            let store = memory :> SessionStore
            let ids = [ for i in 1..400 -> $"session-{i}" ]
            let increment (id: string) = task {
                let! result = store.CommitAsync(id, changeOf [ Update.increment (path "n") 1m ], existing, testToken ())
                Expect.equal result CommitResult.Committed $"an increment of {id}"
            }
            let load (id: string) = task {
                let! loaded = store.LoadTreeAsync(id, creating.IdleTimeout, testToken ())
                Expect.isSome loaded $"{id} is there"
            }
            // Each session is made, then four increments and two loads race to move it from the ring to the map.
            let! _ =
                Task.WhenAll [
                    for id in ids ->
                        task {
                            let! made = store.CommitAsync(id, changeOf [ setAt "n" "0" ], creating, testToken ())
                            Expect.equal made CommitResult.Committed $"{id} made"
                            let race () : Task = Task.WhenAll [ increment id; increment id; load id; increment id; load id; increment id ]
                            do! Task.Run race
                        }
                        :> Task
                ]
            for id in ids do
                let! loaded = store.LoadTreeAsync(id, creating.IdleTimeout, testToken ())
                Expect.equal loaded (Some(json """{"n":4}""")) $"{id} has every increment"
            let! listed = store |> SessionStore.listAllAsync (SessionQuery.All 100) (testToken ())
            Expect.equal (listed |> List.map _.Id |> List.sort) (List.sort ids) "listed once each"
            // Two hundred more are made (these stay in the ring); then every session is deleted while requests load it.
            let again = [ for i in 1..200 -> $"again-{i}" ]
            for id in again do
                let! _ = store.CommitAsync(id, changeOf [ setAt "n" "0" ], creating, testToken ())
                ()
            let! _ =
                Task.WhenAll [
                    for id in ids @ again ->
                        Task.Run(fun () ->
                            Task.WhenAll [
                                store.DeleteAsync(id, testToken ()) :> Task
                                store.LoadAsync(id, creating.IdleTimeout, testToken ())
                                store.LoadAsync(id, creating.IdleTimeout, testToken ())
                            ])
                ]
            Expect.equal memory.Count 0 "no session is left"
            Expect.equal memory.TotalBytes 0L "and nothing is counted"
        }

        testCaseTask "a listing made while loads move sessions out of the ring names every session"
        <| fun () -> task {
            let store = new MemoryStore(MemoryStoreOptions()) :> SessionStore
            let ids = [| for i in 1..3000 -> $"session-{i:D4}" |]
            for id in ids do
                let! _ = store.CommitAsync(id, changeOf [ setAt "a" "1" ], creating, testToken ())
                ()
            // A later request comes back to each in turn, moving it from the ring to the map, while the listing runs.
            let loads =
                Task.Run(fun () ->
                    for id in ids do
                        store.LoadAsync(id, creating.IdleTimeout, Threading.CancellationToken.None).Wait())
            let! listed = store.ListAsync(SessionQuery.All 10_000, testToken ())
            do! loads
            Expect.equal (listed.Sessions |> Seq.map _.Id |> Seq.sort |> Array.ofSeq) ids "every session is listed"
        }

        testCaseTask "a listing pages through the ring's sessions and the map's in id order, and reads no id it does not list"
        <| fun () -> task {
            let memory = new MemoryStore(MemoryStoreOptions())
            let store = memory :> SessionStore
            // Server-length ids, made in no order of their own; every third came back (it is in the map).
            let ids = [| for i in 1..20_000 -> $"{(i * 7919) % 20_000:D5}{String('x', 27)}" |]
            for id in ids do
                let! _ = store.CommitAsync(id, changeOf [ setAt "a" "1" ], creating, testToken ())
                ()
            for i in 0..3 .. ids.Length - 1 do
                let! _ = store.LoadAsync(ids[i], creating.IdleTimeout, testToken ())
                ()
            let! struct (seen, largest) = everyPage store (SessionQuery.All 7)
            Expect.sequenceEqual seen (Array.sortWith (fun a b -> String.CompareOrdinal(a, b)) ids) "every session once, in id order"
            // A string per session would be 20,000 strings of 88 bytes; the ring's walk takes a list of positions.
            Expect.isLessThan largest 600_000L "a page does not read every id as a string"
        }

        testCaseTask "a page of a user's sessions reads from its cursor, not every session of the user"
        <| fun () -> task {
            // A client that signs in again and again, with no MaxSessionsPerUser, gives one user any number of sessions.
            let store = new MemoryStore(MemoryStoreOptions(MaxSessions = 100_000)) :> SessionStore
            let bind = factsOf [ Update.set (SessionPath.ofKeys [ SessionMeta.User ]) (Json.string "often") ]
            let ids = [| for i in 1..30_000 -> $"{(i * 7919) % 30_000:D5}{String('u', 27)}" |]
            for id in ids do
                let! _ = store.MoveAsync(null, id, bind, creating, testToken ())
                ()
            let inOrder = Array.sortWith (fun a b -> String.CompareOrdinal(a, b)) ids
            let! struct (seen, largest) = everyPage store { UserId = "often"; After = null; Limit = 100 }
            Expect.sequenceEqual seen inOrder "every session of the user once, in id order"
            // A copy of the user's ids alone would be 240,000 bytes a page.
            Expect.isLessThan largest 100_000L "a page allocates for what it lists"
        }

        testCaseTask "a listing's page takes memory for the sessions it lists, not for the Limit it was asked"
        <| fun () -> task {
            let store = new MemoryStore(MemoryStoreOptions()) :> SessionStore
            for id in [ "a"; "b"; "c" ] do
                let! _ = store.CommitAsync(id, changeOf [ setAt "n" "1" ], creating, testToken ())
                ()
            let before = GC.GetAllocatedBytesForCurrentThread()
            let! page = store.ListAsync(SessionQuery.All 100_000_000, testToken ())
            Expect.equal (page.Sessions |> Seq.map _.Id |> List.ofSeq) [ "a"; "b"; "c" ] "the three sessions"
            Expect.isLessThan (GC.GetAllocatedBytesForCurrentThread() - before) 1_000_000L "no room made for a hundred million"
        }

        testCaseTask "a move to an id already in use is refused and changes nothing"
        <| fun () -> task {
            let memory = new MemoryStore(MemoryStoreOptions())
            let store = memory :> SessionStore
            for id in [ "a"; "b" ] do
                let! _ = store.CommitAsync(id, changeOf [ setAt "name" $"\"{id}\"" ], creating, testToken ())
                ()
            // One in the map (a later request came back to it), one in the ring.
            let! _ = store.LoadAsync("a", creating.IdleTimeout, testToken ())
            for fromId, toId in [ "a", "b"; "b", "a" ] do
                let! _ = throwsAsync<InvalidOperationException>(fun () -> store.MoveAsync(fromId, toId, changeOf [], creating, testToken ()) :> Task)
                let! from = store.LoadTreeAsync(fromId, creating.IdleTimeout, testToken ())
                Expect.equal from (Some(json $"""{{"name":"{fromId}"}}""")) $"{fromId} is still there after its move to {toId} was refused"
            for id in [ "a"; "b" ] do
                let! _ = store.DeleteAsync(id, testToken ())
                ()
            Expect.equal (memory.Count, memory.TotalBytes) (0, 0L) "nothing is left counted"
        }

        testCaseTask "the bounds must be at least 1"
        <| fun () -> task {
            let error = throws<ArgumentException>(fun () -> new MemoryStore(MemoryStoreOptions(MaxSessions = 0)) |> ignore)
            Expect.stringContains error.Message "MaxSessions" "names the option"
            let error = throws<ArgumentException>(fun () -> new MemoryStore(MemoryStoreOptions(MaxTotalBytes = 0L)) |> ignore)
            Expect.stringContains error.Message "MaxTotalBytes" "names the option"
        }

        testCaseTask "a sweep interval a timer does not take is refused, naming the option, for the memory and file stores"
        <| fun () -> task {
            // A timer's period is at most about 49.7 days: past it, the timer's own error named neither store nor option.
            // Under a millisecond, a timer fires once and never again: one sweep, then none, and nothing said so.
            use directory = new TempDirectory()
            for interval in [ TimeSpan.FromDays 365.0; TimeSpan.FromTicks 5000L ] do
                let error = throws<ArgumentException>(fun () -> new MemoryStore(MemoryStoreOptions(SweepInterval = interval)) |> ignore)
                Expect.stringContains error.Message "SweepInterval" $"the memory store names the option ({interval})"
                let error = throws<ArgumentException>(fun () -> FileStore.Open(directory.File "sessions", FileStoreOptions(SweepInterval = interval)) |> ignore)
                Expect.stringContains error.Message "SweepInterval" $"the file store names the option ({interval})"
            // The bounds themselves are taken.
            for interval in [ TimeSpan.FromMilliseconds 1.0; TimeSpan.FromMilliseconds 4294967294.0 ] do
                (new MemoryStore(MemoryStoreOptions(SweepInterval = interval)) :> IDisposable).Dispose()
                (FileStore.Open(directory.File "bounds", FileStoreOptions(SweepInterval = interval)) :> IDisposable).Dispose()
            // No sweeper at all, as before.
            use store = new MemoryStore(MemoryStoreOptions(SweepInterval = Threading.Timeout.InfiniteTimeSpan))
            let! result = (store :> SessionStore).CommitAsync("s", changeOf [ setAt "a" "1" ], creating, testToken ())
            Expect.equal result CommitResult.Committed "a store with no sweeper works"
        }
    ]
