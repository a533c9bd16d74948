/// The contract every session store keeps, written once as an Expecto test list: a store's
/// tests call `storeContract` (or `storeContractOnClock`) with a way to make a fresh, empty store.
/// It depends on Sesame and Expecto only, so it can move into a package of its own.
module Sesame.Tests.StoreContract

open System
open System.Threading
open System.Threading.Tasks
open Expecto
open Sesame

/// Commit options for the contract: a long idle timeout, creation allowed, a 1 MiB limit.
let creating = { IdleTimeout = TimeSpan.FromMinutes 10.0; MustExist = false; MaxSizeBytes = 1024 * 1024 }
let existing = { creating with MustExist = true }

let private json (text: string) = Json.parse text
let private path (text: string) = Path.parse text

/// A token for store calls: cancels after a minute so a hung store fails the test instead of CI.
let private testToken () = (new CancellationTokenSource(TimeSpan.FromMinutes 1.0)).Token

let patchOf (updates: Update list) = Patch.fold updates
let setAt (p: string) (value: string) = Update.set (path p) (json value)

/// A clock that moves only when told: for stores that take a TimeProvider, so expiry is tested
/// without waiting. Timers are the system's (a store's sweep runs on real time, against this clock).
[<Sealed>]
type ManualClock() =
    inherit TimeProvider()
    let mutable ticks = DateTimeOffset(2030, 1, 1, 12, 0, 0, TimeSpan.Zero).UtcTicks
    /// Moves the clock forward.
    member _.Advance(by: TimeSpan) = Interlocked.Add(&ticks, by.Ticks) |> ignore
    override _.GetUtcNow() = DateTimeOffset(Interlocked.Read &ticks, TimeSpan.Zero)

/// A store made for one contract test, and how that test moves the store's time forward.
/// Disposing it disposes the store, if the store is disposable.
type ContractStore =
    { Store: ISessionStore
      Advance: TimeSpan -> Task }

    interface IDisposable with
        member this.Dispose() =
            match this.Store with
            | :? IDisposable as disposable -> disposable.Dispose()
            | _ -> ()

/// Fails unless the task throws exactly 'error (not a subclass); gives the exception.
let private throwsAsync<'error when 'error :> exn> (work: unit -> Task) : Task<'error> =
    task {
        let! outcome =
            task {
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
        let started =
            [ for i in 1..count ->
                  Task.Factory.StartNew(
                      (fun () ->
                          Interlocked.Increment &arrived.contents |> ignore
                          SpinWait.SpinUntil(fun () -> Volatile.Read &arrived.contents = count)
                          operation i),
                      TaskCreationOptions.LongRunning
                  ).Unwrap() ]
        Task.WhenAll started
    else
        task {
            let gate = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
            let allArrived = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
            let arrived = ref 0
            let started =
                [ for i in 1..count ->
                      Task.Run<'result>(fun () ->
                          task {
                              if Interlocked.Increment &arrived.contents = count then allArrived.SetResult()
                              do! gate.Task
                              return! operation i
                          }) ]
            do! allArrived.Task
            gate.SetResult()
            return! Task.WhenAll started
        }

/// <summary>The store contract for the stores made by <paramref name="start"/>, one per test.</summary>
let storeContractWith (name: string) (start: unit -> ContractStore) : Test =
    let newId () = $"contract-{Guid.NewGuid():N}"
    let load (store: ISessionStore) (id: string) = store.LoadAsync(id, creating.IdleTimeout, testToken ())
    testList name [
        testCaseTask "loading an unknown id gives nothing" <| fun () -> task {
            use under = start ()
            let store = under.Store
            let! loaded = load store (newId ())
            Expect.equal loaded None "loaded"
        }

        testCaseTask "load gives what was committed" <| fun () -> task {
            use under = start ()
            let store = under.Store
            let id = newId ()
            let! result = store.CommitAsync(id, patchOf [ setAt "user.name" "\"ada\""; Update.increment (path "times") 1m ], creating, testToken ())
            Expect.equal result CommitResult.Committed "result"
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"user":{"name":"ada"},"times":1}""")) "loaded"
        }

        testCaseTask "a commit applies its patch to the stored value, never overwriting it" <| fun () -> task {
            use under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, patchOf [ setAt "a" "1"; setAt "keep.me" "[1,2]" ], creating, testToken ())
            let! _ = store.CommitAsync(id, patchOf [ setAt "b" "2"; Update.remove (path "a") ], creating, testToken ())
            let! _ = store.CommitAsync(id, patchOf [ setAt "keep.me[2]" "3" ], creating, testToken ())
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"keep":{"me":[1,2,3]},"b":2}""")) "loaded"
        }

        testCaseTask "replacing the root replaces the whole session" <| fun () -> task {
            use under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, patchOf [ setAt "a" "1" ], creating, testToken ())
            let! _ = store.CommitAsync(id, patchOf [ Update.set Path.root (json """{"z":[]}""") ], creating, testToken ())
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"z":[]}""")) "loaded"
        }

        testCaseTask "a commit that conflicts with the stored value stores nothing of its patch" <| fun () -> task {
            use under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, patchOf [ setAt "name" "\"ada\"" ], creating, testToken ())
            // The first update fits; the second crosses a string. All or nothing.
            let conflicting = patchOf [ setAt "fresh" "true"; setAt "name.first" "\"x\"" ]
            let! _ = throwsAsync<PathConflictException> (fun () -> store.CommitAsync(id, conflicting, creating, testToken ()) :> Task)
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"name":"ada"}""")) "loaded"
        }

        testCaseTask "two concurrent commits to different paths both survive" <| fun () -> task {
            use under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, patchOf [ setAt "start" "0" ], creating, testToken ())
            // Both released at once by one gate, so the two commits race for the same session.
            let! results =
                concurrently 2 (fun i ->
                    let side = if i = 1 then "left" else "right"
                    store.CommitAsync(id, patchOf [ setAt $"{side}.value" (string i) ], existing, testToken ()))
            for result in results do
                Expect.equal result CommitResult.Committed "each concurrent commit is committed"
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"start":0,"left":{"value":1},"right":{"value":2}}""")) "loaded"
        }

        testCaseTask "200 concurrent increments of one counter add up to exactly 200" <| fun () -> task {
            use under = start ()
            let store = under.Store
            let id = newId ()
            let increment = patchOf [ Update.increment (path "counter") 1m ]
            let! _ = concurrently 200 (fun _ -> store.CommitAsync(id, increment, creating, testToken ()))
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"counter":200}""")) "loaded"
        }

        testCaseTask "100 concurrent commits setting different keys keep all 100" <| fun () -> task {
            use under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = concurrently 100 (fun i -> store.CommitAsync(id, patchOf [ setAt $"keys.k{i}" (string i) ], creating, testToken ()))
            let! loaded = load store id
            let keys = loaded |> Option.bind (Path.tryGet (path "keys"))
            match keys with
            | Some(Json.Object o) ->
                Expect.equal o.Count 100 "o.Count"
                for i in 1..100 do
                    Expect.equal (o.TryFind $"k{i}") (ValueSome(Json.int64 (int64 i))) $"keys.k{i}"
            | other -> failwith $"Expected 100 keys, got {other}"
        }

        testCaseTask "100 concurrent appends to one array keep all 100, each once" <| fun () -> task {
            use under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, patchOf [ setAt "items" "[0]" ], creating, testToken ())
            let! _ = concurrently 100 (fun i -> store.CommitAsync(id, patchOf [ Update.append (path "items") (Json.int64 (int64 i)) ], existing, testToken ()))
            let! loaded = load store id
            match loaded |> Option.bind (Path.tryGet (path "items")) with
            | Some(Json.Array items) ->
                Expect.equal items.Length 101 "the first item and 100 appends"
                Expect.equal items[0] (Json.int64 0L) "the first item stays first"
                let appended = [ for item in Seq.skip 1 items -> match item with Json.Number n -> n.TryGetInt64().Value | _ -> -1L ] |> List.sort
                Expect.equal appended [ 1L .. 100L ] "every append once"
            | other -> failtestf "Expected an array of 101 items, got %A" other
        }

        testCaseTask "an append creates a missing array, and one to a value that is not an array stores nothing" <| fun () -> task {
            use under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, patchOf [ Update.append (path "cart.items") (json """{"sku":"pear"}"""); setAt "name" "\"ada\"" ], creating, testToken ())
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"cart":{"items":[{"sku":"pear"}]},"name":"ada"}""")) "created"
            let conflicting = patchOf [ setAt "fresh" "true"; Update.append (path "name") (Json.int64 1L) ]
            let! e = throwsAsync<PathConflictException> (fun () -> store.CommitAsync(id, conflicting, existing, testToken ()) :> Task)
            Expect.equal e.Message "Cannot append to 'name': it holds a string, not an array." "the same message on every store"
            let! after = load store id
            Expect.equal after loaded "nothing stored"
        }

        testCaseTask "a deleted session is gone and a late commit cannot bring it back" <| fun () -> task {
            use under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, patchOf [ setAt "user" "\"ada\"" ], creating, testToken ())
            do! store.DeleteAsync(id, testToken ())
            let! afterDelete = load store id
            Expect.equal afterDelete None "afterDelete"
            let! late = store.CommitAsync(id, patchOf [ setAt "late" "true" ], existing, testToken ())
            Expect.equal late CommitResult.SessionGone "late"
            let! afterLate = load store id
            Expect.equal afterLate None "afterLate"
        }

        testCaseTask "a commit that requires the session does not create it" <| fun () -> task {
            use under = start ()
            let store = under.Store
            let id = newId ()
            let! result = store.CommitAsync(id, patchOf [ setAt "a" "1" ], existing, testToken ())
            Expect.equal result CommitResult.SessionGone "result"
            let! loaded = load store id
            Expect.equal loaded None "loaded"
        }

        testCaseTask "a commit over the size limit is refused and stores nothing" <| fun () -> task {
            use under = start ()
            let store = under.Store
            let id = newId ()
            let small = { creating with MaxSizeBytes = 200 }
            let! _ = store.CommitAsync(id, patchOf [ setAt "a" "1" ], small, testToken ())
            let big = patchOf [ setAt "b" "2"; Update.set (path "blob") (Json.string (String('x', 500))) ]
            let! e = throwsAsync<SessionTooLargeException> (fun () -> store.CommitAsync(id, big, small, testToken ()) :> Task)
            Expect.equal e.Limit 200 "e.Limit"
            Expect.isTrue (e.Size > 500L) ($"The reported size {e.Size} should be the size the session would have had.")
            Expect.stringContains e.Message "200" "e.Message"
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"a":1}""")) "loaded"
        }

        testCaseTask "an idle session expires and is never served after" <| fun () -> task {
            use under = start ()
            let store = under.Store
            let id = newId ()
            // Generous margins for a store on real time: a busy CI machine must not make the fresh load come after the expiry.
            let idle = TimeSpan.FromSeconds 1.5
            let brief = { creating with IdleTimeout = idle }
            let! _ = store.CommitAsync(id, patchOf [ setAt "a" "1" ], brief, testToken ())
            let! fresh = store.LoadAsync(id, idle, testToken ())
            Expect.isTrue fresh.IsSome "A session within its idle timeout is served."
            do! under.Advance(idle * 3.0)
            let! expired = store.LoadAsync(id, idle, testToken ())
            Expect.equal expired None "expired"
            let! late = store.CommitAsync(id, patchOf [ setAt "b" "2" ], { brief with MustExist = true }, testToken ())
            Expect.equal late CommitResult.SessionGone "late"
        }

        testCaseTask "values keep their exact JSON: big integers, long decimals, empty containers, unicode and odd keys" <| fun () -> task {
            use under = start ()
            let store = under.Store
            let id = newId ()
            let value =
                json
                    """{"int64":9223372036854775807,"beyond":9007199254740993,"huge":1e400,"precise":3.14159265358979323846264338327950288,"scale":1.10,"neg":-0.0,"empty":[],"nothing":{},"nested":[[],{},[{}]],"unicode":"héllo ✓ 𝄞","":"empty key","a.b[0]\"q\"":"escaped key","ключ":"кириллица","t":true,"f":false,"n":null}"""
            let! _ = store.CommitAsync(id, patchOf [ Update.set (path "v") value ], creating, testToken ())
            let! loaded = load store id
            Expect.equal loaded (Some(Json.object [ "v", value ])) "loaded"
            let text = loaded |> Option.map Json.serialize |> Option.defaultValue ""
            Expect.stringContains text "9007199254740993" "text"
            Expect.stringContains text "1.10" "text"
            Expect.stringContains text "1e400" "text"
        }

        testCaseTask "increments are exact beyond a double's precision and keep the scale" <| fun () -> task {
            use under = start ()
            let store = under.Store
            let id = newId ()
            let! _ = store.CommitAsync(id, patchOf [ setAt "big" "9007199254740993"; setAt "price" "1.10" ], creating, testToken ())
            let! _ = store.CommitAsync(id, patchOf [ Update.increment (path "big") 1m; Update.increment (path "price") 0.01m ], creating, testToken ())
            let! _ = store.CommitAsync(id, patchOf [ Update.increment (path "fresh") -2.5m ], creating, testToken ())
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"big":9007199254740994,"price":1.11,"fresh":-2.5}""")) "loaded"
        }

        testCaseTask "a patch with a set null then remove creates the containers above the removed key" <| fun () -> task {
            use under = start ()
            let store = under.Store
            let id = newId ()
            let patch = patchOf [ setAt "outer.inner" "1"; Update.remove (path "outer.inner") ]
            let! _ = store.CommitAsync(id, patch, creating, testToken ())
            let! loaded = load store id
            Expect.equal loaded (Some(json """{"outer":{}}""")) "loaded"
        }
    ]

/// <summary>
/// The store contract for a store on real time (e.g. Redis, whose expiry is the server's): the
/// expiry test waits for the idle timeout to pass.
/// </summary>
let storeContract (name: string) (createStore: unit -> ISessionStore) : Test =
    storeContractWith name (fun () -> { Store = createStore (); Advance = fun by -> Task.Delay by })

/// <summary>
/// The store contract for a store that reads the given clock: each test gets a clock of its own,
/// and the expiry test moves it instead of waiting.
/// </summary>
let storeContractOnClock (name: string) (createStore: TimeProvider -> ISessionStore) : Test =
    storeContractWith name (fun () ->
        let clock = ManualClock()
        { Store = createStore clock; Advance = fun by -> clock.Advance by; Task.CompletedTask })
