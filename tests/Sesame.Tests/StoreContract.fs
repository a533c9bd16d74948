module Sesame.Tests.StoreContract

open Sesame
open System
open System.Threading.Tasks
open Xunit

/// Commit options for the contract: a long idle timeout, creation allowed, a 1 MiB limit.
let creating = { IdleTimeout = TimeSpan.FromMinutes 10.0; MustExist = false; MaxSizeBytes = 1024 * 1024 }
let existing = { creating with MustExist = true }

let patchOf (updates: Update list) = Patch.fold updates
let setAt (p: string) (value: string) = Update.set (path p) (json value)

/// <summary>
/// The contract every store keeps, written once. A store's test class inherits it and says how
/// to make a fresh, empty store; xunit runs every fact below against it.
/// </summary>
[<AbstractClass>]
type StoreContractTests() =

    let mutable counter = 0

    /// A new store holding no sessions (or at least none of the ids this suite makes).
    abstract CreateStore: unit -> ISessionStore

    /// A fresh session id for one test.
    member _.NewId() =
        counter <- counter + 1
        $"contract-{Guid.NewGuid():N}-{counter}"

    member private this.Load(store: ISessionStore, id: string) =
        store.LoadAsync(id, creating.IdleTimeout, testToken ())

    [<Fact>]
    member this.``loading an unknown id gives nothing``() =
        task {
            let store = this.CreateStore()
            let! loaded = this.Load(store, this.NewId())
            Assert.Equal(None, loaded)
        }

    [<Fact>]
    member this.``load gives what was committed``() =
        task {
            let store = this.CreateStore()
            let id = this.NewId()
            let! result = store.CommitAsync(id, patchOf [ setAt "user.name" "\"ada\""; Update.increment (path "times") 1m ], creating, testToken ())
            Assert.Equal(CommitResult.Committed, result)
            let! loaded = this.Load(store, id)
            Assert.Equal(Some(json """{"user":{"name":"ada"},"times":1}"""), loaded)
        }

    [<Fact>]
    member this.``a commit applies its patch to the stored value, never overwriting it``() =
        task {
            let store = this.CreateStore()
            let id = this.NewId()
            let! _ = store.CommitAsync(id, patchOf [ setAt "a" "1"; setAt "keep.me" "[1,2]" ], creating, testToken ())
            let! _ = store.CommitAsync(id, patchOf [ setAt "b" "2"; Update.remove (path "a") ], creating, testToken ())
            let! _ = store.CommitAsync(id, patchOf [ setAt "keep.me[2]" "3" ], creating, testToken ())
            let! loaded = this.Load(store, id)
            Assert.Equal(Some(json """{"keep":{"me":[1,2,3]},"b":2}"""), loaded)
        }

    [<Fact>]
    member this.``replacing the root replaces the whole session``() =
        task {
            let store = this.CreateStore()
            let id = this.NewId()
            let! _ = store.CommitAsync(id, patchOf [ setAt "a" "1" ], creating, testToken ())
            let! _ = store.CommitAsync(id, patchOf [ Update.set Path.root (json """{"z":[]}""") ], creating, testToken ())
            let! loaded = this.Load(store, id)
            Assert.Equal(Some(json """{"z":[]}"""), loaded)
        }

    [<Fact>]
    member this.``a commit that conflicts with the stored value stores nothing of its patch``() =
        task {
            let store = this.CreateStore()
            let id = this.NewId()
            let! _ = store.CommitAsync(id, patchOf [ setAt "name" "\"ada\"" ], creating, testToken ())
            // The first update fits; the second crosses a string. All or nothing.
            let conflicting = patchOf [ setAt "fresh" "true"; setAt "name.first" "\"x\"" ]
            let! _ = Assert.ThrowsAsync<PathConflictException>(fun () -> store.CommitAsync(id, conflicting, creating, testToken ()) :> Task)
            let! loaded = this.Load(store, id)
            Assert.Equal(Some(json """{"name":"ada"}"""), loaded)
        }

    [<Fact>]
    member this.``two concurrent commits to different paths both survive``() =
        task {
            let store = this.CreateStore()
            let id = this.NewId()
            let! _ = store.CommitAsync(id, patchOf [ setAt "start" "0" ], creating, testToken ())
            let one = Task.Run<CommitResult>(fun () -> store.CommitAsync(id, patchOf [ setAt "left.value" "1" ], existing, testToken ()))
            let two = Task.Run<CommitResult>(fun () -> store.CommitAsync(id, patchOf [ setAt "right.value" "2" ], existing, testToken ()))
            let! results = Task.WhenAll(one, two)
            Assert.All(results, fun r -> Assert.Equal(CommitResult.Committed, r))
            let! loaded = this.Load(store, id)
            Assert.Equal(Some(json """{"start":0,"left":{"value":1},"right":{"value":2}}"""), loaded)
        }

    [<Fact>]
    member this.``200 concurrent increments of one counter add up to exactly 200``() =
        task {
            let store = this.CreateStore()
            let id = this.NewId()
            let increment = patchOf [ Update.increment (path "counter") 1m ]
            let! _ =
                Task.WhenAll(
                    [ for _ in 1..200 -> Task.Run<CommitResult>(fun () -> store.CommitAsync(id, increment, creating, testToken ())) ]
                )
            let! loaded = this.Load(store, id)
            Assert.Equal(Some(json """{"counter":200}"""), loaded)
        }

    [<Fact>]
    member this.``100 concurrent commits setting different keys keep all 100``() =
        task {
            let store = this.CreateStore()
            let id = this.NewId()
            let! _ =
                Task.WhenAll(
                    [ for i in 1..100 ->
                          Task.Run<CommitResult>(fun () -> store.CommitAsync(id, patchOf [ setAt $"keys.k{i}" (string i) ], creating, testToken ())) ]
                )
            let! loaded = this.Load(store, id)
            let keys = loaded |> Option.bind (Path.tryGet (path "keys"))
            match keys with
            | Some(Json.Object o) ->
                Assert.Equal(100, o.Count)
                for i in 1..100 do
                    Assert.Equal(ValueSome(Json.int64 (int64 i)), o.TryFind $"k{i}")
            | other -> failwith $"Expected 100 keys, got {other}"
        }

    [<Fact>]
    member this.``a deleted session is gone and a late commit cannot bring it back``() =
        task {
            let store = this.CreateStore()
            let id = this.NewId()
            let! _ = store.CommitAsync(id, patchOf [ setAt "user" "\"ada\"" ], creating, testToken ())
            do! store.DeleteAsync(id, testToken ())
            let! afterDelete = this.Load(store, id)
            Assert.Equal(None, afterDelete)
            let! late = store.CommitAsync(id, patchOf [ setAt "late" "true" ], existing, testToken ())
            Assert.Equal(CommitResult.SessionGone, late)
            let! afterLate = this.Load(store, id)
            Assert.Equal(None, afterLate)
        }

    [<Fact>]
    member this.``a commit that requires the session does not create it``() =
        task {
            let store = this.CreateStore()
            let id = this.NewId()
            let! result = store.CommitAsync(id, patchOf [ setAt "a" "1" ], existing, testToken ())
            Assert.Equal(CommitResult.SessionGone, result)
            let! loaded = this.Load(store, id)
            Assert.Equal(None, loaded)
        }

    [<Fact>]
    member this.``a commit over the size limit is refused and stores nothing``() =
        task {
            let store = this.CreateStore()
            let id = this.NewId()
            let small = { creating with MaxSizeBytes = 200 }
            let! _ = store.CommitAsync(id, patchOf [ setAt "a" "1" ], small, testToken ())
            let big = patchOf [ setAt "b" "2"; Update.set (path "blob") (Json.string (String('x', 500))) ]
            let! e = Assert.ThrowsAsync<SessionTooLargeException>(fun () -> store.CommitAsync(id, big, small, testToken ()) :> Task)
            Assert.Equal(200, e.Limit)
            Assert.True(e.Size > 500L, $"The reported size {e.Size} should be the size the session would have had.")
            Assert.Contains("200", e.Message)
            let! loaded = this.Load(store, id)
            Assert.Equal(Some(json """{"a":1}"""), loaded)
        }

    [<Fact>]
    member this.``an idle session expires and is never served after``() =
        task {
            let store = this.CreateStore()
            let id = this.NewId()
            // Generous margins: a busy CI machine must not make the fresh load come after the expiry.
            let idle = TimeSpan.FromSeconds 1.5
            let brief = { creating with IdleTimeout = idle }
            let! _ = store.CommitAsync(id, patchOf [ setAt "a" "1" ], brief, testToken ())
            let! fresh = store.LoadAsync(id, idle, testToken ())
            Assert.True(fresh.IsSome, "A session within its idle timeout is served.")
            do! Task.Delay(idle * 3.0)
            let! expired = store.LoadAsync(id, idle, testToken ())
            Assert.Equal(None, expired)
            let! late = store.CommitAsync(id, patchOf [ setAt "b" "2" ], { brief with MustExist = true }, testToken ())
            Assert.Equal(CommitResult.SessionGone, late)
        }

    [<Fact>]
    member this.``values keep their exact JSON: big integers, long decimals, empty containers, unicode and odd keys``() =
        task {
            let store = this.CreateStore()
            let id = this.NewId()
            let value =
                json
                    """{"int64":9223372036854775807,"beyond":9007199254740993,"huge":1e400,"precise":3.14159265358979323846264338327950288,"scale":1.10,"neg":-0.0,"empty":[],"nothing":{},"nested":[[],{},[{}]],"unicode":"héllo ✓ 𝄞","":"empty key","a.b[0]\"q\"":"escaped key","ключ":"кириллица","t":true,"f":false,"n":null}"""
            let! _ = store.CommitAsync(id, patchOf [ Update.set (path "v") value ], creating, testToken ())
            let! loaded = this.Load(store, id)
            Assert.Equal(Some(Json.object [ "v", value ]), loaded)
            let text = loaded |> Option.map Json.serialize |> Option.defaultValue ""
            Assert.Contains("9007199254740993", text)
            Assert.Contains("1.10", text)
            Assert.Contains("1e400", text)
        }

    [<Fact>]
    member this.``increments are exact beyond a double's precision and keep the scale``() =
        task {
            let store = this.CreateStore()
            let id = this.NewId()
            let! _ = store.CommitAsync(id, patchOf [ setAt "big" "9007199254740993"; setAt "price" "1.10" ], creating, testToken ())
            let! _ = store.CommitAsync(id, patchOf [ Update.increment (path "big") 1m; Update.increment (path "price") 0.01m ], creating, testToken ())
            let! _ = store.CommitAsync(id, patchOf [ Update.increment (path "fresh") -2.5m ], creating, testToken ())
            let! loaded = this.Load(store, id)
            Assert.Equal(Some(json """{"big":9007199254740994,"price":1.11,"fresh":-2.5}"""), loaded)
        }

    [<Fact>]
    member this.``a patch with a set null then remove creates the containers above the removed key``() =
        task {
            let store = this.CreateStore()
            let id = this.NewId()
            let patch = patchOf [ setAt "outer.inner" "1"; Update.remove (path "outer.inner") ]
            let! _ = store.CommitAsync(id, patch, creating, testToken ())
            let! loaded = this.Load(store, id)
            Assert.Equal(Some(json """{"outer":{}}"""), loaded)
        }
