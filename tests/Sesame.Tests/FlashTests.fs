/// Flash values (src/Sesame.Fs/Flash.fs, Session.flash and friends), end to end through the real pipeline, on every
/// in-process store.
module Sesame.Tests.FlashTests

open System
open System.Collections.Concurrent
open System.Threading
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open Expecto
open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

let private noOptions (_: SesameOptions) = ()

/// What a handler waiting in the middle of a request needs: a signal that it got there, and a gate to go on.
type private Pause() =
    member val Reached = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    member val Release = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)

/// The app: one path per operation; `key` and `value` in the query. `/read?...&pause=name` reads (`/flash` and
/// `/flash-and-sign-in` flash), then waits for the test to release the pause of that name.
let private app (pauses: ConcurrentDictionary<string, Pause>) : HttpHandler =
    withSession
    >=> Session.handler (fun session next ctx ->
        let query (name: string) = string ctx.Request.Query[name]
        let key = query "key"
        let read () =
            match session |> Session.tryGetFlash<string> key with
            | Some value -> value
            | None -> "(none)"
        // Waits, when the query names a pause, for the test to release it.
        let paused () : Task =
            match query "pause" with
            | "" -> Task.CompletedTask
            | name ->
                let pause = pauses[name]
                pause.Reached.SetResult()
                pause.Release.Task
        task {
            let! body = task {
                match ctx.Request.Path.Value with
                | "/flash" ->
                    session |> Session.flash key (query "value")
                    do! paused ()
                    return "flashed"
                | "/flash-and-sign-in" ->
                    session |> Session.flash key (query "value")
                    do! paused ()
                    let! result = session |> Session.signInAsync "ada"
                    return string result
                | "/read" ->
                    let value = read ()
                    do! paused ()
                    return value
                | "/flash-then-read" ->
                    session |> Session.flash key (query "value")
                    return read ()
                | "/keep" ->
                    let value = read ()
                    session |> Session.keepFlash key
                    return value
                | "/read-and-keep" ->
                    let value = read ()
                    session |> Session.keepFlash (query "keep")
                    return value
                | "/reflash" ->
                    let keys = Session.flashKeys session
                    session |> Session.reflash
                    return String.Join(",", keys)
                | "/keys" -> return String.Join(",", Session.flashKeys session)
                | "/visit" -> return string (session |> Session.increment "visits" 1m)
                | "/show" -> return Json.serialize (Session.current session)
                | "/destroy-then-flash" ->
                    do! Session.destroyAsync session
                    session |> Session.flash key (query "value")
                    return "destroyed"
                | other -> return $"no route {other}"
            }
            return! text body next ctx
        })

/// The stored session (tree and facts) of the last commit the observed store saw.
let private storedOf (store: ObservedStore) = task {
    let id, _ = List.last store.Patches
    let! stored = store.Inner.LoadAsync(id, TimeSpan.FromMinutes 1.0, CancellationToken.None)
    return stored
}

/// Sends two requests that each wait at a pause of their own (named in their url), and once both have got there, lets
/// the first go on to its answer before the second: their answers (response, body), in that order.
let private inTurn (browser: Browser) (pauses: ConcurrentDictionary<string, Pause>) (first: string, firstUrl: string) (second: string, secondUrl: string) = task {
    let firstPause, secondPause = pauses.GetOrAdd(first, fun _ -> Pause()), pauses.GetOrAdd(second, fun _ -> Pause())
    let firstSent = browser.GetAsync firstUrl
    let secondSent = browser.GetAsync secondUrl
    do! firstPause.Reached.Task
    do! secondPause.Reached.Task
    firstPause.Release.SetResult()
    let! firstAnswer = firstSent
    secondPause.Release.SetResult()
    let! secondAnswer = secondSent
    return firstAnswer, secondAnswer
}

/// Two requests on one session that have each read it (no flash yet) and flashed 3 KB, within a limit of 4 KB on its
/// own: the first to commit fits, the second (`second`: a flash, or a flash and a sign-in) is refused, and the facts
/// stored hold the first's value only.
let private concurrentFlashesOn (kind: StoreKind) (second: string) = task {
    let pauses = ConcurrentDictionary<string, Pause>()
    let store = ObservedStore(kind.Create TimeProvider.System)
    let! host = startHostOn Kestrel store (fun options -> options.MaxSessionBytes <- 4096) (runHandler (app pauses)) (new LogCapture())
    use _ = host
    let browser = Browser host
    let! _ = browser.GetTextAsync "/visit"
    let value = String('x', 3000)
    let! firstResponse, laterResponse = inTurn browser pauses ("a", $"/flash?key=a&value={value}&pause=a") ("b", $"{second}?key=b&value={value}&pause=b")
    Expect.equal (fst firstResponse).StatusCode Net.HttpStatusCode.OK "the first to commit fits"
    Expect.equal (fst laterResponse).StatusCode Net.HttpStatusCode.InternalServerError $"{second}: the second would pass the limit with the first's"
    let! stored = storedOf store
    match SessionPath.tryGet (SessionPath.ofKeys [ SessionMeta.Flash ]) stored.Meta with
    | Some(Json.Object entries) -> Expect.equal entries.Count 1 $"{second}: the first request's value, and only that"
    | other -> failtest $"Expected the flash entries in the facts, found {other}"
    let size = JsonSize.utf8Length stored.Meta
    Expect.isTrue (size <= 4096L) $"{second}: the facts stored are within the limit ({size} bytes)"
}

/// Disposes the store, if it is disposable, when the test ends.
let private disposing (store: SessionStore) = {
    new IDisposable with
        member _.Dispose() =
            match box store with
            | :? IDisposable as disposable -> disposable.Dispose()
            | _ -> ()
}

/// A change of the facts that flashes `size` bytes under `name`.
let private flashOf (name: string) (size: int) =
    SessionChange(Patch.empty, Patch.fold [ Update.set (SessionPath.ofKeys [ SessionMeta.Flash; name ]) (Json.string (String('x', size))) ])

let private onStore (kind: StoreKind) =
    testList kind.Name [
        let serve () = task {
            let store = ObservedStore(kind.Create TimeProvider.System)
            let pauses = ConcurrentDictionary<string, Pause>()
            let! host = startHost store noOptions (runHandler (app pauses)) (new LogCapture())
            return store, pauses, host
        }

        testCaseTask "a flashed value is read by the next request only, then it is gone"
        <| fun () -> task {
            let! store, _, host = serve ()
            use _ = host
            let browser = Browser host
            let! _ = browser.GetTextAsync "/visit"
            let cookie = browser.Cookie
            let! _ = browser.GetTextAsync "/flash?key=notice&value=Saved"
            let! next = browser.GetTextAsync "/read?key=notice"
            Expect.equal next "Saved" "the next request reads it"
            let! after = browser.GetTextAsync "/read?key=notice"
            Expect.equal after "(none)" "the request after that does not"
            Expect.equal browser.Cookie cookie "one session throughout"
            // An in-process store counts what it holds exactly (a shared one counts at its sweeps, over every app's).
            if not store.Inner.IsShared then Expect.equal store.Inner.ActiveSessionCount (Nullable 1L) "one session held"
        }

        testCaseTask "a brand-new visitor's flash creates the session that carries it"
        <| fun () -> task {
            let! _, _, host = serve ()
            use _ = host
            let browser = Browser host
            let! _ = browser.GetTextAsync "/flash?key=notice&value=Welcome"
            Expect.isSome browser.Cookie "the flash needs a session, so the response sets its cookie"
            let! next = browser.GetTextAsync "/read?key=notice"
            Expect.equal next "Welcome" "read by the next request"
        }

        testCaseTask "flash values live in the facts beside the tree, never in the session's data"
        <| fun () -> task {
            let! store, _, host = serve ()
            use _ = host
            let browser = Browser host
            let! _ = browser.GetTextAsync "/visit"
            let! _ = browser.GetTextAsync "/flash?key=notice&value=Saved"
            let! stored = storedOf store
            Expect.equal (Json.serialize stored.Data) """{"visits":1}""" "the tree holds the app's data only"
            match SessionPath.tryGet (SessionPath.ofKeys [ SessionMeta.Flash ]) stored.Meta with
            | Some(Json.Object entries) ->
                Expect.equal entries.Count 1 "one flash entry"
                let entry = (Seq.head entries).Value
                Expect.equal (SessionPath.tryGet (SessionPath.parse "key") entry) (Some(Json.string "notice")) "its key"
                Expect.equal (SessionPath.tryGet (SessionPath.parse "value") entry) (Some(Json.string "Saved")) "its value"
            | other -> failtest $"Expected the flash entries in the facts, found {other}"
            let! shown = browser.GetTextAsync "/show"
            Expect.equal shown """{"visits":1}""" "the session's data, as handlers see it, has no flash"
            let! stored = storedOf store
            Expect.isSome (SessionPath.tryGet (SessionPath.ofKeys [ SessionMeta.Flash ]) stored.Meta) "showing the data did not read the flash"
        }

        testCaseTask "flash values are bounded by MaxSessionBytes: a request whose flash would pass it stores nothing, however the values add up"
        <| fun () -> task {
            // A form kept across a redirect flashes what the client posted: a client that never follows the redirect, and
            // names its fields anew each time, would otherwise grow one session without bound.
            let store = ObservedStore(kind.Create TimeProvider.System)
            // On Kestrel: a commit that fails as the response starts is a 500 there.
            let! host =
                startHostOn Kestrel store (fun options -> options.MaxSessionBytes <- 4096) (runHandler (app (ConcurrentDictionary()))) (new LogCapture())
            use _ = host
            let browser = Browser host
            let! _ = browser.GetTextAsync "/visit"
            let value = String('x', 1500)
            let! first = browser.GetAsync $"/flash?key=a&value={value}"
            Expect.equal (fst first).StatusCode Net.HttpStatusCode.OK "1.5 KB of flash"
            let! second = browser.GetAsync $"/flash?key=b&value={value}"
            Expect.equal (fst second).StatusCode Net.HttpStatusCode.OK "3 KB of flash"
            let! third = browser.GetAsync $"/flash?key=c&value={value}"
            Expect.equal (fst third).StatusCode Net.HttpStatusCode.InternalServerError "4.5 KB of flash is refused"
            let! alone = browser.GetAsync $"""/flash?key=d&value={String('y', 5000)}"""
            Expect.equal (fst alone).StatusCode Net.HttpStatusCode.InternalServerError "one value past the limit is refused"
            let! stored = storedOf store
            match SessionPath.tryGet (SessionPath.ofKeys [ SessionMeta.Flash ]) stored.Meta with
            | Some(Json.Object entries) -> Expect.equal entries.Count 2 "the two values that fit, and only those"
            | other -> failtest $"Expected the flash entries in the facts, found {other}"
            let! read = browser.GetTextAsync "/read?key=b"
            Expect.equal read value "the next request reads what was stored"
            let! again = browser.GetAsync $"/flash?key=c&value={value}"
            Expect.equal (fst again).StatusCode Net.HttpStatusCode.OK "once read, the flash has room again"
        }

        testCaseTask "concurrent requests that each flash within MaxSessionBytes cannot add up past it: the store refuses the one that would"
        <| fun () -> task {
            for second in [ "/flash"; "/flash-and-sign-in" ] do
                do! concurrentFlashesOn kind second
        }

        testCaseTask "the store itself refuses a move that carries facts grown past the limit, and an increment of the facts past it"
        <| fun () -> task {
            // A move carries what other requests committed to the old id since its own request loaded the session.
            let store = kind.Create TimeProvider.System
            use _ = disposing store
            let id = SessionId.create ()
            let options = { IdleTimeout = TimeSpan.FromMinutes 5.0; MustExist = true; MaxSizeBytes = 4096; UserLimit = UserLimit.None }
            let! _ = store.CommitAsync(id, flashOf "a" 3000, { options with MustExist = false }, CancellationToken.None)
            let moved = SessionId.create ()
            let! e = throwsAsync<SessionTooLargeException>(fun () -> store.MoveAsync(id, moved, flashOf "b" 3000, options, CancellationToken.None) :> Task)
            Expect.equal e.Limit 4096 "e.Limit"
            let! stayed = store.LoadAsync(id, options.IdleTimeout, CancellationToken.None)
            Expect.isNotNull stayed "the refused move left the session where it was"
            // An increment grows a number's text: 1 and 10^4090 add up to 4,091 digits.
            let count = SessionPath.ofKeys [ SessionMeta.Flash; "n" ]
            let! _ = store.CommitAsync(id, SessionChange(Patch.empty, Patch.fold [ Update.set count (Json.int64 1L) ]), options, CancellationToken.None)
            let increment = SessionChange(Patch.empty, Patch.fold [ Update.Increment(count, JsonNumber.Parse "1e4090") ])
            let! _ = throwsAsync<SessionTooLargeException>(fun () -> store.CommitAsync(id, increment, options, CancellationToken.None) :> Task)
            let! after = store.LoadAsync(id, options.IdleTimeout, CancellationToken.None)
            Expect.equal (SessionPath.tryGet count after.Meta) (Some(Json.int64 1L)) "the refused increment changed nothing"
        }

        testCaseTask "the store itself refuses facts that grow past the limit, and lets a change that shrinks them through"
        <| fun () -> task {
            // What two concurrent requests could add up to, each within the limit on its own: the store checks atomically.
            // Requests share a stored session only once it is stored, and then commit to it with MustExist.
            let store = kind.Create TimeProvider.System
            use _ = disposing store
            let id = SessionId.create ()
            let options = { IdleTimeout = TimeSpan.FromMinutes 5.0; MustExist = false; MaxSizeBytes = 4096; UserLimit = UserLimit.None }
            let! _ = store.CommitAsync(id, flashOf "a" 3000, options, CancellationToken.None)
            let existing = { options with MustExist = true }
            let! e = throwsAsync<SessionTooLargeException>(fun () -> store.CommitAsync(id, flashOf "b" 3000, existing, CancellationToken.None) :> Task)
            Expect.equal e.Limit 4096 "e.Limit"
            // Past the limit already (a session stored under a larger one): a change that shrinks the facts goes through.
            let! _ = store.CommitAsync(id, flashOf "b" 3000, { existing with MaxSizeBytes = 1 <<< 20 }, CancellationToken.None)
            let remove = SessionChange(Patch.empty, Patch.fold [ Update.Remove(SessionPath.ofKeys [ SessionMeta.Flash; "b" ]) ])
            let! result = store.CommitAsync(id, remove, existing, CancellationToken.None)
            Expect.equal result CommitResult.Committed "the flash read"
        }

        testCaseTask "a value is not readable in the request that flashed it: it is for the next one"
        <| fun () -> task {
            let! _, _, host = serve ()
            use _ = host
            let browser = Browser host
            let! same = browser.GetTextAsync "/flash-then-read?key=notice&value=Saved"
            Expect.equal same "(none)" "not in the same request"
            let! next = browser.GetTextAsync "/read?key=notice"
            Expect.equal next "Saved" "in the next"
        }

        testCaseTask "requests that do not read the flash leave it for the next request that does"
        <| fun () -> task {
            let! _, _, host = serve ()
            use _ = host
            let browser = Browser host
            let! _ = browser.GetTextAsync "/flash?key=notice&value=Saved"
            let! _ = browser.GetTextAsync "/visit"
            let! _ = browser.GetTextAsync "/visit"
            let! read = browser.GetTextAsync "/read?key=notice"
            Expect.equal read "Saved" "still there for the first reader"
        }

        testCaseTask "the first read of the flash ends every value flashed before it, read or not"
        <| fun () -> task {
            let! _, _, host = serve ()
            use _ = host
            let browser = Browser host
            let! _ = browser.GetTextAsync "/flash?key=notice&value=Saved"
            let! _ = browser.GetTextAsync "/flash?key=alert&value=Careful"
            let! keys = browser.GetTextAsync "/keys"
            Expect.equal (keys.Split(',') |> Array.sort) [| "alert"; "notice" |] "both were flashed for this request"
            let! notice = browser.GetTextAsync "/read?key=notice"
            let! alert = browser.GetTextAsync "/read?key=alert"
            Expect.equal (notice, alert) ("(none)", "(none)") "listing the keys read the flash, and ended it"
        }

        testCaseTask "flashing a key again replaces its value"
        <| fun () -> task {
            let! store, _, host = serve ()
            use _ = host
            let browser = Browser host
            let! _ = browser.GetTextAsync "/flash?key=notice&value=First"
            let! _ = browser.GetTextAsync "/flash?key=notice&value=Second"
            let! stored = storedOf store
            match SessionPath.tryGet (SessionPath.ofKeys [ SessionMeta.Flash ]) stored.Meta with
            | Some(Json.Object entries) -> Expect.equal entries.Count 1 "the first value was superseded, not kept beside"
            | other -> failtest $"Expected flash entries, found {other}"
            let! read = browser.GetTextAsync "/read?key=notice"
            Expect.equal read "Second" "the later value"
        }

        testCaseTask "keep carries a value one request further, and no further"
        <| fun () -> task {
            let! _, _, host = serve ()
            use _ = host
            let browser = Browser host
            let! _ = browser.GetTextAsync "/flash?key=notice&value=Saved"
            let! first = browser.GetTextAsync "/keep?key=notice"
            let! second = browser.GetTextAsync "/read?key=notice"
            let! third = browser.GetTextAsync "/read?key=notice"
            Expect.equal (first, second, third) ("Saved", "Saved", "(none)") "read, kept, read once more, gone"
        }

        testCaseTask "keeping a value the request did not read carries it past the sweep; the others end"
        <| fun () -> task {
            let! _, _, host = serve ()
            use _ = host
            let browser = Browser host
            let! _ = browser.GetTextAsync "/flash?key=notice&value=Saved"
            let! _ = browser.GetTextAsync "/flash?key=alert&value=Careful"
            let! alert = browser.GetTextAsync "/read-and-keep?key=alert&keep=notice"
            Expect.equal alert "Careful" "alert read"
            let! keys = browser.GetTextAsync "/keys"
            Expect.equal keys "notice" "notice was kept, alert ended"
            let! gone = browser.GetTextAsync "/read?key=notice"
            Expect.equal gone "(none)" "listing the keys read the flash, so notice ended then"
        }

        testCaseTask "reflash carries every value one request further"
        <| fun () -> task {
            let! _, _, host = serve ()
            use _ = host
            let browser = Browser host
            let! _ = browser.GetTextAsync "/flash?key=notice&value=Saved"
            let! _ = browser.GetTextAsync "/flash?key=alert&value=Careful"
            let! reflashed = browser.GetTextAsync "/reflash"
            Expect.equal (reflashed.Split(',') |> Array.sort) [| "alert"; "notice" |] "the values it carried"
            let! later = browser.GetTextAsync "/keys"
            Expect.equal (later.Split(',') |> Array.sort) [| "alert"; "notice" |] "both there one request later"
            let! gone = browser.GetTextAsync "/keys"
            Expect.equal gone "" "and gone after that"
        }

        testCaseTask "reading the flash of a session that has none writes nothing"
        <| fun () -> task {
            let! store, _, host = serve ()
            use _ = host
            let browser = Browser host
            let! _ = browser.GetTextAsync "/visit"
            let commits = store.Commits
            let! read = browser.GetTextAsync "/read?key=notice"
            Expect.equal read "(none)" "nothing flashed"
            Expect.equal store.Commits commits "no commit"
        }

        testCaseTask "a flash after destroying the session goes with the new session"
        <| fun () -> task {
            let! _, _, host = serve ()
            use _ = host
            let browser = Browser host
            let! _ = browser.GetTextAsync "/flash?key=notice&value=Old"
            let! _ = browser.GetTextAsync "/destroy-then-flash?key=notice&value=Signed out"
            let! read = browser.GetTextAsync "/read?key=notice"
            Expect.equal read "Signed out" "the new session carries the new value, not the old session's"
        }

        testCaseTask "two concurrent requests both read a flashed value; whichever commits first removes it"
        <| fun () -> task {
            let! _, pauses, host = serve ()
            use _ = host
            let browser = Browser host
            let! _ = browser.GetTextAsync "/flash?key=notice&value=Saved"
            // Both have loaded the session and read the value before either commits; b commits first.
            let! (responseB, bodyB), (responseA, bodyA) = inTurn browser pauses ("b", "/read?key=notice&pause=b") ("a", "/read?key=notice&pause=a")
            Expect.equal (responseA.StatusCode, responseB.StatusCode) (Net.HttpStatusCode.OK, Net.HttpStatusCode.OK) "both answered"
            Expect.equal (bodyA, bodyB) ("Saved", "Saved") "both saw it"
            let! after = browser.GetTextAsync "/read?key=notice"
            Expect.equal after "(none)" "removed once, and not brought back by the later commit"
        }

        testCaseTask "a value flashed by a concurrent request survives another request's read of the old one"
        <| fun () -> task {
            let! _, pauses, host = serve ()
            use _ = host
            let browser = Browser host
            let! _ = browser.GetTextAsync "/flash?key=notice&value=Old"
            let a = pauses.GetOrAdd("a", fun _ -> Pause())
            let reading = browser.GetTextAsync "/read?key=notice&pause=a"
            do! a.Reached.Task
            // Flashed and committed while the reader of the old value is still in flight.
            let! _ = browser.GetTextAsync "/flash?key=notice&value=New"
            a.Release.SetResult()
            let! old = reading
            Expect.equal old "Old" "the reader saw the value it loaded"
            let! next = browser.GetTextAsync "/read?key=notice"
            Expect.equal next "New" "its commit removed only the entry it read"
        }
    ]

[<Tests>]
let tests = testList "Flash" [ for kind in StoreKinds.all -> onStore kind ]
