/// The contract every session store keeps, written once: the cases of the suite that began as Sesame's Expecto tests
/// (tests/Sesame.Tests/StoreContract.fs), moved here with their assertions (Failing and Expect stand in for Expecto's).
module internal Sesame.Testing.ContractCases

open System
open System.Threading
open System.Threading.Tasks
open Sesame

/// Commit options for the contract: a long idle timeout, creation allowed, a 1 MiB limit.
let private creating = { IdleTimeout = TimeSpan.FromMinutes 10.0; MustExist = false; MaxSizeBytes = 1024 * 1024; UserLimit = UserLimit.None }
let private existing = { creating with MustExist = true }

let private json (text: string) = Json.parse text
let private path (text: string) = SessionPath.parse text

// Patches as a request's commit makes them (Patch.record): folded only when the store reads Updates (a store that only
// applies them may never fold them), so the contract holds for what Sesame sends.

/// A change of the tree only.
let private changeOf (updates: Update list) = SessionChange(Patch.record updates)

/// A change of the facts beside the tree only.
let private factsOf (updates: Update list) = SessionChange(Patch.empty, Patch.record updates)
let private setAt (p: string) (value: string) = Update.set (path p) (json value)

/// Fails unless the task throws exactly 'error (not a subclass); gives the exception.
let private throwsAsync<'error when 'error :> exn> (work: unit -> Task) : Task<'error> = task {
    let! outcome = task {
        try
            do! work ()
            return None
        with e ->
            return Some e
    }
    return
        match outcome with
        | Some(:? 'error as e) when e.GetType() = typeof<'error> -> e
        | Some e -> failtestf "Expected %s, but %s was thrown: %s" typeof<'error>.Name (e.GetType().Name) e.Message
        | None -> failtestf "Expected %s, but nothing was thrown." typeof<'error>.Name
}

/// Runs `count` operations at the same moment, so they truly overlap. Up to as many operations as
/// the machine has cores start on threads of their own that spin at a barrier until all are there,
/// and leave it together; more wait for one gate that opens once all of them have reached it.
let private concurrently (count: int) (operation: int -> Task<'result>) : Task<'result[]> =
    if count <= Environment.ProcessorCount then
        let arrived = ref 0
        let started = [
            for i in 1..count ->
                Task.Factory
                    .StartNew(
                        (fun () ->
                            Interlocked.Increment &arrived.contents |> ignore
                            SpinWait.SpinUntil(fun () -> Volatile.Read &arrived.contents = count)
                            operation i),
                        TaskCreationOptions.LongRunning
                    )
                    .Unwrap()
        ]
        Task.WhenAll started
    else
        task {
            let gate = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
            let allArrived = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
            let arrived = ref 0
            let started = [
                for i in 1..count ->
                    Task.Run<'result>(fun () -> task {
                        if Interlocked.Increment &arrived.contents = count then allArrived.SetResult()
                        do! gate.Task
                        return! operation i
                    })
            ]
            do! allArrived.Task
            gate.SetResult()
            return! Task.WhenAll started
        }

/// <summary>
/// The contract's cases, in order: each a name and a body that makes its stores with <paramref name="start"/> and its
/// store calls' tokens with <paramref name="testToken"/>. Bodies run only when called; the runner disposes the stores.
/// </summary>
let cases (start: unit -> StoreUnderTest) (testToken: unit -> CancellationToken) : (string * (unit -> Task<unit>)) list =
    let testCaseTask (name: string) (body: unit -> Task<unit>) = name, body
    let newId () = $"contract-{Guid.NewGuid():N}"
    let loadFor (idle: TimeSpan) (store: SessionStore) (id: string) : Task<Json option> = task {
        let! loaded = store.LoadAsync(id, idle, testToken ())
        return loaded |> Option.ofObj |> Option.map _.Data
    }
    let load (store: SessionStore) (id: string) = loadFor creating.IdleTimeout store id
    [
        testCaseTask "loading an unknown id gives nothing"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let! loaded = load store (newId ())
            Expect.equal loaded None "loaded"
        }

        testCaseTask "load gives what was committed"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let! result = store.CommitAsync(id, changeOf [ setAt "user.name" "\"ada\""; Update.increment (path "times") 1m ], creating, testToken ())
            Expect.equal result CommitResult.Committed "result"
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"user":{"name":"ada"},"times":1}""")) "loaded"
        }

        testCaseTask "a commit applies its patch to the stored value, never overwriting it"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, changeOf [ setAt "a" "1"; setAt "keep.me" "[1,2]" ], creating, testToken ())
            let! _ = store.CommitAsync(id, changeOf [ setAt "b" "2"; Update.remove (path "a") ], creating, testToken ())
            let! _ = store.CommitAsync(id, changeOf [ setAt "keep.me[2]" "3" ], creating, testToken ())
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"keep":{"me":[1,2,3]},"b":2}""")) "loaded"
        }

        testCaseTask "replacing the root replaces the whole session"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, changeOf [ setAt "a" "1" ], creating, testToken ())
            let! _ = store.CommitAsync(id, changeOf [ Update.set SessionPath.root (json """{"z":[]}""") ], creating, testToken ())
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"z":[]}""")) "loaded"
        }

        testCaseTask "a commit that conflicts with the stored value stores nothing of its patch"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, changeOf [ setAt "name" "\"ada\"" ], creating, testToken ())
            // The first update fits; the second crosses a string. All or nothing.
            let conflicting = changeOf [ setAt "fresh" "true"; setAt "name.first" "\"x\"" ]
            let! _ = throwsAsync<PathConflictException>(fun () -> store.CommitAsync(id, conflicting, creating, testToken ()) :> Task)
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"name":"ada"}""")) "loaded"
        }

        testCaseTask "an update that a later one in the same patch supersedes cannot make the commit fail"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, changeOf [ setAt "name" "\"ada\"" ], creating, testToken ())
            // Alone, the first update crosses a string; the second replaces the string, so the patch is only the second.
            let superseded = changeOf [ setAt "name.first" "\"x\""; setAt "name" """{"first":"ada"}"""; setAt "name.last" "\"l\"" ]
            let! result = store.CommitAsync(id, superseded, existing, testToken ())
            Expect.equal result CommitResult.Committed "result"
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"name":{"first":"ada","last":"l"}}""")) "loaded"
        }

        testCaseTask "two concurrent commits to different paths both survive"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, changeOf [ setAt "start" "0" ], creating, testToken ())
            // Both released at once by one gate, so the two commits race for the same session.
            let! results =
                concurrently 2 (fun i ->
                    let side = if i = 1 then "left" else "right"
                    store.CommitAsync(id, changeOf [ setAt $"{side}.value" (string i) ], existing, testToken ()))
            for result in results do
                Expect.equal result CommitResult.Committed "each concurrent commit is committed"
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"start":0,"left":{"value":1},"right":{"value":2}}""")) "loaded"
        }

        testCaseTask "200 concurrent increments of one counter add up to exactly 200"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let increment = changeOf [ Update.increment (path "counter") 1m ]
            let! _ = concurrently 200 (fun _ -> store.CommitAsync(id, increment, creating, testToken ()))
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"counter":200}""")) "loaded"
        }

        testCaseTask "loads racing commits on one session see every commit acknowledged before them, none not yet made, never going back"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, changeOf [ setAt "counter" "0" ], creating, testToken ())
            let increment = changeOf [ Update.increment (path "counter") 1m ]
            // Counted before a commit is made and after it is acknowledged: a load must serve a counter between the two
            // counts read around it (a store serving a tree older than an acknowledged commit, or one no commit made yet,
            // fails), and each reader's loads must never go back.
            let made = ref 0
            let acknowledged = ref 0
            let writersDone = ref 0
            let writers, commitsEach, readers = 8, 25, 4
            let! _ =
                concurrently (writers + readers) (fun i -> task {
                    if i <= writers then
                        try
                            for _ in 1..commitsEach do
                                Interlocked.Increment &made.contents |> ignore
                                let! result = store.CommitAsync(id, increment, existing, testToken ())
                                Expect.equal result CommitResult.Committed "each increment is committed"
                                Interlocked.Increment &acknowledged.contents |> ignore
                        finally
                            // Also when a commit fails, so that the readers stop and the failure is reported.
                            Interlocked.Increment &writersDone.contents |> ignore
                    else
                        let mutable last = 0L
                        let mutable reads = 0
                        while Volatile.Read &writersDone.contents < writers || reads = 0 do
                            // A store whose loads complete at once would otherwise keep this thread from the commits.
                            do! Task.Yield()
                            let before = int64 (Volatile.Read &acknowledged.contents)
                            let! loaded = load store id
                            let after = int64 (Volatile.Read &made.contents)
                            let counter =
                                match loaded |> Option.bind (SessionPath.tryGet (path "counter")) with
                                | Some(Json.Number n) -> snd (n.TryGetInt64())
                                | other -> failtestf "Expected the counter, got %A" other
                            if counter < before then failtestf "A load served %d after %d increments were acknowledged" counter before
                            if counter > after then failtestf "A load served %d when only %d increments had been made" counter after
                            if counter < last then failtestf "A reader's loads went back from %d to %d" last counter
                            last <- counter
                            reads <- reads + 1
                    return ()
                })
            let! loaded = load store id
            Expect.equal loaded (Some(json $"""{{"counter":{writers * commitsEach}}}""")) "every increment kept"
        }

        testCaseTask "100 concurrent commits setting different keys keep all 100"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = concurrently 100 (fun i -> store.CommitAsync(id, changeOf [ setAt $"keys.k{i}" (string i) ], creating, testToken ()))
            let! loaded = load store id
            let keys = loaded |> Option.bind (SessionPath.tryGet (path "keys"))
            match keys with
            | Some(Json.Object o) ->
                Expect.equal o.Count 100 "o.Count"
                for i in 1..100 do
                    Expect.equal (o.TryGetValue $"k{i}") (true, Json.int64 (int64 i)) $"keys.k{i}"
            | other -> failtestf "Expected 100 keys, got %s" (show (box other))
        }

        testCaseTask "100 concurrent appends to one array keep all 100, each once"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, changeOf [ setAt "items" "[0]" ], creating, testToken ())
            let! _ = concurrently 100 (fun i -> store.CommitAsync(id, changeOf [ Update.append (path "items") (Json.int64 (int64 i)) ], existing, testToken ()))
            let! loaded = load store id
            match loaded |> Option.bind (SessionPath.tryGet (path "items")) with
            | Some(Json.Array items) ->
                Expect.equal items.Length 101 "the first item and 100 appends"
                Expect.equal items[0] (Json.int64 0L) "the first item stays first"
                let appended =
                    [
                        for item in Seq.skip 1 items ->
                            match item with
                            | Json.Number n -> snd (n.TryGetInt64())
                            | _ -> -1L
                    ]
                    |> List.sort
                Expect.equal appended [ 1L .. 100L ] "every append once"
            | other -> failtestf "Expected an array of 101 items, got %A" other
        }

        testCaseTask "an append creates a missing array, and one to a value that is not an array stores nothing"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let! _ =
                store.CommitAsync(
                    id,
                    changeOf [ Update.append (path "cart.items") (json """{"sku":"pear"}"""); setAt "name" "\"ada\"" ],
                    creating,
                    testToken ()
                )
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"cart":{"items":[{"sku":"pear"}]},"name":"ada"}""")) "created"
            let conflicting = changeOf [ setAt "fresh" "true"; Update.append (path "name") (Json.int64 1L) ]
            let! e = throwsAsync<PathConflictException>(fun () -> store.CommitAsync(id, conflicting, existing, testToken ()) :> Task)
            Expect.equal e.Message "Cannot append to 'name': it holds a string, not an array." "the same message on every store"
            let! after = load store id
            Expect.equal after loaded "nothing stored"
        }

        testCaseTask "a deleted session is gone and a late commit cannot bring it back"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, changeOf [ setAt "user" "\"ada\"" ], creating, testToken ())
            let! deleted = store.DeleteAsync(id, testToken ())
            Expect.isTrue deleted "the delete found the session"
            let! afterDelete = load store id
            Expect.equal afterDelete None "afterDelete"
            let! late = store.CommitAsync(id, changeOf [ setAt "late" "true" ], existing, testToken ())
            Expect.equal late CommitResult.SessionGone "late"
            let! afterLate = load store id
            Expect.equal afterLate None "afterLate"
        }

        testCaseTask "a commit that requires the session does not create it"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let! result = store.CommitAsync(id, changeOf [ setAt "a" "1" ], existing, testToken ())
            Expect.equal result CommitResult.SessionGone "result"
            let! loaded = load store id
            Expect.equal loaded None "loaded"
        }

        testCaseTask "a commit over the size limit is refused and stores nothing"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let small = { creating with MaxSizeBytes = 200 }
            let! _ = store.CommitAsync(id, changeOf [ setAt "a" "1" ], small, testToken ())
            let big = changeOf [ setAt "b" "2"; Update.set (path "blob") (Json.string (String('x', 500))) ]
            let! e = throwsAsync<SessionTooLargeException>(fun () -> store.CommitAsync(id, big, small, testToken ()) :> Task)
            Expect.equal e.Limit 200 "e.Limit"
            Expect.isTrue (e.Size > 500L) ($"The reported size {e.Size} should be the size the session would have had.")
            Expect.stringContains e.Message "200" "e.Message"
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"a":1}""")) "loaded"
        }

        testCaseTask "an id that UTF-8 cannot carry (a lone surrogate) is refused by commits and moves, and names no other id's session"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let stem = newId ()
            // Encoders write each lone surrogate as U+FFFD: stored, these ids would all name the last one's session.
            let replaced = stem + "\uFFFD"
            let lone = [ stem + string (char 0xD800); stem + string (char 0xDC00) ]
            let! _ = store.CommitAsync(replaced, changeOf [ setAt "owner" "\"replacement\"" ], creating, testToken ())
            for id in lone do
                let! _ = throwsAsync<ArgumentException>(fun () -> store.CommitAsync(id, changeOf [ setAt "owner" "\"lone\"" ], creating, testToken ()) :> Task)
                let! _ = throwsAsync<ArgumentException>(fun () -> store.MoveAsync(replaced, id, SessionChange.Empty, creating, testToken ()) :> Task)
                let! _ = throwsAsync<ArgumentException>(fun () -> store.MoveAsync(null, id, SessionChange.Empty, creating, testToken ()) :> Task)
                let! loaded = load store id
                Expect.equal loaded None "a load of the id finds nothing"
                let! moved = store.MoveAsync(id, newId (), SessionChange.Empty, creating, testToken ())
                Expect.equal moved CommitResult.SessionGone "a move from the id finds nothing"
                let! deleted = store.DeleteAsync(id, testToken ())
                Expect.isFalse deleted "a delete of the id finds nothing"
            let! kept = load store replaced
            Expect.equal kept (Some(json """{"owner":"replacement"}""")) "the session whose id has U+FFFD itself is untouched"
        }

        testCaseTask "an idle session expires and is never served after"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            // Generous margins for a store on real time: a busy CI machine must not make the fresh load come after the expiry.
            let idle = TimeSpan.FromSeconds 1.5
            let brief = { creating with IdleTimeout = idle }
            let! _ = store.CommitAsync(id, changeOf [ setAt "a" "1" ], brief, testToken ())
            let! fresh = loadFor idle store id
            Expect.isTrue fresh.IsSome "A session within its idle timeout is served."
            do! under.AdvanceAsync(idle * 3.0)
            let! expired = loadFor idle store id
            Expect.equal expired None "expired"
            let! late = store.CommitAsync(id, changeOf [ setAt "b" "2" ], { brief with MustExist = true }, testToken ())
            Expect.equal late CommitResult.SessionGone "late"
        }

        testCaseTask "values keep their exact JSON: big integers, long decimals, empty containers, unicode and odd keys"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let value =
                json
                    """{"int64":9223372036854775807,"beyond":9007199254740993,"huge":1e400,"precise":3.14159265358979323846264338327950288,"scale":1.10,"neg":-0.0,"empty":[],"nothing":{},"nested":[[],{},[{}]],"unicode":"héllo ✓ 𝄞","":"empty key","a.b[0]\"q\"":"escaped key","ключ":"кириллица","t":true,"f":false,"n":null}"""
            let! _ = store.CommitAsync(id, changeOf [ Update.set (path "v") value ], creating, testToken ())
            let! loaded = load store id
            Expect.equal loaded (Some(Json.object [ "v", value ])) "loaded"
            let text = loaded |> Option.map Json.serialize |> Option.defaultValue ""
            Expect.stringContains text "9007199254740993" "text"
            Expect.stringContains text "1.10" "text"
            Expect.stringContains text "1e400" "text"
            // A store that knows the session's size hands it over with the session (telemetry reads it): it must be exact.
            let! stored = store.LoadAsync(id, creating.IdleTimeout, testToken ())
            Expect.equal stored.SizeBytes (JsonSize.utf8Length stored.Data) "a loaded session's size is its tree's compact JSON"
        }

        testCaseTask "increments are exact beyond a double's precision and keep the scale"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, changeOf [ setAt "big" "9007199254740993"; setAt "price" "1.10" ], creating, testToken ())
            let! _ = store.CommitAsync(id, changeOf [ Update.increment (path "big") 1m; Update.increment (path "price") 0.01m ], creating, testToken ())
            let! _ = store.CommitAsync(id, changeOf [ Update.increment (path "fresh") -2.5m ], creating, testToken ())
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"big":9007199254740994,"price":1.11,"fresh":-2.5}""")) "loaded"
        }

        testCaseTask "a patch with a set null then remove creates the containers above the removed key"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let patch = changeOf [ setAt "outer.inner" "1"; Update.remove (path "outer.inner") ]
            let! _ = store.CommitAsync(id, patch, creating, testToken ())
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"outer":{}}""")) "loaded"
        }

        // -----------------------------------------------------------------------------------------
        // The facts beside the tree, moves, the user index (contract v2)
        // -----------------------------------------------------------------------------------------

        testCaseTask "the facts beside the tree are committed and loaded with it, atomically, and never mixed into it"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let change =
                SessionChange(
                    Patch.fold [ setAt "cart" "[1]" ],
                    Patch.fold [ Update.set (path SessionMeta.Created) (Json.int64 1700000000000L); setAt "flash" """{"notice":1.10}""" ]
                )
            let! _ = store.CommitAsync(id, change, creating, testToken ())
            let! _ =
                store.CommitAsync(
                    id,
                    SessionChange(Patch.fold [ Update.append (path "cart") (Json.int64 2L) ], Patch.fold [ Update.remove (path "flash") ]),
                    existing,
                    testToken ()
                )
            let! loaded = store.LoadAsync(id, creating.IdleTimeout, testToken ())
            Expect.isNotNull loaded "loaded"
            Expect.equal (Json.serialize loaded.Data) """{"cart":[1,2]}""" "the tree"
            Expect.equal (Json.serialize loaded.Meta) """{"created":1700000000000}""" "the facts"
        }

        testCaseTask "a commit cannot bind a session to a user: only a move does"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, changeOf [ setAt "a" "1" ], creating, testToken ())
            let! _ =
                throwsAsync<ArgumentException>(fun () ->
                    store.CommitAsync(id, factsOf [ Update.set (path SessionMeta.User) (Json.string "ada") ], existing, testToken ()) :> Task)
            let! loaded = store.LoadAsync(id, creating.IdleTimeout, testToken ())
            Expect.equal (SessionMeta.userOf loaded.Meta) None "not bound"
        }

        testCaseTask "a move carries the session, its facts and the move's change to the new id, and the old id is gone for good"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let fromId, toId = newId (), newId ()
            let! _ = store.CommitAsync(fromId, SessionChange(Patch.fold [ setAt "cart" "[1]" ], Patch.fold [ setAt "created" "5" ]), creating, testToken ())
            // Committed under the old id before the move: carried over.
            let! _ = store.CommitAsync(fromId, changeOf [ Update.increment (path "hits") 1m ], existing, testToken ())
            let! moved = store.MoveAsync(fromId, toId, changeOf [ Update.append (path "cart") (Json.int64 2L) ], creating, testToken ())
            Expect.equal moved CommitResult.Committed "moved"
            let! atNew = store.LoadAsync(toId, creating.IdleTimeout, testToken ())
            Expect.equal (Json.serialize atNew.Data) """{"cart":[1,2],"hits":1}""" "the tree at the new id"
            Expect.equal (Json.serialize atNew.Meta) """{"created":5}""" "the facts moved too"
            let! atOld = load store fromId
            Expect.equal atOld None "nothing at the old id"
            let! late = store.CommitAsync(fromId, changeOf [ setAt "late" "true" ], existing, testToken ())
            Expect.equal late CommitResult.SessionGone "a late commit under the old id finds it gone"
            let! stillGone = load store fromId
            Expect.equal stillGone None "and does not bring it back"
            let! deletedOld = store.DeleteAsync(fromId, testToken ())
            Expect.isFalse deletedOld "deleting the old id finds nothing"
        }

        testCaseTask "moving a session that is gone creates nothing: a destroyed session never comes back"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let fromId, toId = newId (), newId ()
            let! _ = store.CommitAsync(fromId, changeOf [ setAt "secret" "1" ], creating, testToken ())
            let! _ = store.DeleteAsync(fromId, testToken ())
            let! moved = store.MoveAsync(fromId, toId, changeOf [ setAt "more" "2" ], creating, testToken ())
            Expect.equal moved CommitResult.SessionGone "gone"
            let! atNew = load store toId
            Expect.equal atNew None "nothing at the new id"
            let! never = store.MoveAsync(newId (), newId (), SessionChange.Empty, creating, testToken ())
            Expect.equal never CommitResult.SessionGone "an id never stored"
        }

        testCaseTask "a move from no session creates one at the new id"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let toId = newId ()
            let! created = store.MoveAsync(null, toId, SessionChange(Patch.fold [ setAt "a" "1" ], Patch.fold [ setAt "created" "7" ]), creating, testToken ())
            Expect.equal created CommitResult.Committed "created"
            let! loaded = store.LoadAsync(toId, creating.IdleTimeout, testToken ())
            Expect.equal (Json.serialize loaded.Data) """{"a":1}""" "the tree"
            Expect.equal (Json.serialize loaded.Meta) """{"created":7}""" "the facts"
        }

        testCaseTask "a shape upgrade applies once, whichever commit brings it first, and a session of another shape is left alone"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, changeOf [ setAt "cart" """{"items":["apple"]}""" ], creating, testToken ())
            let upgrade = { From = 0; To = 1; Data = Patch.fold [ Update.set (path "cart.lines") (json """["apple"]"""); Update.remove (path "cart.items") ] }
            let withUpgrade (updates: Update list) = SessionChange(Patch.fold updates, Patch.empty, ValueSome upgrade)
            let! first = store.CommitAsync(id, withUpgrade [ Update.append (path "cart.lines") (Json.string "pear") ], existing, testToken ())
            Expect.equal first CommitResult.Committed "the first upgrades"
            // A second request that loaded the old shape brings the same upgrade: skipped, its own change applied.
            let! second = store.CommitAsync(id, withUpgrade [ Update.append (path "cart.lines") (Json.string "fig") ], existing, testToken ())
            Expect.equal second CommitResult.Committed "the second applies only its own change"
            let! loaded = store.LoadAsync(id, creating.IdleTimeout, testToken ())
            Expect.equal (Json.serialize loaded.Data) """{"cart":{"lines":["apple","pear","fig"]}}""" "upgraded once"
            Expect.equal (SessionMeta.shapeOf loaded.Meta) 1 "the shape version"
            // A change made for shape 0 to 1 meets shape 1 to 2's result: nothing stored.
            let! _ =
                store.CommitAsync(
                    id,
                    SessionChange(Patch.empty, Patch.empty, ValueSome { From = 1; To = 2; Data = Patch.fold [ setAt "v2" "true" ] }),
                    existing,
                    testToken ()
                )
            let! stale = store.CommitAsync(id, withUpgrade [ setAt "stale" "true" ], existing, testToken ())
            Expect.equal stale CommitResult.ShapeChanged "another shape"
            let! after = store.LoadAsync(id, creating.IdleTimeout, testToken ())
            Expect.equal (Json.serialize after.Data) """{"cart":{"lines":["apple","pear","fig"]},"v2":true}""" "nothing of the stale change"
        }

        testCaseTask "a move that binds a user indexes the session under that user; a delete and a rebinding move keep the index exact"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let ada, bob = $"ada-{Guid.NewGuid():N}", $"bob-{Guid.NewGuid():N}"
            let anonymous = newId ()
            let! _ = store.CommitAsync(anonymous, changeOf [ setAt "cart" "[1]" ], creating, testToken ())
            let signIn (fromId: string) (user: string) = task {
                let toId = SessionId.createFor user
                let! result =
                    store.MoveAsync(
                        fromId,
                        toId,
                        factsOf [ Update.set (path SessionMeta.User) (Json.string user); setAt "device" """{"ip":"10.0.0.1"}""" ],
                        creating,
                        testToken ()
                    )
                Expect.equal result CommitResult.Committed $"signed in as {user}"
                return toId
            }
            let idsOf (user: string) = task {
                let! sessions = store |> SessionStore.listAllAsync (SessionQuery.OfUser user) (testToken ())
                return sessions |> List.map _.Id |> List.sort
            }
            let! first = signIn anonymous ada
            let! second = signIn null ada
            let! ofAda = idsOf ada
            Expect.equal ofAda (List.sort [ first; second ]) "both sessions of ada"
            let! sessions = store |> SessionStore.listAllAsync (SessionQuery.OfUser ada) (testToken ())
            let summary = sessions |> List.find (fun s -> s.Id = first)
            Expect.equal summary.UserId ada "the summary's user"
            Expect.equal (SessionPath.tryGet (path "device.ip") summary.Meta) (Some(Json.string "10.0.0.1")) "device facts"
            let! stored = store.LoadAsync(first, creating.IdleTimeout, testToken ())
            Expect.equal summary.SizeBytes (JsonSize.utf8Length stored.Data) "the summary's size is the tree's compact JSON"
            Expect.notEqual summary.Handle first "the handle is not the id"
            // Rotating a signed-in session moves its index entry with it.
            let rotated = SessionId.createFor ada
            let! _ = store.MoveAsync(first, rotated, SessionChange.Empty, creating, testToken ())
            let! afterRotate = idsOf ada
            Expect.equal afterRotate (List.sort [ rotated; second ]) "the index follows the move"
            // Signing a session in as another user moves it from one index to the other.
            let! asBob = signIn second bob
            let! adaNow = idsOf ada
            let! bobNow = idsOf bob
            Expect.equal adaNow [ rotated ] "ada keeps one"
            Expect.equal bobNow [ asBob ] "bob has the other"
            let! deleted = store.DeleteAsync(rotated, testToken ())
            Expect.isTrue deleted "deleted"
            let! adaAfter = idsOf ada
            Expect.isEmpty adaAfter "a delete leaves the index in the same step"
        }

        testCaseTask "a user at the limit: Refuse leaves everything as it was, EndLeastRecent ends the least recently used"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let user = $"limited-{Guid.NewGuid():N}"
            let bind = factsOf [ Update.set (path SessionMeta.User) (Json.string user) ]
            let limited policy = { creating with UserLimit = { MaxSessions = 2; Policy = policy } }
            let! _ = store.MoveAsync(null, SessionId.createFor user, bind, limited UserLimitPolicy.Refuse, testToken ())
            do! under.AdvanceAsync(TimeSpan.FromSeconds 2.0)
            let newest = SessionId.createFor user
            let! _ = store.MoveAsync(null, newest, bind, limited UserLimitPolicy.Refuse, testToken ())
            let waiting = newId ()
            let! _ = store.CommitAsync(waiting, changeOf [ setAt "cart" "[1]" ], creating, testToken ())
            let! refused = store.MoveAsync(waiting, SessionId.createFor user, bind, limited UserLimitPolicy.Refuse, testToken ())
            Expect.equal refused CommitResult.UserLimitReached "refused"
            let! still = load store waiting
            Expect.equal still (Some(json """{"cart":[1]}""")) "the session stays where it was"
            let! sessions = store |> SessionStore.listAllAsync (SessionQuery.OfUser user) (testToken ())
            Expect.hasLength sessions 2 "still two"
            // Touch the newer one, so the older is the least recently used.
            let! _ = store.LoadAsync(newest, creating.IdleTimeout, testToken ())
            let third = SessionId.createFor user
            let! admitted = store.MoveAsync(waiting, third, bind, limited UserLimitPolicy.EndLeastRecent, testToken ())
            Expect.equal admitted CommitResult.Committed "admitted"
            let! after = store |> SessionStore.listAllAsync (SessionQuery.OfUser user) (testToken ())
            Expect.equal (after |> List.map _.Id |> List.sort) (List.sort [ newest; third ]) "the least recently used was ended"
        }

        testCaseTask "two sign-ins racing at the limit: exactly one gets in"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let user = $"racing-{Guid.NewGuid():N}"
            let bind = factsOf [ Update.set (path SessionMeta.User) (Json.string user) ]
            let limited = { creating with UserLimit = { MaxSessions = 1; Policy = UserLimitPolicy.Refuse } }
            for round in 1..5 do
                let user = $"{user}-{round}"
                let bind = factsOf [ Update.set (path SessionMeta.User) (Json.string user) ]
                let! results = concurrently 2 (fun _ -> store.MoveAsync(null, SessionId.createFor user, bind, limited, testToken ()))
                let admitted = results |> Array.filter ((=) CommitResult.Committed) |> Array.length
                Expect.equal admitted 1 $"round {round}: one of {results}"
                let! sessions = store |> SessionStore.listAllAsync (SessionQuery.OfUser user) (testToken ())
                Expect.hasLength sessions 1 $"round {round}: one session"
            ignore bind
        }

        testCaseTask "an expired session leaves its user's listing"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let user = $"expiring-{Guid.NewGuid():N}"
            let idle = TimeSpan.FromSeconds 1.5
            let brief = { creating with IdleTimeout = idle }
            let! _ = store.MoveAsync(null, SessionId.createFor user, factsOf [ Update.set (path SessionMeta.User) (Json.string user) ], brief, testToken ())
            let! before = store |> SessionStore.listAllAsync (SessionQuery.OfUser user) (testToken ())
            Expect.hasLength before 1 "listed while live"
            do! under.AdvanceAsync(idle * 3.0)
            let! after = store |> SessionStore.listAllAsync (SessionQuery.OfUser user) (testToken ())
            Expect.isEmpty after "never listed once expired"
        }

        testCaseTask "a listing as large as a Limit can ask gives every session, with no next page"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let ids = [ for _ in 1..3 -> newId () ]
            for id in ids do
                let! _ = store.CommitAsync(id, changeOf [ setAt "n" "1" ], creating, testToken ())
                ()
            // A Limit comes from the caller (perhaps a client's query string): its largest value is no error.
            let! page = store.ListAsync({ UserId = null; After = null; Limit = Int32.MaxValue }, testToken ())
            let listed = page.Sessions |> Seq.map _.Id |> Set.ofSeq
            Expect.isTrue (Set.isSubset (Set.ofList ids) listed) "every session of ours"
            Expect.equal page.Next null "no next page"
        }

        testCaseTask "all live sessions can be listed page by page, each once"
        <| fun () -> task {
            let under = start ()
            let store = under.Store
            let ids = [ for _ in 1..25 -> newId () ]
            for id in ids do
                let! _ = store.CommitAsync(id, changeOf [ setAt "n" "1" ], creating, testToken ())
                ()
            let seen = ResizeArray<string>()
            let mutable after = null
            let mutable pages = 0
            let mutable more = true
            while more do
                let! page = store.ListAsync({ UserId = null; After = after; Limit = 10 }, testToken ())
                Expect.isLessThanOrEqual page.Sessions.Count 10 "a page holds at most the limit"
                seen.AddRange(page.Sessions |> Seq.map _.Id)
                pages <- pages + 1
                after <- page.Next
                more <- not (isNull after) && pages < 1000
            let ours = seen |> Seq.filter (fun id -> ids |> List.contains id) |> List.ofSeq
            Expect.equal (List.sort ours) (List.sort ids) "every session of ours, once"
            Expect.equal (seen |> Seq.distinct |> Seq.length) seen.Count "no session twice"
            let! deleted = store.DeleteAsync(List.head ids, testToken ())
            Expect.isTrue deleted "deleted"
            let! unknown = store.DeleteAsync(newId (), testToken ())
            Expect.isFalse unknown "an unknown id: nothing to delete"
        }
    ]
