/// Session lifecycle and hardening, end to end: rotation, destruction, expiry, limits, hostile input, headers, keys.
module Sesame.Tests.SecurityTests

open System
open System.IO
open System.Net
open System.Net.Http
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.DataProtection
open Microsoft.AspNetCore.DataProtection.AuthenticatedEncryption
open Microsoft.AspNetCore.DataProtection.AuthenticatedEncryption.ConfigurationModel
open Microsoft.AspNetCore.HttpOverrides
open Microsoft.AspNetCore.Hosting
open Microsoft.AspNetCore.TestHost
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open Microsoft.Extensions.Time.Testing
open Expecto
open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

/// A fresh store of the kind, the clock its app (and the store, if it follows one) runs on, and
/// how a test moves time forward: by the clock alone, or also by waiting for a store on real time.
let private setUp (kind: StoreKind) =
    let clock = FakeTimeProvider(DateTimeOffset.UtcNow)
    let advance (by: TimeSpan) =
        clock.Advance by
        if kind.FollowsClock then Task.CompletedTask else Task.Delay by
    kind.Create clock, clock, advance

let private show = Session.handler (fun s -> text (Json.serialize (Session.current s)))

/// A handler that loads the session, signals it has, waits for the test's go, then sets a key: an in-flight request.
type InFlight() =
    // Continuations run on their own: the request does not resume inside the test's Go(), nor the test inside the request.
    let loaded = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    let go = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    member _.Loaded = loaded.Task
    member _.Go() = go.SetResult()
    member _.Handler: HttpHandler =
        Session.handler (fun s ->
            fun next ctx -> task {
                loaded.SetResult()
                do! go.Task
                s |> Session.set "lateKey" "from the in-flight request"
                return! text "late" next ctx
            })

/// The client hung up once the request had loaded its session: the request's abort token is cancelled before what
/// follows runs.
let private hungUp: HttpHandler =
    fun next ctx -> task {
        let! _ = Session.loadAsync ctx
        ctx.RequestAborted <- Threading.CancellationToken(true)
        return! next ctx
    }

/// A login page submitted twice: `/sign-in` signs in at once; `/slow-sign-in` loads the session, signals, and signs in
/// when the test says go (the second submit, which loaded the session before the first moved it). Each signs in as
/// the `user` of its query and then sets a key of its own to that user.
type SecondSignIn() =
    let loaded = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    let go = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    let signedInAt = ref None
    let signIn (key: string) (wait: unit -> Task) : HttpHandler =
        Session.handler (fun s ->
            fun next ctx -> task {
                do! wait ()
                let user = string ctx.Request.Query["user"]
                let! result = s |> Session.signInAsync user
                s |> Session.set key user
                if key = "second" then
                    signedInAt.Value <-
                        match s.Meta with
                        | Json.Object facts ->
                            match facts.TryGetValue SessionMeta.Device with
                            | true, Json.Object device ->
                                match device.TryGetValue "signedIn" with
                                | true, Json.Number at -> Some(DateTimeOffset.FromUnixTimeMilliseconds(int64 at.Text))
                                | _ -> None
                            | _ -> None
                        | _ -> None
                return! text (string result) next ctx
            })
    member _.Loaded = loaded.Task
    member _.Go() = go.SetResult()
    /// A visitor with a cart who submits the login as `user` twice: the first submit's browser, the second's (same
    /// cookie), and the second submit's answer to come (it has loaded the session and waits for Go).
    member _.SubmitTwiceAsync(host: IHost, user: string) = task {
        let first, late = Browser host, Browser host
        let! _ = first.GetTextAsync "/set"
        late.Cookie <- first.Cookie
        let lateLogin = late.GetTextAsync $"/slow-sign-in?user={user}"
        do! loaded.Task
        return first, late, lateLogin
    }
    /// When the second submit's handle says its session was signed in.
    member _.SignedInAt = signedInAt
    member _.App: HttpHandler =
        withSession
        >=> choose [
            route "/sign-in" >=> signIn "first" (fun () -> Task.CompletedTask)
            route "/slow-sign-in"
            >=> signIn "second" (fun () ->
                loaded.SetResult()
                go.Task)
            route "/set"
            >=> Session.handler (fun s ->
                s |> Session.set "cart" [ 1; 2 ]
                text "set")
            route "/show" >=> Session.handler (fun s -> text (Json.serialize (Session.current s)))
        ]

let private lifecycleApp (inFlight: InFlight) =
    withSession
    >=> choose [
        route "/login"
        >=> Session.handler (fun s ->
            s |> Session.set "user" "ada"
            id)
        >=> Session.rotate
        >=> text "in"
        route "/rotate" >=> Session.rotate >=> text "rotated"
        route "/logout" >=> Session.destroy >=> text "out"
        route "/logout-hung-up" >=> hungUp >=> Session.destroy >=> text "out"
        route "/end-all-hung-up"
        >=> hungUp
        >=> fun next ctx -> task {
            let! ended = Sessions.endAllAsync "alice" ctx
            return! text (string ended) next ctx
        }
        route "/sign-in-alice"
        >=> Session.handler (fun s ->
            fun next ctx -> task {
                let! _ = s |> Session.signInAsync "alice"
                return! text "in" next ctx
            })
        route "/end-all"
        >=> fun next ctx -> task {
            let! ended = Sessions.endAllAsync "alice" ctx
            return! text (string ended) next ctx
        }
        route "/end-others"
        >=> Session.handler (fun s ->
            fun next ctx -> task {
                let! ended = Sessions.endOthersAsync s ctx
                return! text (string ended) next ctx
            })
        route "/set"
        >=> Session.handler (fun s ->
            s |> Session.set "cart" [ 1; 2 ]
            text "set")
        route "/slow" >=> inFlight.Handler
        route "/show" >=> show
        route "/untouched" >=> text "untouched"
    ]

let private startLifecycleAt (clock: TimeProvider) (store: SessionStore) (configure: SesameOptions -> unit) (inFlight: InFlight) =
    startHostAt clock store configure (runHandler (lifecycleApp inFlight)) (new LogCapture())

let private startLifecycle (store: SessionStore) (configure: SesameOptions -> unit) (inFlight: InFlight) =
    startLifecycleAt TimeProvider.System store configure inFlight

let private noOptions (_: SesameOptions) = ()

/// A user with a session, and a request of that session that has loaded it and waits: the situation
/// in which a rotation or a logout must not be undone by a late commit.
let private userWithRequestInFlight (host: IHost) (inFlight: InFlight) = task {
    let user = Browser host
    let! _ = user.GetTextAsync "/set"
    let old = user.Cookie
    let slowBrowser = Browser host
    slowBrowser.Cookie <- old
    let slow = slowBrowser.GetTextAsync "/slow"
    do! inFlight.Loaded
    return user, old, slow
}

/// Alice signing in to a session of her own.
let private aliceSignsIn = SessionChange(Patch.empty, Patch.fold [ Update.set (path SessionMeta.User) (Json.string "alice") ])

/// A store on which every end of a session is followed at once by a new sign-in of alice: a client that signs in again
/// as fast as "sign out everywhere" ends its sessions.
type SigningInAgainStore(inner: SessionStore) =
    inherit ObservedStore(inner)
    let mutable signIns = 0

    override _.DeleteAsync(id, ct) = task {
        let! deleted = inner.DeleteAsync(id, ct)
        signIns <- signIns + 1
        let! _ = inner.MoveAsync(null, $"again-{signIns}", aliceSignsIn, StoreContract.creating, ct)
        return deleted
    }

/// Alice's devices on a lifecycle app whose store's deletes can be held: what an end of her sessions meets when another
/// request of hers moves a session while it runs.
type private AliceDevices(host: IHost, clock: FakeTimeProvider, observed: ObservedStore) =
    /// A new device with a cart, signed in as alice; each device's session is created a second after the last one's.
    member _.SignedInAsync() = task {
        clock.Advance(TimeSpan.FromSeconds 1.0)
        let browser = Browser host
        let! _ = browser.GetTextAsync "/set"
        let! _ = browser.GetTextAsync "/sign-in-alice"
        return browser
    }

    /// Sends the end at <paramref name="route"/> from <paramref name="ender"/> and runs <paramref name="meanwhile"/>
    /// while the end's first delete waits on the store; gives the end's answer.
    member _.EndWhileAsync(ender: Browser, route: string, meanwhile: unit -> Task) : Task<string> = task {
        let gate = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
        let deletesBefore = observed.Deletes
        observed.DeleteGate <- gate.Task
        let ending = ender.GetTextAsync route
        do! eventually (fun () -> observed.Deletes > deletesBefore)
        do! meanwhile ()
        gate.SetResult()
        let! ended = ending
        observed.DeleteGate <- Task.CompletedTask
        return ended
    }

/// The lifecycle behaviours, proven on one kind of store.
let private onStore (kind: StoreKind) =
    testList kind.Name [
        testCaseTask "a session made while the app's clock reads before 1970 is found again"
        <| fun () -> task {
            // A fake clock set far back: the ticket's creation time is then negative milliseconds.
            let clock = FakeTimeProvider(DateTimeOffset(1969, 6, 1, 0, 0, 0, TimeSpan.Zero))
            let store = kind.Create clock
            use! host = startLifecycleAt clock store noOptions (InFlight())
            let browser = Browser host
            let! _ = browser.GetTextAsync "/set"
            let! kept = browser.GetTextAsync "/show"
            Expect.equal kept """{"cart":[1,2]}""" "the session, at the second request"
            clock.Advance(TimeSpan.FromMinutes 2.0)
            let! later = browser.GetTextAsync "/show"
            Expect.equal later """{"cart":[1,2]}""" "and later, whatever the cookie cache holds"
        }

        testCaseTask "rotating the id keeps the data, issues a new cookie and kills the old id"
        <| fun () -> task {
            let store, clock, _ = setUp kind
            use! host = startLifecycleAt clock store noOptions (InFlight())
            let browser = Browser host
            let! _ = browser.GetTextAsync "/set"
            let before = browser.Cookie
            let! response, _ = browser.GetAsync "/login"
            Expect.isNonEmpty (setCookies response) "setCookies response"
            Expect.notEqual browser.Cookie before "browser.Cookie"
            let! kept = browser.GetTextAsync "/show"
            Expect.equal kept ("""{"cart":[1,2],"user":"ada"}""") "kept"
            // The old cookie now opens nothing.
            let attacker = Browser host
            attacker.Cookie <- before
            let! stolen = attacker.GetTextAsync "/show"
            Expect.equal stolen "{}" "stolen"
        }

        testCaseTask "a late commit under the old id cannot bring a rotated session back"
        <| fun () -> task {
            let store, clock, _ = setUp kind
            let inFlight = InFlight()
            use! host = startLifecycleAt clock store noOptions inFlight
            let! user, old, slow = userWithRequestInFlight host inFlight
            let! _ = user.GetTextAsync "/rotate"
            inFlight.Go()
            let! _ = slow
            let replay = Browser host
            replay.Cookie <- old
            let! underOld = replay.GetTextAsync "/show"
            Expect.equal underOld "{}" "underOld"
            let! underNew = user.GetTextAsync "/show"
            Expect.equal underNew ("""{"cart":[1,2]}""") "underNew"
        }

        testCaseTask "a login that rotates after a logout destroyed the session gets a new, empty session, never the old data"
        <| fun () -> task {
            let store, clock, _ = setUp kind
            let loaded = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
            let go = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
            let mutable rotated = None
            let slowLogin: HttpHandler =
                Session.handler (fun s ->
                    fun next ctx -> task {
                        loaded.SetResult()
                        do! go.Task
                        let! moved = Session.rotateAsync s
                        rotated <- Some moved
                        s |> Session.set "user" "ada"
                        return! text "in" next ctx
                    })
            let app =
                withSession
                >=> choose [
                    route "/slowlogin" >=> slowLogin
                    route "/logout" >=> Session.destroy >=> text "out"
                    route "/set"
                    >=> Session.handler (fun s ->
                        s |> Session.set "cart" [ 1; 2 ]
                        text "set")
                    route "/show" >=> show
                ]
            use! host = startHostAt clock store noOptions (runHandler app) (new LogCapture())
            let user = Browser host
            let! _ = user.GetTextAsync "/set"
            let loginBrowser = Browser host
            loginBrowser.Cookie <- user.Cookie
            let login = loginBrowser.GetTextAsync "/slowlogin"
            do! loaded.Task
            let! _ = user.GetTextAsync "/logout"
            go.SetResult()
            let! _ = login
            Expect.equal rotated (Some false) "the rotation found the session gone"
            Expect.notEqual loginBrowser.Cookie user.Cookie "the login got a cookie of its own"
            let! signedIn = loginBrowser.GetTextAsync "/show"
            Expect.equal signedIn """{"user":"ada"}""" "a new session: the destroyed one's data never comes back"
        }

        testCaseTask "a login submitted twice ends in one signed-in session holding the cart and both requests' changes"
        <| fun () -> task {
            let store, clock, _ = setUp kind
            let second = SecondSignIn()
            use! host = startHostAt clock store noOptions (runHandler second.App) (new LogCapture())
            let! first, late, lateLogin = second.SubmitTwiceAsync(host, "ada")
            let! answer = first.GetTextAsync "/sign-in?user=ada"
            Expect.equal answer "SignedIn" "the first submit signed in"
            second.Go()
            let! lateAnswer = lateLogin
            Expect.equal lateAnswer "SignedIn" "the second submit signed in too"
            let both = """{"cart":[1,2],"first":"ada","second":"ada"}"""
            // Whichever of the two cookies the browser keeps, it opens the one session.
            let! underLate = late.GetTextAsync "/show"
            Expect.equal underLate both "the second submit's cookie opens the session the first signed in, with its own change"
            let! underFirst = first.GetTextAsync "/show"
            Expect.equal underFirst both "the first submit's cookie opens the same session"
            let! sessions = store |> SessionStore.listAllAsync (SessionQuery.OfUser "ada") (testToken ())
            Expect.equal sessions.Length 1 "ada has one session, not one per submit"
        }

        testCaseTask "a login submitted twice joins while the first sign-in's OnSignedIn handler still runs, and the handle reads the stored facts"
        <| fun () -> task {
            let store, clock, advance = setUp kind
            let second = SecondSignIn()
            let auditing = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
            let audited = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
            let mutable calls = 0
            let configure (options: SesameOptions) =
                // An app that audits each sign-in (a database write, an e-mail) before the sign-in's request goes on.
                options.Events.OnSignedIn <-
                    Func<SessionSignedInContext, Task>(fun _ ->
                        if Threading.Interlocked.Increment &calls = 1 then
                            auditing.SetResult()
                            audited.Task
                        else
                            Task.CompletedTask)
            use! host = startHostAt clock store configure (runHandler second.App) (new LogCapture())
            let! first, late, lateLogin = second.SubmitTwiceAsync(host, "ada")
            let firstLogin = first.GetTextAsync "/sign-in?user=ada"
            do! auditing.Task
            // The store has moved the session; the first sign-in waits for its audit. The second comes now, later.
            do! advance (TimeSpan.FromSeconds 2.0)
            second.Go()
            let! lateAnswer = lateLogin
            audited.SetResult()
            let! _ = firstLogin
            Expect.equal lateAnswer "SignedIn" "the second submit signed in"
            let! underLate = late.GetTextAsync "/show"
            // The second's change is in first: the first sign-in set its key once its audit was done.
            Expect.equal underLate """{"cart":[1,2],"second":"ada","first":"ada"}""" "it joined the session the first made"
            let firstSignedIn = DateTimeOffset.FromUnixTimeMilliseconds((clock.GetUtcNow() - TimeSpan.FromSeconds 2.0).ToUnixTimeMilliseconds())
            Expect.equal second.SignedInAt.Value (Some firstSignedIn) "its handle reads the stored sign-in's time, not its own"
            Expect.equal calls 1 "one session signed in"
        }

        testCaseTask "a second sign-in of a session moved by a sign-in as another user, or too long ago, follows nothing: an empty session"
        <| fun () -> task {
            let store, clock, advance = setUp kind
            for user, wait in [ "bob", TimeSpan.Zero; "ada", RecentSignIns.Window ] do
                let second = SecondSignIn()
                use! host = startHostAt clock store noOptions (runHandler second.App) (new LogCapture())
                let! first, late, lateLogin = second.SubmitTwiceAsync(host, user)
                let! _ = first.GetTextAsync "/sign-in?user=ada"
                do! advance wait
                second.Go()
                let! lateAnswer = lateLogin
                Expect.equal lateAnswer "SignedIn" $"{user} signed in"
                let! underLate = late.GetTextAsync "/show"
                Expect.equal underLate $$"""{"second":"{{user}}"}""" $"{user}, {wait} after ada's sign-in: a new session, none of the moved one's data"
                let! underFirst = first.GetTextAsync "/show"
                Expect.equal underFirst """{"cart":[1,2],"first":"ada"}""" "ada's session is untouched by it"
        }

        testCaseTask "destroying deletes the session, expires the cookie, and a concurrent request cannot bring it back"
        <| fun () -> task {
            let store, clock, _ = setUp kind
            let inFlight = InFlight()
            use! host = startLifecycleAt clock store noOptions inFlight
            let! user, old, slow = userWithRequestInFlight host inFlight
            let! response, _ = user.GetAsync "/logout"
            let expired = setCookies response |> List.exactlyOne
            Expect.stringContains expired "expires=Thu, 01 Jan 1970" "expired"
            Expect.equal user.Cookie None "user.Cookie"
            inFlight.Go()
            let! _ = slow
            // Replaying the cookie after logout opens a new, empty session.
            let replay = Browser host
            replay.Cookie <- old
            let! body = replay.GetTextAsync "/show"
            Expect.equal body "{}" "body"
        }

        testCaseTask "a logout, and an end of all a user's sessions, whose client hung up still end the sessions"
        <| fun () -> task {
            let store, clock, _ = setUp kind
            use! host = startLifecycleAt clock store noOptions (InFlight())
            let user = Browser host
            let! _ = user.GetTextAsync "/set"
            let old = user.Cookie
            let! _ = user.GetAsync "/logout-hung-up"
            let replay = Browser host
            replay.Cookie <- old
            let! body = replay.GetTextAsync "/show"
            Expect.equal body "{}" "the logged-out session is gone"
            for device in [ "phone"; "laptop" ] do
                let! moved = store.MoveAsync(null, device, aliceSignsIn, StoreContract.creating, testToken ())
                Expect.equal moved CommitResult.Committed $"alice signed in on her {device}"
            let! ended = Browser(host).GetTextAsync "/end-all-hung-up"
            Expect.equal ended "2" "both ended"
            let! left = store |> SessionStore.listAllAsync (SessionQuery.OfUser "alice") (testToken ())
            Expect.isEmpty left "alice has no session left"
        }

        testCaseTask "ending all a user's sessions, or all but the current, also ends one that signs in again meanwhile"
        <| fun () -> task {
            let store, clock, _ = setUp kind
            let observed = ObservedStore(store)
            use! host = startLifecycleAt clock observed noOptions (InFlight())
            let alice = AliceDevices(host, clock, observed)
            // Alice's phone signs in again (a new id for its session) while the end's first delete waits on the store.
            let endWhilePhoneSignsIn (ender: Browser) (route: string) = task {
                let! phone = alice.SignedInAsync()
                let! ended = alice.EndWhileAsync(ender, route, (fun () -> phone.GetTextAsync "/sign-in-alice"))
                let! phoneAfter = phone.GetTextAsync "/show"
                return ended, phoneAfter
            }
            let! laptop = alice.SignedInAsync()
            let! ended, phoneAfter = endWhilePhoneSignsIn laptop "/end-others"
            Expect.equal ended "1" "the phone's session was ended under its new id"
            Expect.equal phoneAfter "{}" "the phone is signed out"
            let! left = store |> SessionStore.listAllAsync (SessionQuery.OfUser "alice") (testToken ())
            let! laptopShows = laptop.GetTextAsync "/show"
            Expect.equal (List.length left) 1 "the laptop's session is all alice has left"
            Expect.stringContains laptopShows "cart" "the laptop keeps its session"
            let! ended, phoneAfter = endWhilePhoneSignsIn (Browser host) "/end-all"
            Expect.equal ended "2" "the laptop's session and the phone's, under its new id, were ended"
            Expect.equal phoneAfter "{}" "the phone is signed out"
            let! left = store |> SessionStore.listAllAsync (SessionQuery.OfUser "alice") (testToken ())
            Expect.isEmpty left "alice has no session left"
        }

        testCaseTask "ending all a user's sessions while she signs in again as fast stops after 8 rounds, and logs what is left"
        <| fun () -> task {
            let store, clock, _ = setUp kind
            let logs = new LogCapture()
            use! host = startHostAt clock (SigningInAgainStore store) noOptions (runHandler (lifecycleApp (InFlight()))) logs
            let! _ = store.MoveAsync(null, "phone", aliceSignsIn, StoreContract.creating, testToken ())
            let! ended = Browser(host).GetTextAsync "/end-all"
            Expect.equal ended "8" "each of the 8 rounds ended the session it found"
            let left = logs.Entries |> List.filter (fun entry -> entry.EventId.Id = 20)
            Expect.hasLength left 1 "the end says it stopped with sessions left"
            Expect.stringContains (single left).Message "1 sessions still listed" "how many were left"
            let! listed = store |> SessionStore.listAllAsync (SessionQuery.OfUser "alice") (testToken ())
            Expect.hasLength listed 1 "the sign-in made after the last round is alice's one session"
        }

        testCaseTask "signing out other devices spares the current one when another tab of its browser rotates its id meanwhile"
        <| fun () -> task {
            let store, clock, _ = setUp kind
            let observed = ObservedStore(store)
            use! host = startLifecycleAt clock observed noOptions (InFlight())
            let alice = AliceDevices(host, clock, observed)
            let! laptop = alice.SignedInAsync()
            let! _ = alice.SignedInAsync()
            // The laptop's second tab shares its cookie, and rotates the session while the first tab's end waits on the store.
            let tab = Browser host
            tab.Cookie <- laptop.Cookie
            let! ended = alice.EndWhileAsync(laptop, "/end-others", (fun () -> tab.GetTextAsync "/rotate"))
            Expect.equal ended "1" "only the phone's session was another device's"
            let! tabShows = tab.GetTextAsync "/show"
            Expect.stringContains tabShows "cart" "the laptop keeps its session under its new id"
        }

        testCaseTask "an idle session expires and is never served after"
        <| fun () -> task {
            let store, clock, advance = setUp kind
            // Generous margins for a store on real time: on a busy machine the second request must still come well inside the timeout.
            let idle = TimeSpan.FromSeconds 1.5
            use! host = startLifecycleAt clock store (fun o -> o.IdleTimeout <- idle) (InFlight())
            let browser = Browser host
            let! _ = browser.GetTextAsync "/set"
            let! fresh = browser.GetTextAsync "/show"
            Expect.equal fresh ("""{"cart":[1,2]}""") "fresh"
            do! advance (idle * 3.0)
            let! expired = browser.GetTextAsync "/show"
            Expect.equal expired "{}" "expired"
        }

        testCaseTask "a session ends at its absolute lifetime however active it is"
        <| fun () -> task {
            let store, clock, advance = setUp kind
            use! host = startLifecycleAt clock store (fun o -> o.AbsoluteTimeout <- Nullable(TimeSpan.FromSeconds 1.0)) (InFlight())
            let browser = Browser host
            let! _ = browser.GetTextAsync "/set"
            // Keep it busy: idle expiry alone would never end it, and until the lifetime is up every request is served.
            for step in 1..3 do
                do! advance (TimeSpan.FromMilliseconds 200.0)
                let! alive = browser.GetTextAsync "/show"
                Expect.equal alive """{"cart":[1,2]}""" $"Request {step}, {200 * step} ms into a 1 s lifetime, is served the session."
            do! advance (TimeSpan.FromMilliseconds 800.0)
            let! ended = browser.GetTextAsync "/show"
            Expect.equal ended "{}" "Past its absolute lifetime the session is gone, however active it was."
        }

        testCaseTask "a session over the size limit is refused with the limit and the size, and nothing of it is stored"
        <| fun () -> task {
            let store, _, _ = setUp kind
            let logs = new LogCapture()
            let app =
                withSession
                >=> choose [
                    route "/small"
                    >=> Session.handler (fun s ->
                        s |> Session.set "small" 1
                        text "ok")
                    route "/big"
                    >=> Session.handler (fun s ->
                        s |> Session.set "note" "kept?"
                        s |> Session.set "big" (String('x', 5000))
                        text "big")
                    route "/show" >=> show
                ]
            use! host = startHostOn Kestrel store (fun o -> o.MaxSessionBytes <- 1000) (runHandler app) logs
            let browser = Browser host
            let! _ = browser.GetTextAsync "/small"
            let! response, _ = browser.GetAsync "/big"
            Expect.equal response.StatusCode HttpStatusCode.InternalServerError "response.StatusCode"
            let failure = logs.Entries |> List.find (fun e -> e.EventId.Name = "SessionCommitFailed")
            let tooLarge = isType<SessionTooLargeException> failure.Error
            Expect.equal tooLarge.Limit 1000 "tooLarge.Limit"
            Expect.stringContains tooLarge.Message "1000" "tooLarge.Message"
            Expect.stringContains tooLarge.Message (string tooLarge.Size) "tooLarge.Message"
            let! stored = browser.GetTextAsync "/show"
            Expect.equal stored ("""{"small":1}""") "stored"
        }
    ]

/// A real memory store that declares itself shared, as a Redis store is.
type SharedMemoryStore() =
    inherit ObservedStore(new MemoryStore())
    override _.IsShared = true

let private startWithKeys (persistKeys: DirectoryInfo option) (logs: LogCapture) =
    let services (services: IServiceCollection) =
        services.AddSesame().AddStore(SharedMemoryStore()) |> ignore
        match persistKeys with
        | Some directory -> services.AddDataProtection().PersistKeysToFileSystem directory |> ignore
        | None -> ()
    startHostWith InMemory services (runHandler (withSession >=> show)) logs

/// A client that sends the cookie value is answered, with a fresh empty session, and the user's own session (the cart
/// "/set" made) is still as it was.
let private expectOpensNothing (host: IHost) (cookie: string) (user: Browser) (what: string) : Task = task {
    let forger = Browser host
    forger.Cookie <- Some cookie
    let! response, body = forger.GetAsync "/show"
    Expect.equal response.StatusCode HttpStatusCode.OK $"{what} is no error."
    Expect.equal body "{}" $"{what} opens no session."
    let! own = user.GetTextAsync "/show"
    Expect.equal own """{"cart":[1,2]}""" "The user's session is still there, untouched."
}

[<Tests>]
let tests =
    testList "Security" [
        for kind in StoreKinds.all do
            onStore kind

        testList "recent sign-ins" [
            testCase "a move is followed only by a sign-in as its user, along later moves of that user, within the window"
            <| fun () ->
                let clock = FakeTimeProvider(DateTimeOffset.UtcNow)
                let recent = RecentSignIns clock
                recent.Record("a", "b", "ada")
                recent.Record("b", "c", "ada")
                recent.Record("c", "d", "bob")
                Expect.equal (recent.Candidates("a", "ada", "own")) [ "c"; "b" ] "ada's moves, the last first"
                Expect.equal (recent.Candidates("a", "bob", "own")) [] "bob follows none of ada's moves"
                Expect.equal (recent.Candidates("c", "bob", "own")) [ "d" ] "bob's own move"
                Expect.equal (recent.Candidates("x", "ada", "own")) [] "no move of that id"
                Expect.equal (recent.Candidates("a", "ada", "b")) [] "never the caller's own move"
                clock.Advance(RecentSignIns.Window - TimeSpan.FromMilliseconds 1.0)
                Expect.equal (recent.Candidates("a", "ada", "own")) [ "c"; "b" ] "still within the window"
                clock.Advance(TimeSpan.FromMilliseconds 1.0)
                Expect.equal (recent.Candidates("a", "ada", "own")) [] "the window has passed"
                Expect.equal recent.Count 0 "and the moves are forgotten"

            testCase "two sign-ins moving one session are both noted, newest first, until one is forgotten"
            <| fun () ->
                let recent = RecentSignIns(FakeTimeProvider(DateTimeOffset.UtcNow))
                recent.Record("a", "b", "ada")
                recent.Record("a", "c", "ada")
                Expect.equal (recent.Candidates("a", "ada", "c")) [ "b" ] "the other's move, not its own"
                Expect.equal (recent.Candidates("a", "ada", "x")) [ "c"; "b" ] "newest first"
                recent.Forget("a", "c")
                Expect.equal (recent.Candidates("a", "ada", "x")) [ "b" ] "a move that did not happen is not followed"

            testCase "sign-ins at any rate hold at most the capacity, the oldest dropped first"
            <| fun () ->
                let recent = RecentSignIns(FakeTimeProvider(DateTimeOffset.UtcNow))
                let extra = 1_000
                for i in 1 .. RecentSignIns.Capacity + extra do
                    recent.Record($"old{i}", $"new{i}", "ada")
                Expect.equal recent.Count RecentSignIns.Capacity "held"
                Expect.equal (recent.Candidates($"old{extra}", "ada", "own")) [] "the oldest were dropped"
                Expect.equal (recent.Candidates($"old{extra + 1}", "ada", "own")) [ $"new{extra + 1}" ] "the rest are kept"
        ]

        testCaseTask "a cookie protected with another app's keys starts a fresh session"
        <| fun () -> task {
            let store = ObservedStore()
            use! host = startLifecycle store noOptions (InFlight())
            // A real user's session, whose id the forger knows.
            let user = Browser host
            let! _ = user.GetTextAsync "/set"
            let existingId, _ = store.Patches |> single
            let foreign = DataProtectionProvider.Create("another-app").CreateProtector("Sesame.SessionCookie.v1")
            let forged = foreign.Protect(SessionTicket.format { Id = existingId; Created = DateTimeOffset.UtcNow })
            do! expectOpensNothing host forged user "A cookie under another app's keys"
        }

        testCaseTask "requests that read or change a session are not cacheable; untouched ones are left alone"
        <| fun () -> task {
            use! host = startLifecycle (new MemoryStore()) noOptions (InFlight())
            let browser = Browser host
            let! _ = browser.GetTextAsync "/set"
            let! read, _ = browser.GetAsync "/show"
            Expect.isTrue
                (read.Headers.CacheControl.NoStore && read.Headers.CacheControl.NoCache)
                "read.Headers.CacheControl.NoStore && read.Headers.CacheControl.NoCache"
            Expect.contains read.Headers.Vary "Cookie" "The response varies by Cookie."
            let! untouched, _ = browser.GetAsync "/untouched"
            Expect.isNull untouched.Headers.CacheControl "untouched.Headers.CacheControl"
        }

        testCaseTask "the cache headers can be turned off"
        <| fun () -> task {
            use! host = startLifecycle (new MemoryStore()) (fun o -> o.NoCacheHeaders <- false) (InFlight())
            let browser = Browser host
            let! _ = browser.GetTextAsync "/set"
            let! read, _ = browser.GetAsync "/show"
            Expect.isNull read.Headers.CacheControl "read.Headers.CacheControl"
        }

        testCaseTask "behind a proxy with forwarded headers the cookie is Secure when the client used https"
        <| fun () -> task {
            let pipeline (app: IApplicationBuilder) =
                app.UseForwardedHeaders(ForwardedHeadersOptions(ForwardedHeaders = ForwardedHeaders.XForwardedProto)) |> ignore
                runHandler (lifecycleApp (InFlight())) app
            use! host = startHost (new MemoryStore()) noOptions pipeline (new LogCapture())
            let client = host.GetTestClient()
            use viaHttps = new HttpRequestMessage(HttpMethod.Get, "/set")
            viaHttps.Headers.Add("X-Forwarded-Proto", "https")
            let! secure = client.SendAsync viaHttps
            Expect.stringContains
                ((setCookies secure |> List.exactlyOne).ToLowerInvariant())
                "secure"
                "(setCookies secure |> List.exactlyOne).ToLowerInvariant()"
            let! plain = client.GetAsync "/set"
            Expect.isFalse
                (((setCookies plain |> List.exactlyOne).ToLowerInvariant()).Contains "secure")
                "(setCookies plain |> List.exactlyOne).ToLowerInvariant() does not c..."
        }

        testCaseTask "with Data Protection on AES-256-GCM (the README's setting) the cookie's seal key is protected with it, opens its session and nothing else"
        <| fun () -> task {
            let keys = Directory.CreateTempSubdirectory "sesame-keys-gcm-"
            try
                let services (services: IServiceCollection) =
                    services
                        .AddDataProtection()
                        .PersistKeysToFileSystem(keys)
                        .UseCryptographicAlgorithms(AuthenticatedEncryptorConfiguration(EncryptionAlgorithm = EncryptionAlgorithm.AES_256_GCM))
                    |> ignore
                    services.AddSesame().AddStore(new MemoryStore()) |> ignore
                use! host = startHostWith InMemory services (runHandler (lifecycleApp (InFlight()))) (new LogCapture())
                let user = Browser host
                let! _ = user.GetTextAsync "/set"
                let! own = user.GetTextAsync "/show"
                Expect.equal own """{"cart":[1,2]}""" "The GCM-protected cookie opens its session."
                let key = host.Services.GetRequiredService<KeyManagement.IKeyManager>().GetAllKeys() |> Seq.exactlyOne
                let descriptor = key.Descriptor.ExportToXml().SerializedDescriptorElement.ToString()
                Expect.stringContains descriptor "AES_256_GCM" "The key that protected the cookie is an AES-256-GCM key."
                // One character changed in the middle of the ciphertext.
                let cookie = user.Cookie.Value
                let middle = cookie.Length / 2
                let changed = cookie.Substring(0, middle) + (if cookie[middle] = 'A' then "B" else "A") + cookie.Substring(middle + 1)
                do! expectOpensNothing host changed user "A GCM cookie with one character changed"
            finally
                keys.Delete true
        }

        testCaseTask "a shared store without a shared key ring is warned about at startup"
        <| fun () -> task {
            let logs = new LogCapture()
            use! _host = startWithKeys None logs
            let warning = logs.Entries |> List.find (fun e -> e.EventId.Name = "DataProtectionKeysNotShared")
            Expect.equal warning.Level LogLevel.Warning "warning.Level"
            Expect.stringContains warning.Message "PersistKeysTo" "warning.Message"
            let quiet = new LogCapture()
            let keys = Directory.CreateTempSubdirectory "sesame-keys-"
            try
                use! _other = startWithKeys (Some keys) quiet
                Expect.isFalse (Seq.exists (fun e -> e.EventId.Name = "DataProtectionKeysNotShared") quiet.Entries) "quiet.Entries"
            finally
                keys.Delete true
        }
    ]
