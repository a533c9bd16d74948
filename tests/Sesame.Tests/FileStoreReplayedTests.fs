/// The file store's sessions replayed on open and unused since, held without objects of their own (in a ring, as the
/// memory store holds its new sessions): every way a request, a listing, a sweep, a compaction or a bound reaches them.
module Sesame.Tests.FileStoreReplayedTests

open Sesame
open System
open System.Collections.Concurrent
open System.Threading.Tasks
open Expecto
open Sesame.Tests.StoreContract

/// A test's session file, in a folder of its own (deleted with it), and the test's clock.
[<Sealed>]
type private SessionFile() =
    let directory = new TempDirectory()
    member val Path = directory.File "sessions"
    member val Clock = ManualClock()

    interface IDisposable with
        member _.Dispose() = (directory :> IDisposable).Dispose()

let private load (store: SessionStore) (id: string) = store.LoadTreeAsync(id, creating.IdleTimeout, testToken ())

let private commitWith (options: CommitOptions) (store: SessionStore) (id: string) (updates: Update list) = task {
    let! result = store.CommitAsync(id, changeOf updates, options, testToken ())
    Expect.equal result CommitResult.Committed $"{id}'s commit"
}

let private commit (store: SessionStore) (id: string) (updates: Update list) = commitWith creating store id updates

/// Opens the file, commits one record to each of the ids (a counter set to its number; 64 commits at a time, so that
/// they share flushes) and closes it.
let private writeSessions (file: string) (clock: TimeProvider) (ids: string seq) = task {
    let store = FileStore.Open(file, null, null, clock)
    for chunk in Seq.chunkBySize 64 ids do
        do! Task.WhenAll [| for id in chunk -> commit (store :> SessionStore) id [ setAt "n" (id.Substring 1) ] :> Task |]
    do! store.DisposeAsync()
}

/// The session's counter ("n"); fails for no session.
let private counterOf (tree: Json option) =
    match tree with
    | Some tree -> Text.Json.JsonDocument.Parse(Json.serialize tree).RootElement.GetProperty("n").GetInt32()
    | None -> failwith "no session"

/// Uses a session as a request would: of four, one only loads it, one loads it and increments its counter, two only
/// increment it (noting each increment). A load alone takes a session out of the ring with no record to follow.
let private incrementOne (sessions: SessionStore) (added: ConcurrentDictionary<string, int>) (i: int) : Task = task {
    let id = $"s{i}"
    if i % 2 = 0 then
        let! _ = load sessions id
        ()
    if i % 4 <> 0 then
        do! commitWith existing sessions id [ Update.increment (path "n") 1M ]
        added.AddOrUpdate(id, 1, fun _ n -> n + 1) |> ignore
}

/// Uses each session (incrementOne), 16 sessions at a time.
let private incrementEach (sessions: SessionStore) (added: ConcurrentDictionary<string, int>) (ids: int seq) : Task = task {
    for chunk in Seq.chunkBySize 16 ids do
        do! Task.WhenAll [| for i in chunk -> incrementOne sessions added i |]
}

/// Two writers incrementing every third session of 1..count, one from each end.
let private incrementingFromBothEnds (sessions: SessionStore) (added: ConcurrentDictionary<string, int>) (count: int) = [|
    Task.Run(fun () -> incrementEach sessions added (seq { 1..3..count }))
    Task.Run(fun () -> incrementEach sessions added (seq { count .. -3 .. 1 }))
|]

/// s1-s30, each last seen at its number's second, replayed as objects (two records) where isObject says so, else into
/// the ring (one record); reopened with room for 15: the fifteen seen most recently are kept, wherever they were held.
let private trimmedOnOpen (isObject: int -> bool) (keptInRing: int) = task {
    use sessionFile = new SessionFile()
    let file, clock = sessionFile.Path, sessionFile.Clock
    let store = FileStore.Open(file, null, null, clock)
    for i in 1..30 do
        clock.Advance(TimeSpan.FromSeconds 1.0)
        do! commit store $"s{i}" [ setAt "n" (string i) ]
        if isObject i then do! commitWith existing store $"s{i}" [ Update.increment (path "n") 0M ]
    do! store.DisposeAsync()
    use trimmed = FileStore.Open(file, FileStoreOptions(MaxSessions = 15), null, clock)
    let! listed = trimmed |> SessionStore.listAllAsync (SessionQuery.All 100) (testToken ())
    let kept = listed |> List.map (fun s -> int (s.Id.Substring 1)) |> List.sort
    Expect.equal kept [ 16..30 ] "the fifteen seen most recently, from the ring and from the objects"
    Expect.equal trimmed.ReplayedUnusedCount keptInRing "those of them still in the ring"
}

/// r1-r100, each last seen at its number's second, the first <c>objects</c> of them replayed as objects (two records), the
/// rest into the ring; reopened with room for 100. The replayed sessions count as returning ones: past the returning
/// segment's share of the bound (80) the oldest go before new sessions, so new ones keep the rest, as before a restart.
let private restartedFull (objects: int) = task {
    use sessionFile = new SessionFile()
    let file, clock = sessionFile.Path, sessionFile.Clock
    let writing = FileStore.Open(file, null, null, clock)
    for i in 1..100 do
        clock.Advance(TimeSpan.FromSeconds 1.0)
        do! commit writing $"r{i}" [ setAt "n" (string i) ]
        if i <= objects then do! commitWith existing writing $"r{i}" [ Update.increment (path "n") 0M ]
    do! writing.DisposeAsync()
    use store = FileStore.Open(file, FileStoreOptions(MaxSessions = 100), null, clock)
    let sessions = store :> SessionStore
    Expect.equal store.ReplayedUnusedCount (100 - objects) "replayed into the ring"
    for id in "first" :: [ for i in 1..19 -> $"new{i}" ] do
        clock.Advance(TimeSpan.FromSeconds 1.0)
        do! commit sessions id [ setAt "n" "0" ]
    Expect.isTrue (store.Holds "first") "the first new session outlived 19 newer ones"
    // From then on new sessions evict new ones: the replayed sessions keep their share.
    for i in 20..60 do
        clock.Advance(TimeSpan.FromSeconds 1.0)
        do! commit sessions $"new{i}" [ setAt "n" "0" ]
    Expect.isFalse (store.Holds "first") "the first new session went once 20 newer ones came"
    Expect.equal store.ReplayedUnusedCount (min 80 (100 - objects)) "the ring's sessions past the share went, and only they"
    Expect.isLessThanOrEqual store.LiveCount 100 "within the bound"
    // The twenty seen least recently went, wherever they were held.
    for i in 1..100 do
        let! tree = load sessions $"r{i}"
        if i <= 20 then Expect.isNone tree $"r{i} went" else Expect.equal (counterOf tree) i $"r{i} kept"
}

/// Writes s1-s400, each about 920 bytes (a counter and 900 bytes of padding), used a second apart; gives what the
/// store held of them, as objects, before it closed.
let private writePaddedSessions (file: string) (clock: ManualClock) = task {
    let store = FileStore.Open(file, null, null, clock)
    let padding = String('x', 900)
    for i in 1..400 do
        clock.Advance(TimeSpan.FromSeconds 1.0)
        do! commit store $"s{i}" [ setAt "n" (string i); setAt "padding" $"\"{padding}\"" ]
        // A later request's load: the session is held as an object (a returning one), not parked without one.
        let! _ = load store $"s{i}"
        ()
    let held = store.HeldBytes
    do! store.DisposeAsync()
    return held
}

/// A copy of the template opened, with every session but "last" taken out of the ring by a load: "last" is the ring's
/// only session, at its tail, with the holes the others left after it (what its take-out then walks past).
let private openWithLastInRing (template: string) (file: string) (clock: TimeProvider) (others: int) = task {
    IO.File.Copy(template, file, true)
    let store = FileStore.Open(file, null, null, clock)
    for i in 1..others do
        let! _ = load store $"o{i}"
        ()
    Expect.equal store.ReplayedUnusedCount 1 "only \"last\" left in the ring"
    return store
}

/// Starts a load of "last" (which takes it out of the ring) and gives it once the ring has let it go, or it is done.
let private takingOutLast (store: FileStore) =
    let loading = Task.Run(fun () -> load store "last" :> Task)
    let spin = Threading.SpinWait()
    while store.ReplayedUnusedCount = 1 && not loading.IsCompleted do
        spin.SpinOnce()
    loading

/// A request racing the take-out of the ring's last session: a delete (odd rounds) or a commit (even ones). Gives
/// what went wrong, if anything.
let private raceLastRound (template: string) (file: string) (clock: TimeProvider) (others: int) (round: int) = task {
    let! store = openWithLastInRing template file clock others
    let loading = takingOutLast store
    if round % 2 = 1 then
        let! deleted = (store :> SessionStore).DeleteAsync("last", testToken ())
        do! loading
        let! after = load store "last"
        do! store.DisposeAsync()
        return
            if not deleted then Some $"round {round}: the delete found nothing"
            elif after.IsSome then Some $"round {round}: served after its delete"
            else None
    else
        let! result = (store :> SessionStore).CommitAsync("last", changeOf [ setAt "m" "2" ], creating, testToken ())
        do! loading
        let! inMemory = load store "last"
        do! store.DisposeAsync()
        use reopened = FileStore.Open(file, null, null, clock)
        let! afterRestart = load reopened "last"
        let text (tree: Json option) = tree |> Option.map Json.serialize |> Option.defaultValue "none"
        return
            if result <> CommitResult.Committed then
                Some $"round {round}: the commit gave {result}"
            elif text inMemory <> "{\"n\":1,\"m\":2}" || text afterRestart <> text inMemory then
                Some $"round {round}: {text inMemory} in memory, {text afterRestart} after a restart"
            else
                None
}

[<Tests>]
let tests =
    testList "FileStore, replayed sessions" [
        testCaseTask
            "sessions replayed from one record each are held without objects until a request uses them, and load, change, move, delete and list as before"
        <| fun () -> task {
            use sessionFile = new SessionFile()
            let file, clock = sessionFile.Path, sessionFile.Clock
            do! writeSessions file clock [ for i in 1..200 -> $"s{i}" ]
            // One session with two records: replay applies its change, and holds it as an object.
            let store = FileStore.Open(file, null, null, clock)
            do! commitWith existing (store :> SessionStore) "s200" [ Update.increment (path "n") 1M ]
            do! store.DisposeAsync()
            clock.Advance(TimeSpan.FromSeconds 5.0)

            let store = FileStore.Open(file, null, null, clock)
            let sessions = store :> SessionStore
            Expect.equal store.Count 200 "every session held"
            Expect.equal store.LiveCount 200 "every session counted by the bound"
            Expect.equal store.ReplayedUnusedCount 199 "held without objects: each session of one record"

            let! s1 = load sessions "s1"
            Expect.equal (counterOf s1) 1 "a load serves the replayed value"
            let! s200 = load sessions "s200"
            Expect.equal (counterOf s200) 201 "the session of two records, its change applied"
            do! commitWith existing sessions "s2" [ Update.increment (path "n") 10M ]
            let! deleted = sessions.DeleteAsync("s3", testToken ())
            Expect.isTrue deleted "a replayed session is deleted"
            let! moved = sessions.MoveAsync("s4", "s4-moved", changeOf [ setAt "signedIn" "true" ], creating, testToken ())
            Expect.equal moved CommitResult.Committed "a replayed session moves"
            Expect.equal store.ReplayedUnusedCount 195 "the sessions used are objects now"
            Expect.equal store.LiveCount 199 "one deleted; one moved"

            // A listing reads the ring's sessions where they are, in pages, each once.
            let! listed = sessions |> SessionStore.listAllAsync (SessionQuery.All 7) (testToken ())
            let expected =
                [ for i in 1..200 -> $"s{i}" ]
                |> List.except [ "s3"; "s4" ]
                |> List.append [ "s4-moved" ]
                |> List.sortWith (fun a b -> String.CompareOrdinal(a, b))
            Expect.equal (listed |> List.map _.Id) expected "every live session, by id, once"
            Expect.equal store.ReplayedUnusedCount 195 "listing takes none out of the ring"
            let s10 = listed |> List.find (fun s -> s.Id = "s10")
            Expect.equal s10.SizeBytes (int64 "{\"n\":10}".Length) "a ring session's size is its tree's JSON"
            Expect.isLessThan s10.LastSeen (clock.GetUtcNow().AddSeconds -4.0) "its last use is its commit's, before the restart"
            Expect.isGreaterThan s10.ExpiresAt (clock.GetUtcNow()) "it expires after now"
            do! store.DisposeAsync()

            // What the requests did survives another restart.
            use reopened = FileStore.Open(file, null, null, clock)
            let sessions = reopened :> SessionStore
            let! s2 = load sessions "s2"
            Expect.equal (counterOf s2) 12 "the change to a replayed session"
            let! s3 = load sessions "s3"
            Expect.isNone s3 "the deleted session"
            let! s4 = load sessions "s4"
            Expect.isNone s4 "the moved session's old id"
            let! s4Moved = load sessions "s4-moved"
            Expect.equal (counterOf s4Moved) 4 "the moved session, at its new id"
            let! s150 = load sessions "s150"
            Expect.equal (counterOf s150) 150 "a session nothing used"
        }

        testCaseTask "a page of a listing over many replayed sessions reads as strings only the ids it lists"
        <| fun () -> task {
            use sessionFile = new SessionFile()
            let file, clock = sessionFile.Path, sessionFile.Clock
            do! writeSessions file clock [ for i in 1..20_000 -> $"s{i}" ]
            let store = FileStore.Open(file, null, null, clock)
            let sessions = store :> SessionStore
            Expect.equal store.ReplayedUnusedCount 20_000 "every session in the ring"
            let mutable after = null
            for expected in [ [ "s1"; "s10"; "s100" ]; [ "s1000"; "s10000"; "s10001" ] ] do
                let before = GC.GetAllocatedBytesForCurrentThread()
                let! page = sessions.ListAsync({ SessionQuery.All 3 with After = after }, testToken ())
                let allocated = GC.GetAllocatedBytesForCurrentThread() - before
                Expect.equal (page.Sessions |> Seq.map _.Id |> List.ofSeq) expected "the first ids after the cursor, by id"
                // A string and a value per session would be 20,000 of each; the ring's walk takes a list of positions.
                Expect.isLessThan allocated 600_000L "the page does not read every session"
                after <- page.Next
            do! store.DisposeAsync()
        }

        testCaseTask "ring sessions expired by the open are neither held nor counted, and the rest count the size a compaction writes"
        <| fun () -> task {
            use sessionFile = new SessionFile()
            let file, clock = sessionFile.Path, sessionFile.Clock
            let first = FileStore.Open(file, null, null, clock)
            let brief = { creating with IdleTimeout = TimeSpan.FromMinutes 1.0 }
            // Interleaved, so that the first session to expire is neither the ring's first nor its last.
            for i in 1..40 do
                do! commitWith (if i % 2 = 0 then brief else creating) (first :> SessionStore) $"s{i}" [ setAt "n" (string i) ]
            do! first.DisposeAsync()
            clock.Advance(TimeSpan.FromMinutes 2.0)
            let store = FileStore.Open(file, null, null, clock)
            Expect.equal store.Count 20 "the sessions that outlived the restart"
            Expect.equal store.ReplayedUnusedCount 20 "held in the ring"
            let! expired = load store "s2"
            Expect.isNone expired "an expired session is not served"
            let! kept = load store "s3"
            Expect.equal (counterOf kept) 3 "a live one is"
            let live = store.LiveBytes
            do! store.CompactAsync()
            do! store.DisposeAsync()
            Expect.equal (IO.FileInfo(file).Length) live "the live size counted is the compacted file's length"
            use compacted = FileStore.Open(file, null, null, clock)
            Expect.equal compacted.Count 20 "the compacted file holds them"
        }

        testCaseTask "replayed sessions unused since expire in the sweep, reported as expired, and leave the file at the next compaction"
        <| fun () -> task {
            use sessionFile = new SessionFile()
            let file, clock = sessionFile.Path, sessionFile.Clock
            do! writeSessions file clock [ for i in 1..50 -> $"s{i}" ]
            use store = FileStore.Open(file, null, null, clock)
            let recorder = EndedRecorder()
            (store :> SessionStore).Observer <- recorder
            Expect.equal store.ReplayedUnusedCount 50 "held without objects"
            clock.Advance(creating.IdleTimeout + TimeSpan.FromSeconds 1.0)
            store.Sweep()
            Expect.equal (recorder.EndedIds |> List.sort) ([ for i in 1..50 -> $"s{i}", SessionEndReason.Expired ] |> List.sort) "each reported, as expired"
            Expect.equal store.Count 0 "none held"
            Expect.equal store.LiveBytes (int64 FileLog.FileHeaderLength) "none counted in the live size"
            do! store.CompactAsync()
            Expect.equal store.FileLength (int64 FileLog.FileHeaderLength) "the compacted file holds none"
        }

        testCaseTask "compactions while requests take replayed sessions out of the ring keep every session once, with every change"
        <| fun () -> task {
            use sessionFile = new SessionFile()
            let file, clock = sessionFile.Path, sessionFile.Clock
            let count = 20_000
            do! writeSessions file clock [ for i in 1..count -> $"s{i}" ]
            let store = FileStore.Open(file, null, null, clock)
            let sessions = store :> SessionStore
            let added = ConcurrentDictionary<string, int>()
            // Two writers take sessions out of the ring from both ends, while compactions walk it.
            let writers = Task.WhenAll(incrementingFromBothEnds sessions added count)
            let mutable compactions = 0
            while not writers.IsCompleted do
                do! store.CompactAsync()
                compactions <- compactions + 1
            do! writers
            Expect.isGreaterThan compactions 1 "compactions ran while the writers did"
            Expect.isLessThan store.ReplayedUnusedCount count "the writers took sessions out"
            do! store.DisposeAsync()

            use reopened = FileStore.Open(file, null, null, clock)
            Expect.equal reopened.Count count "every session, once"
            let sessions = reopened :> SessionStore
            for i in 1..count do
                let id = $"s{i}"
                let! tree = load sessions id
                let plus =
                    match added.TryGetValue id with
                    | true, n -> n
                    | _ -> 0
                Expect.equal (counterOf tree) (i + plus) $"{id}: its value and every change to it"
        }

        testCaseTask "after a restart, new sessions past the count bound evict new sessions, never a replayed one"
        <| fun () -> task {
            use sessionFile = new SessionFile()
            let file, clock = sessionFile.Path, sessionFile.Clock
            do! writeSessions file clock [ for i in 1..50 -> $"r{i}" ]
            use store = FileStore.Open(file, FileStoreOptions(MaxSessions = 100), null, clock)
            let sessions = store :> SessionStore
            for i in 1..300 do
                clock.Advance(TimeSpan.FromMilliseconds 10.0)
                do! commit sessions $"new{i}" [ setAt "n" "0" ]
            Expect.isLessThanOrEqual store.LiveCount 100 "within the bound"
            Expect.equal store.ReplayedUnusedCount 50 "no replayed session evicted"
            for i in 1..50 do
                let! tree = load sessions $"r{i}"
                Expect.equal (counterOf tree) i $"r{i} kept"
        }

        testCaseTask "after a restart with a full file, a new session outlives a fifth of the bound's worth of newer ones" <| fun () -> restartedFull 0

        testCaseTask
            "after a restart with a full file whose oldest sessions replay as objects, a new session outlives a fifth of the bound's worth of newer ones"
        <| fun () -> restartedFull 30

        testCaseTask "after a restart with the byte bound full, new sessions keep their share of the bytes"
        <| fun () -> task {
            use sessionFile = new SessionFile()
            let file, clock = sessionFile.Path, sessionFile.Clock
            let! _ = writePaddedSessions file clock
            let perSession =
                use full = FileStore.Open(file, null, null, clock)
                full.HeldBytes / 400L
            // Room for about 100 of the 400 (the count bound far off): the open keeps the most recent, in the ring.
            let bound = perSession * 100L
            use store = FileStore.Open(file, FileStoreOptions(MaxTotalBytes = bound), null, clock)
            let sessions = store :> SessionStore
            let padding = String('x', 900)
            let commitNew (id: string) = task {
                clock.Advance(TimeSpan.FromSeconds 1.0)
                do! commit sessions id [ setAt "n" "0"; setAt "padding" $"\"{padding}\"" ]
            }
            // A new session is held as an object (more bookkeeping than the ring's): the fifth of the bound they keep
            // holds about 15 of them.
            for id in "first" :: [ for i in 1..12 -> $"new{i}" ] do
                do! commitNew id
            Expect.isTrue (store.Holds "first") "the first new session outlived 12 newer ones"
            for i in 13..60 do
                do! commitNew $"new{i}"
            Expect.isFalse (store.Holds "first") "new sessions then evict new ones"
            Expect.isLessThanOrEqual store.HeldBytes bound "within the byte bound"
            // The replayed sessions keep their share of the bytes: about 80 of them.
            Expect.isGreaterThanOrEqual store.ReplayedUnusedCount 75 "the replayed sessions kept their share"
            Expect.isLessThanOrEqual (int64 store.ReplayedUnusedCount * perSession) (bound - bound / 5L) "and no more"
        }

        testCaseTask "the byte bound counts replayed sessions held without objects, and trims them on open least recently used first"
        <| fun () -> task {
            use sessionFile = new SessionFile()
            let file, clock = sessionFile.Path, sessionFile.Clock
            let! heldAsObjects = writePaddedSessions file clock

            use full = FileStore.Open(file, null, null, clock)
            Expect.equal full.ReplayedUnusedCount 400 "held without objects"
            Expect.isGreaterThan full.HeldBytes (400L * 900L) "the bound counts at least their JSON"
            Expect.isLessThan full.HeldBytes heldAsObjects "and less than the same sessions held as objects"
            let perSession = full.HeldBytes / 400L
            full.Dispose()

            // Room for about half of them: the least recently used go first.
            let bound = perSession * 200L
            use trimmed = FileStore.Open(file, FileStoreOptions(MaxTotalBytes = bound), null, clock)
            Expect.isLessThanOrEqual trimmed.HeldBytes bound "within the byte bound after opening"
            let! listed = trimmed |> SessionStore.listAllAsync (SessionQuery.All 1000) (testToken ())
            let kept = listed |> List.map (fun s -> int (s.Id.Substring 1)) |> List.sort
            Expect.isGreaterThan kept.Length 150 "most of what fits is kept"
            Expect.equal kept [ 401 - kept.Length .. 400 ] "the most recently used are the ones kept"
        }

        testCaseTask "trimmed on open, replayed sessions go least recently seen first, whether held in the ring or as objects"
        <| fun () ->
            // Ring sessions between older and newer objects.
            trimmedOnOpen (fun i -> i <= 10 || i > 20) 5

        testCaseTask "trimmed on open, ring sessions older than more objects than the returning segment holds go first"
        <| fun () ->
            // Twenty objects past the returning segment's share of 15 (12): its least recently used are handed to the new
            // segment, and still go after the older ring sessions.
            trimmedOnOpen (fun i -> i > 10) 0

        testCaseTask "a session created again after it expired replays once, to the value it was created with again"
        <| fun () -> task {
            use sessionFile = new SessionFile()
            let file, clock = sessionFile.Path, sessionFile.Clock
            let store = FileStore.Open(file, null, null, clock) :> SessionStore
            do! commit store "again" [ setAt "n" "1" ]
            clock.Advance(creating.IdleTimeout + TimeSpan.FromSeconds 1.0)
            // Two records that each create the session whole: replay reads both into the ring.
            do! commit store "again" [ setAt "n" "2" ]
            do! commit store "other" [ setAt "n" "3" ]
            do! (store :?> FileStore).DisposeAsync()
            use reopened = FileStore.Open(file, null, null, clock)
            Expect.equal reopened.Count 2 "each session once"
            Expect.equal reopened.ReplayedUnusedCount 2 "both in the ring"
            let! again = load reopened "again"
            Expect.equal (counterOf again) 2 "the second creation's value"
        }

        testCaseTask "ids of several bytes a character, and longer than the ring holds, replay under the ids written"
        <| fun () -> task {
            use sessionFile = new SessionFile()
            let file, clock = sessionFile.Path, sessionFile.Clock
            let named = [ "sé-日本-😀", 7; String('l', 300), 8; "ascii", 9 ]
            let store = FileStore.Open(file, null, null, clock)
            for id, n in named do
                do! commit store id [ setAt "n" (string n) ]
            do! store.DisposeAsync()
            use reopened = FileStore.Open(file, null, null, clock)
            Expect.equal reopened.ReplayedUnusedCount 2 "all but the long id in the ring"
            for id, n in named do
                let! tree = load reopened id
                Expect.equal (counterOf tree) n $"{id.Substring(0, min 12 id.Length)} under its own id"
            let! listed = reopened |> SessionStore.listAllAsync (SessionQuery.All 10) (testToken ())
            Expect.equal (listed |> List.map _.Id |> List.sort) (List.map fst named |> List.sort) "listed under the ids written"
        }

        testCaseTask "a file of several of the ring's arrays replays every session into them, made ready ahead or on the spot"
        <| fun () -> task {
            use sessionFile = new SessionFile()
            let file, clock = sessionFile.Path, sessionFile.Clock
            // 700 sessions of about 7 KB: about 5 MB of records, past the length from which replay makes arrays ready.
            let padOf (i: int) = String(char (int 'a' + i % 26), 7_000 + i)
            let store = FileStore.Open(file, null, null, clock)
            for chunk in Seq.chunkBySize 64 [ 1..700 ] do
                do! Task.WhenAll [| for i in chunk -> commit store $"s{i}" [ setAt "n" (string i); Update.set (path "pad") (Json.string (padOf i)) ] :> Task |]
            do! store.DisposeAsync()
            Expect.isGreaterThan (IO.FileInfo(file).Length) (int64 FileReplay.ArraysAheadFromBytes) "a file long enough"
            // Replay alone: every array the ring filled came through the arrays made ready ahead, whichever way.
            let replayed =
                use handle = IO.File.OpenHandle(file, IO.FileMode.Open, IO.FileAccess.ReadWrite)
                FileReplay.run Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance file handle
            Expect.equal (replayed.ArraysReady + replayed.ArraysOnTheSpot) replayed.Cold.ArrayCount "each array made ready or on the spot"
            use reopened = FileStore.Open(file, null, null, clock)
            Expect.equal reopened.ReplayedUnusedCount 700 "every session in the ring"
            for i in 1..700 do
                let! tree = load reopened $"s{i}"
                Expect.equal (counterOf tree) i $"s{i}'s counter"
                let pad = Text.Json.JsonDocument.Parse(Json.serialize tree.Value).RootElement.GetProperty("pad").GetString()
                Expect.equal pad (padOf i) $"s{i}'s 7 KB"
        }

        testCaseTask "a session created again while changes of its first life are pending replays to its new value alone"
        <| fun () -> task {
            use sessionFile = new SessionFile()
            let file, clock = sessionFile.Path, sessionFile.Clock
            let t = clock.GetUtcNow().UtcTicks
            let record kind id updates = FileLog.payload kind (t + TimeSpan.FromDays(1.0).Ticks) t id (FileLog.changeBody (changeOf updates))
            // An id whose bytes are not UTF-8 (a file written by hand): its record's string reads U+FFFD for the byte.
            let invalid = record FileLog.KindCreate "bad-?" [ setAt "n" "4" ]
            invalid[FileLog.PayloadPrefixLength + 4] <- 0xFFuy
            writeRecords file [
                record FileLog.KindCreate "again" [ setAt "n" "1" ]
                record FileLog.KindPatch "again" [ Update.increment (path "n") 5M; setAt "old" "true" ]
                record FileLog.KindCreate "again" [ setAt "n" "2" ]
                record FileLog.KindCreate "other" [ setAt "n" "3" ]
                invalid
            ]
            use reopened = FileStore.Open(file, null, null, clock)
            Expect.equal reopened.Count 3 "each session once"
            Expect.equal reopened.ReplayedUnusedCount 3 "each in the ring"
            let! again = (reopened :> SessionStore).LoadAsync("again", creating.IdleTimeout, testToken ())
            Expect.equal (Json.serialize again.Data) """{"n":2}""" "the second creation's value, none of the first life's changes"
            let! bad = load reopened "bad-\uFFFD"
            Expect.equal (counterOf bad) 4 "the id as its record's string reads"
        }

        testCaseTask "a delete or a commit racing the take-out of the ring's last session finds it, in memory and after a restart"
        <| fun () -> task {
            use sessionFile = new SessionFile()
            let template, clock = sessionFile.Path, sessionFile.Clock
            let others = 8_000
            // "last" first, then the others: replayed in that order, so "last" is at the ring's tail.
            let store = FileStore.Open(template, null, null, clock)
            do! commit store "last" [ setAt "n" "1" ]
            for chunk in Seq.chunkBySize 512 [ for i in 1..others -> $"o{i}" ] do
                do! Task.WhenAll [| for id in chunk -> commit store id [ setAt "n" "1" ] :> Task |]
            do! store.DisposeAsync()
            let wrong = ResizeArray<string>()
            for round in 1..16 do
                let! outcome = raceLastRound template (template + ".copy") clock others round
                outcome |> Option.iter wrong.Add
            Expect.isEmpty wrong "every request finds the session taken out, and applies to its value"
        }

        testCaseTask "a replayed session deleted while its take-out is under way leaves nothing counted"
        <| fun () -> task {
            use sessionFile = new SessionFile()
            let file, clock = sessionFile.Path, sessionFile.Clock
            let busy, victims = 3_000, 100
            do! writeSessions file clock [ for i in 1 .. busy + victims -> $"s{i}" ]
            use store = FileStore.Open(file, null, null, clock)
            for i in 1..busy do
                let! _ = load store $"s{i}"
                ()
            // Walking the eviction order holds its lock a while, as other requests' eviction work does.
            use stop = new Threading.CancellationTokenSource()
            let walker =
                Task.Run(fun () ->
                    while not stop.IsCancellationRequested do
                        store.Eviction.EvictionOrder() |> ignore)
            for i in busy + 1 .. busy + victims do
                let loading = Task.Run(fun () -> load store $"s{i}" :> Task)
                let spin = Threading.SpinWait()
                while store.ReplayedUnusedCount = busy + victims - i + 1 && not loading.IsCompleted do
                    spin.SpinOnce()
                let! deleted = (store :> SessionStore).DeleteAsync($"s{i}", testToken ())
                Expect.isTrue deleted $"s{i} deleted"
                do! loading
            stop.Cancel()
            do! walker
            let order = store.Eviction.EvictionOrder() |> Set.ofList
            Expect.isEmpty
                [
                    for i in busy + 1 .. busy + victims do
                        if order.Contains $"s{i}" then $"s{i}"
                ]
                "no deleted session left in the eviction order"
            Expect.equal store.LiveCount busy "the count bound counts the live sessions only"
        }

        testCaseTask "loads alone, taking replayed sessions out of the ring, keep the store within its byte bound"
        <| fun () -> task {
            use sessionFile = new SessionFile()
            let file, clock = sessionFile.Path, sessionFile.Clock
            let! _ = writePaddedSessions file clock
            let bound =
                use probe = FileStore.Open(file, null, null, clock)
                probe.HeldBytes + 1024L
            use store = FileStore.Open(file, FileStoreOptions(MaxTotalBytes = bound), null, clock)
            Expect.equal store.ReplayedUnusedCount 400 "all held, in the ring"
            // Visitors come back most recent first: the ring's tail stays where it is, counting every hole.
            for i in 400..-1..1 do
                let! _ = load store $"s{i}"
                ()
            Expect.isLessThanOrEqual store.HeldBytes bound "within the byte bound"
        }

        for compacted in [ false; true ] do
            // A compacted file holds each session as a new session's record, the signed-in one's facts naming its user.
            testCaseTask $"a replayed signed-in session is held as an object, in its user's index (compacted first: {compacted})"
            <| fun () -> task {
                use sessionFile = new SessionFile()
                let file, clock = sessionFile.Path, sessionFile.Clock
                let first = FileStore.Open(file, null, null, clock)
                let signIn = SessionChange(Patch.empty, Patch.fold [ Update.set (SessionPath.ofKeys [ SessionMeta.User ]) (Json.string "ada") ])
                let! moved = (first :> SessionStore).MoveAsync(null, "ada-1", signIn, creating, testToken ())
                Expect.equal moved CommitResult.Committed "signed in"
                do! commit (first :> SessionStore) "anonymous" [ setAt "n" "1" ]
                if compacted then do! first.CompactAsync()
                do! first.DisposeAsync()
                use store = FileStore.Open(file, null, null, clock)
                Expect.equal store.ReplayedUnusedCount 1 "the anonymous session alone is held without an object"
                let! ada = (store :> SessionStore) |> SessionStore.listAllAsync { SessionQuery.All 10 with UserId = "ada" } (testToken ())
                Expect.equal (ada |> List.map _.Id) [ "ada-1" ] "the user's session is found by user"
            }
    ]
