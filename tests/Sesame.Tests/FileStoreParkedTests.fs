/// The file store's new sessions that only the request that made them has used, parked without objects of their own
/// once their records are flushed (in a ring, as the memory store holds its new sessions): every way a request, a
/// bound, a compaction or a restart reaches them, and commits racing the parking.
module Sesame.Tests.FileStoreParkedTests

open Sesame
open System
open System.Threading.Tasks
open Expecto
open Sesame.Tests.StoreContract

let private load (store: SessionStore) (id: string) = store.LoadTreeAsync(id, creating.IdleTimeout, testToken ())

let private commitWith (options: CommitOptions) (store: SessionStore) (id: string) (updates: Update list) = task {
    let! result = store.CommitAsync(id, changeOf updates, options, testToken ())
    Expect.equal result CommitResult.Committed $"{id}'s commit"
}

let private commit (store: SessionStore) (id: string) (updates: Update list) = commitWith creating store id updates

/// The session's counter ("n"), or None when the store has no such session.
let private counterOf (store: SessionStore) (id: string) = task {
    let! tree = load store id
    return tree |> Option.map (fun tree -> Text.Json.JsonDocument.Parse(Json.serialize tree).RootElement.GetProperty("n").GetInt32())
}

[<Tests>]
let tests =
    testList "FileStore, parked new sessions" [
        testCaseTask "a new session is parked once its record is flushed, and a later request's load takes it out as a returning one"
        <| fun () -> task {
            use directory = new TempDirectory()
            use store = FileStore.Open(directory.File "sessions", FileStoreOptions(MaxSessions = 10), null)
            let sessions = store :> SessionStore
            do! commit sessions "visitor" [ setAt "n" "1" ]
            Expect.equal store.ParkedCount 1 "held without an object once its commit is acknowledged"
            Expect.equal (store.Count, store.LiveCount) (1, 1) "counted once"
            let! n = counterOf sessions "visitor"
            Expect.equal n (Some 1) "a later request loads its value"
            Expect.equal store.ParkedCount 0 "taken out by the load"
            // Returning now: twenty new sessions, twice the bound, evict only their own kind.
            for i in 1..20 do
                do! commit sessions $"new{i}" [ setAt "n" (string i) ]
            Expect.isTrue (store.Holds "visitor") "the visitor who came back outlived a flood twice the bound"
            Expect.isLessThanOrEqual store.LiveCount 10 "within the bound"
        }

        testCaseTask "a commit without a load takes a parked session out as a new one, and it is parked again"
        <| fun () -> task {
            use directory = new TempDirectory()
            use store = FileStore.Open(directory.File "sessions", FileStoreOptions(MaxSessions = 10), null)
            let sessions = store :> SessionStore
            do! commit sessions "once" [ setAt "n" "1" ]
            do! commitWith existing sessions "once" [ Update.increment (SessionPath.parse "n") 1M ]
            Expect.equal store.ParkedCount 1 "parked again once the second commit is flushed"
            // Still new: a flood evicts it, oldest first.
            for i in 1..20 do
                do! commit sessions $"new{i}" [ setAt "n" (string i) ]
            Expect.isFalse (store.Holds "once") "a session no later request loaded goes with the flood"
            let! n = counterOf sessions "new20"
            Expect.equal n (Some 20) "the newest is kept"
        }

        testCaseTask "a flood's sessions are parked, evicted oldest first with a delete record each, and reported"
        <| fun () -> task {
            use directory = new TempDirectory()
            let file = directory.File "sessions"
            let store = FileStore.Open(file, FileStoreOptions(MaxSessions = 64), null)
            let ended = EndedRecorder()
            store.Observer <- ended
            let sessions = store :> SessionStore
            let returning = "returning"
            do! commit sessions returning [ setAt "n" "0" ]
            let! _ = load sessions returning
            // 16 at a time, so that they share flushes and the parking races the next commits' lookups.
            for chunk in Array.chunkBySize 16 [| 1..640 |] do
                do! Task.WhenAll [| for i in chunk -> commit sessions $"f{i:D4}" [ setAt "n" (string i) ] :> Task |]
            Expect.isLessThanOrEqual store.LiveCount 64 "within the bound"
            Expect.isGreaterThan store.ParkedCount 32 "the flood's sessions held without objects"
            Expect.isTrue (store.Holds returning) "the returning session outlived a flood ten times the bound"
            for i in 601..640 do
                Expect.isTrue (store.Holds $"f{i:D4}") $"f{i:D4}, among the newest, is kept"
            // Each reported once its delete record is written; the last evictions' records go with the next batch.
            let! _ = store.CompactAsync()
            let evicted = ended.EndedIds
            Expect.isTrue (evicted |> List.forall (fun (_, reason) -> reason = SessionEndReason.Evicted)) "reported as evicted"
            Expect.equal (evicted |> List.map fst |> List.distinct |> List.length) evicted.Length "each once"
            Expect.isFalse (evicted |> List.exists (fun (id, _) -> id = returning)) "the returning session never"
            let kept = store.LiveCount
            do! store.DisposeAsync()
            // The file agrees: the evicted are deleted in it, the kept replay.
            use reopened = FileStore.Open(file, FileStoreOptions(MaxSessions = 64), null)
            Expect.equal reopened.LiveCount kept "the same sessions after a restart"
            for (id, _) in evicted do
                let! n = counterOf reopened id
                Expect.equal n None $"{id} stays evicted"
            for i in 601..640 do
                let! n = counterOf reopened $"f{i:D4}"
                Expect.equal n (Some i) $"f{i:D4} replays with its value"
        }

        testCaseTask "parked sessions are listed, moved, deleted and expire as objects do"
        <| fun () -> task {
            use directory = new TempDirectory()
            let clock = ManualClock()
            use store = FileStore.Open(directory.File "sessions", FileStoreOptions(SweepInterval = TimeSpan.FromDays 1.0), null, clock)
            let ended = EndedRecorder()
            store.Observer <- ended
            let sessions = store :> SessionStore
            for id in [ "a"; "b"; "c"; "d" ] do
                do! commit sessions id [ setAt "n" "1" ]
            Expect.equal store.ParkedCount 4 "all four parked"
            let! listed = sessions |> SessionStore.listAllAsync (SessionQuery.All 10) (testToken ())
            Expect.equal (listed |> List.map _.Id) [ "a"; "b"; "c"; "d" ] "listed where they are"
            Expect.equal store.ParkedCount 4 "a listing takes none out"
            let bind = factsOf [ Update.set (SessionPath.ofKeys [ SessionMeta.User ]) (Json.string "alice") ]
            let! moved = sessions.MoveAsync("a", "a2", bind, creating, testToken ())
            Expect.equal moved CommitResult.Committed "a parked session moves to a new id at sign-in"
            let! gone = counterOf sessions "a"
            Expect.equal gone None "not at its old id"
            let! signedIn = counterOf sessions "a2"
            Expect.equal signedIn (Some 1) "at its new id, with its value"
            let! deleted = sessions.DeleteAsync("b", testToken ())
            Expect.isTrue deleted "a parked session is deleted"
            let! b = counterOf sessions "b"
            Expect.equal b None "and gone"
            clock.Advance(creating.IdleTimeout + TimeSpan.FromSeconds 1.0)
            store.Sweep()
            Expect.equal
                (ended.EndedIds |> List.sort)
                [ "a2", SessionEndReason.Expired; "c", SessionEndReason.Expired; "d", SessionEndReason.Expired ]
                "expired, and reported so"
            Expect.equal store.Count 0 "none held"
            Expect.equal store.LiveBytes (int64 FileLog.FileHeaderLength) "none counted in the live size"
            Expect.equal store.HeldBytes 0L "nor in the byte bound"
        }

        testCaseTask "a new session parked before its commit enforces the bounds is not evicted by them"
        <| fun () -> task {
            // On a tmpfs the writer often flushes and parks the session before its commit goes on to enforce the bounds
            // (busy threads beside it make that likelier); its commit must still never evict it.
            let shm = "/dev/shm"
            use directory = new TempDirectory()
            let file = if IO.Directory.Exists shm then IO.Path.Combine(shm, $"sesame-parked-{Guid.NewGuid():N}") else directory.File "sessions"
            try
                use store = FileStore.Open(file, FileStoreOptions(MaxTotalBytes = 20_000L), null)
                let sessions = store :> SessionStore
                let padded (bytes: int) = Update.set (SessionPath.parse "padding") (Json.string (String('x', bytes)))
                // Nine returning sessions hold about 14 KB of the 20 KB; each new one of 6 KB passes the bound.
                let returning = [ for i in 1..9 -> $"returning{i}" ]
                let ensureReturning () = task {
                    for id in returning do
                        if not (store.Holds id) then
                            do! commit sessions id [ setAt "n" "1"; padded 1280 ]
                            let! _ = load sessions id
                            ()
                }
                let evicted = ResizeArray<string>()
                for i in 1..300 do
                    do! ensureReturning ()
                    let id = $"new{i}"
                    let committed =
                        Task.Run<unit>(fun () -> task {
                            do! commit sessions id [ setAt "n" "1"; padded 6000 ]
                            if not (store.Holds id) then evicted.Add id
                        })
                    do!
                        Task.WhenAll [|
                            committed :> Task
                            Task.Run(fun () -> Threading.Thread.SpinWait 20_000)
                            Task.Run(fun () -> Threading.Thread.SpinWait 20_000)
                        |]
                    let! _ = sessions.DeleteAsync(id, testToken ())
                    ()
                Expect.isEmpty evicted "no new session was gone when its commit returned"
            finally
                if file.StartsWith shm then
                    for leftover in IO.Directory.GetFiles(shm, IO.Path.GetFileName file + "*") do
                        IO.File.Delete leftover
        }

        testCaseTask "commits without loads racing the parking and compactions lose no increment, before and after a restart"
        <| fun () -> task {
            use directory = new TempDirectory()
            let file = directory.File "sessions"
            let options = FileStoreOptions()
            let store = FileStore.Open(file, options, null)
            let sessions = store :> SessionStore
            let ids = [| for i in 1..8 -> $"s{i}" |]
            let increment (id: string) = commitWith creating sessions id [ Update.increment (SessionPath.parse "n") 1M ]
            // Each writer commits to every session in turn without loading: a session stays new, and is parked whenever
            // none of its records is on its way, and taken out by the next commit.
            let writer (w: int) = task {
                for round in 1..100 do
                    do! increment ids[(w + round) % ids.Length]
            }
            // Compactions one after another, so that parking also races their snapshots and final records.
            let compacting = ref true
            let compactions = task {
                while compacting.Value do
                    do! store.CompactAsync()
                    do! Task.Yield()
            }
            do! Task.WhenAll [| for w in 1..8 -> writer w :> Task |]
            compacting.Value <- false
            do! compactions
            let expected = 8 * 100 / ids.Length
            for id in ids do
                let! n = counterOf sessions id
                Expect.equal n (Some expected) $"{id} kept every increment"
            do! store.DisposeAsync()
            use reopened = FileStore.Open(file, options, null)
            for id in ids do
                let! n = counterOf reopened id
                Expect.equal n (Some expected) $"{id} kept every increment after a restart"
        }
    ]
