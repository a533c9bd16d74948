/// A write that fails (a full disk) leaves no trace of what it was to write: every session it changed, deleted, moved
/// or evicted is, in the failing process, what the file holds, in loads, listings, counts and the store's reports.
module Sesame.Tests.FileStoreFailedWriteTests

open Sesame
open System
open System.Threading.Tasks
open Expecto
open Sesame.Tests.StoreContract

/// Every later write of the store fails as on a full disk: its file's handle becomes one on /dev/full, whose writes
/// fail with the kernel's own ENOSPC. (The handle is the writer thread's; swapped while the store is idle.)
let private fillDisk (store: FileStore) =
    store.ActiveFile.Replace(IO.File.OpenHandle("/dev/full", IO.FileMode.Open, IO.FileAccess.Write), "/dev/full", store.FileLength)

/// Opens the file once the store's first handle is closed: the swap closes it off the calling thread, as a compaction's
/// does, so its lock may outlive the store by a moment.
let private reopen (file: string) = task {
    let mutable store = null
    let mutable tries = 0
    while isNull store do
        try
            store <- FileStore.Open file
        with :? SessionStoreException as e when e.Message.Contains "in use" && tries < 100 ->
            tries <- tries + 1
            do! Task.Delay 50
    return store
}

let private signedInAs (user: string) = factsOf [ Update.set (SessionPath.ofKeys [ SessionMeta.User ]) (Json.string user) ]

let private signIn (store: SessionStore) (id: string) (user: string) (limit: int) = task {
    let options = { creating with UserLimit = { MaxSessions = limit; Policy = UserLimitPolicy.EndLeastRecent } }
    let! result = store.MoveAsync(null, id, signedInAs user, options, testToken ())
    Expect.equal result CommitResult.Committed $"{id} signed in as {user}"
}

let private commit (store: SessionStore) (id: string) = task {
    let! result = store.CommitAsync(id, factsOf [ setAt "n" "1" ], creating, testToken ())
    Expect.equal result CommitResult.Committed $"{id} committed"
}

let private load (store: SessionStore) (id: string) = store.LoadAsync(id, creating.IdleTimeout, testToken ())

/// What the store shows of its sessions: counts, sizes, and a user's listing.
let private shownBy (store: FileStore) (user: string) = task {
    let! listed = store |> SessionStore.listAllAsync (SessionQuery.OfUser user) (testToken ())
    return {|
        LiveCount = store.LiveCount
        Count = store.Count
        HeldBytes = store.HeldBytes
        LiveBytes = store.LiveBytes
        Listed = listed |> List.map _.Id |> List.sort
    |}
}

/// Opens a store on a fresh file with two sessions of alice's ("a1", "a2") and one of nobody's ("c"), fills the disk,
/// runs the step that fails, and checks that the process shows what it showed before, that nothing was reported
/// ended, and that the reopened file holds the three sessions and nothing else; as many times as <c>rounds</c>.
let private failingIn (rounds: int) (name: string) (maxSessions: int) (step: FileStore -> Task) (absent: string list) =
    testCaseTask name
    <| fun () -> task {
        if not (OperatingSystem.IsLinux()) then skiptest "/dev/full (every write fails with ENOSPC) is Linux's."
        for _ in 1..rounds do
            use directory = new TempDirectory()
            let file = directory.File "sessions"
            let store = FileStore.Open(file, FileStoreOptions(MaxSessions = maxSessions))
            let ends = EndedRecorder()
            store.Observer <- ends
            do! signIn store "a1" "alice" 0
            do! signIn store "a2" "alice" 0
            do! commit store "c"
            // Held as an object (a later request loaded it): a session parked without one, taken out to be evicted,
            // leaves its ring a hole that counts against the byte bound until the ring's tail passes it.
            let! _ = load store "c"
            let! before = shownBy store "alice"
            Expect.equal before.Listed [ "a1"; "a2" ] "alice's sessions, before"
            fillDisk store
            let! error = throwsAsync<SessionStoreException>(fun () -> step store)
            Expect.stringContains error.Message file "the error names the session file"
            // A record queued after the one whose failure the step saw (an eviction's) fails with the writer's next
            // batch: give it a moment.
            let mutable after = Unchecked.defaultof<_>
            let mutable waited = 0
            let! shown = shownBy store "alice"
            after <- shown
            while after <> before && waited < 100 do
                do! Task.Delay 20
                waited <- waited + 1
                let! shown = shownBy store "alice"
                after <- shown
            Expect.equal after before "the store shows what it showed before the write failed"
            Expect.isEmpty ends.Ended "no session is reported ended"
            for id in [ "a1"; "a2"; "c" ] do
                let! session = load store id
                Expect.isNotNull session $"{id} still loads"
            store.Dispose()
            use! reopened = reopen file
            for id in [ "a1"; "a2"; "c" ] do
                let! session = load reopened id
                Expect.isNotNull session $"{id} is in the file"
            for id in absent do
                let! session = load reopened id
                Expect.isNull session $"{id} is not in the file"
            Expect.equal reopened.LiveCount 3 "the file holds the three sessions"
    }

let private failing = failingIn 1

[<Tests>]
let tests =
    testList "File store, a failed write" [
        failing "a failed delete keeps the session in its user's listing and in the counts" 100 (fun store -> store.DeleteAsync("a1", testToken ()) :> Task) []
        failing
            "a failed move keeps the session it left in its user's listing and in the counts"
            100
            (fun store -> store.MoveAsync("a1", "a1-rotated", factsOf [], creating, testToken ()) :> Task)
            [ "a1-rotated" ]
        failing
            "a failed commit keeps the session's value, size and listing"
            100
            (fun store -> store.CommitAsync("a2", factsOf [ setAt "text" $"\"{String('x', 5000)}\"" ], creating, testToken ()) :> Task)
            []
        // The commit's record may fail before the eviction is queued (then the store evicts nothing, as it can write
        // nothing) or after: rounds enough that both happen.
        failingIn 20 "an eviction whose delete fails is not reported, and its session stays counted" 3 (fun store -> commit store "d" :> Task) [ "d" ]
        failing
            "a user-limit end whose delete fails is not reported, and its session stays in its user's listing"
            100
            (fun store -> signIn store "a3" "alice" 2 :> Task)
            [ "a3" ]
    ]
