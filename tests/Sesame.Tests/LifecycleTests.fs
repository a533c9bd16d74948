/// One request's life, end to end through the real ASP.NET Core pipeline (TestHost).
module Sesame.Tests.LifecycleTests

open System
open System.Net
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Hosting
open Microsoft.AspNetCore.TestHost
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open Microsoft.Extensions.Primitives
open Expecto
open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

let private noOptions (_: SesameOptions) = ()

/// Starts a host whose every request runs `handler` under withSession.
let private serve (store: ObservedStore) (handler: HttpHandler) = startHost store noOptions (runHandler (withSession >=> handler)) (new LogCapture())

let private bump: HttpHandler = Session.handler (fun session -> text (string (session |> Session.increment "times" 1m)))


let private hostileCookies = [
    "", "empty"
    "not base64 at all!", "not base64url"
    String('A', 5000), "huge"
    "CfDJ8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "forged"
]

[<Tests>]
let tests =
    testList "Lifecycle" [
        testCaseTask "a request that never touches the session does no store I/O and sets no cookie"
        <| fun () -> task {
            let store = ObservedStore()
            use! host = serve store (text "hello")
            let browser = Browser host
            let! response, body = browser.GetAsync "/"
            Expect.equal body "hello" "body"
            Expect.isEmpty (setCookies response) "setCookies response"
            Expect.equal store.Loads 0 "store.Loads"
            Expect.equal store.Commits 0 "store.Commits"
        }

        testCaseTask "reading a new visitor's session sets no cookie and writes nothing"
        <| fun () -> task {
            let store = ObservedStore()
            use! host = serve store (Session.handler (fun s -> text (Json.serialize (Session.current s))))
            let! response, body = (Browser host).GetAsync "/"
            Expect.equal body "{}" "body"
            Expect.isEmpty (setCookies response) "setCookies response"
            Expect.equal store.Commits 0 "store.Commits"
        }

        testCaseTask "a new visitor gets a cookie when the session is first changed, and the session continues with it"
        <| fun () -> task {
            let store = ObservedStore()
            use! host = serve store bump
            let browser = Browser host
            let! first, body1 = browser.GetAsync "/"
            Expect.equal body1 "1" "body1"
            let cookie = setCookies first |> List.exactlyOne
            Expect.stringStarts cookie "sesame=" "cookie"
            Expect.stringContains (cookie.ToLowerInvariant()) "httponly" "cookie.ToLowerInvariant()"
            Expect.stringContains (cookie.ToLowerInvariant()) "samesite=lax" "cookie.ToLowerInvariant()"
            Expect.stringContains cookie "path=/" "cookie"
            Expect.isTrue (first.Headers.CacheControl.NoCache && first.Headers.CacheControl.NoStore) "A response that sets a session cookie must not be cached."
            let! second, body2 = browser.GetAsync "/"
            Expect.equal body2 "2" "body2"
            Expect.isEmpty (setCookies second) "setCookies second"
        }

        testCaseTask "reading an existing session loads it once and writes nothing"
        <| fun () -> task {
            let store = ObservedStore()
            let reader = Session.handler (fun s -> text (string (s |> Session.tryGet<int> "times")))
            use! host = serve store (choose [ route "/bump" >=> bump; route "/read" >=> reader ])
            let browser = Browser host
            let! _ = browser.GetTextAsync "/bump"
            let loadsBefore, commitsBefore = store.Loads, store.Commits
            let! body = browser.GetTextAsync "/read"
            Expect.equal body "Some(1)" "body"
            Expect.equal store.Loads (loadsBefore + 1) "store.Loads"
            Expect.equal store.Commits commitsBefore "store.Commits"
        }

        testCaseTask "ten changes in one request make exactly one store write"
        <| fun () -> task {
            let store = ObservedStore()
            let tenChanges =
                Session.handler (fun s ->
                    for i in 1..5 do
                        s |> Session.increment "count" 1m |> ignore
                        s |> Session.set $"items.k{i}" i
                    text "done")
            use! host = serve store tenChanges
            let! _ = (Browser host).GetTextAsync "/"
            Expect.equal store.Commits 1 "store.Commits"
            let _, patch = store.Patches |> List.exactlyOne
            // Five increments of one path fold into one; the five sets stay.
            Expect.equal patch.Updates.Length 6 "patch.Updates.Length"
        }

        testCaseTask "the change is stored before the client has the response, even with a slow store"
        <| fun () -> task {
            let store = ObservedStore(CommitDelay = TimeSpan.FromMilliseconds 300.0)
            use! host =
                serve
                    store
                    (Session.handler (fun s ->
                        s |> Session.set "paid" true
                        text "ok"))
            let! _ = (Browser host).GetTextAsync "/"
            // The moment the response is in hand, the store already holds the change.
            let id, _ = store.Patches |> List.exactlyOne
            let! stored = (store.Inner).LoadTreeAsync(id, TimeSpan.FromMinutes 1.0, testToken ())
            Expect.equal stored (Some(json """{"paid":true}""")) "stored"
        }

        testCaseTask "a change made after the response started is committed when the handler ends"
        <| fun () -> task {
            let store = ObservedStore()
            let late: HttpHandler =
                fun next ctx -> task {
                    let! session = Session.loadAsync ctx
                    session |> Session.set "early" 1
                    do! ctx.Response.WriteAsync "started"
                    do! ctx.Response.Body.FlushAsync()
                    session |> Session.set "late" 2
                    return! next ctx
                }
            let show = Session.handler (fun s -> text (Json.serialize (Session.current s)))
            use! host = serve store (choose [ route "/late" >=> late; route "/show" >=> show ])
            let browser = Browser host
            let! _ = browser.GetTextAsync "/late"
            let! body = browser.GetTextAsync "/show"
            Expect.equal body ("""{"early":1,"late":2}""") "body"
            Expect.equal store.Commits 2 "store.Commits"
        }

        testCaseTask "changing a new session after the response started fails at the call and stores nothing"
        <| fun () -> task {
            let store = ObservedStore()
            let mutable refused: exn = null
            let late: HttpHandler =
                fun next ctx -> task {
                    let! session = Session.loadAsync ctx
                    do! ctx.Response.WriteAsync "started"
                    do! ctx.Response.Body.FlushAsync()
                    // No cookie can reach the client any more: the session could never be found again.
                    try
                        session |> Session.set "orphan" 1
                    with e ->
                        refused <- e
                    Expect.isFalse session.HasPendingChanges "nothing recorded"
                    return! next ctx
                }
            use! host = serve store late
            let! response, body = (Browser host).GetAsync "/"
            Expect.equal body "started" "the response went out"
            Expect.isEmpty (setCookies response) "no cookie"
            let e = isType<InvalidOperationException> refused
            Expect.stringContains e.Message "after the response has started" "the message says why"
            Expect.equal store.Commits 0 "nothing stored"
        }

        testCaseTask "Vary: Cookie is sent once, also on responses without a body"
        <| fun () -> task {
            let statusOnly (code: int) : HttpHandler =
                Session.handler (fun s ->
                    s |> Session.set "touched" true
                    fun _next ctx ->
                        ctx.Response.StatusCode <- code
                        Task.FromResult(Some ctx))
            use! host =
                serve
                    (ObservedStore())
                    (choose [
                        route "/204" >=> statusOnly 204
                        route "/404" >=> statusOnly 404
                        route "/ok"
                        >=> Session.handler (fun s ->
                            s |> Session.set "x" 1
                            text "ok")
                    ])
            let browser = Browser host
            for url, status in [ "/204", 204; "/404", 404; "/ok", 200 ] do
                let! response, _ = browser.GetAsync url
                Expect.equal (int response.StatusCode) status url
                let vary = response.Headers.Vary |> List.ofSeq
                Expect.equal vary [ "Cookie" ] $"{url}: Vary names Cookie once"
        }

        testCaseTask "Vary keeps what the app set, and names Cookie unless the app already did"
        <| fun () -> task {
            let varying (vary: string) : HttpHandler =
                Session.handler (fun s ->
                    s |> Session.set "touched" true
                    fun next ctx ->
                        ctx.Response.Headers.Vary <- StringValues vary
                        text "ok" next ctx)
            use! host =
                serve (ObservedStore()) (choose [ route "/named" >=> varying "Accept-Encoding, cookie"; route "/other" >=> varying "Accept-Encoding,Origin" ])
            let browser = Browser host
            let! named, _ = browser.GetAsync "/named"
            Expect.equal (named.Headers.Vary |> List.ofSeq) [ "Accept-Encoding"; "cookie" ] "Cookie named by the app, in any case: not added again"
            let! other, _ = browser.GetAsync "/other"
            Expect.equal (other.Headers.Vary |> List.ofSeq) [ "Accept-Encoding"; "Origin"; "Cookie" ] "Cookie added to the app's names"
        }

        testCaseTask "a failing store gives a 500 and the app's logger sees the error"
        <| fun () -> task {
            let store = ObservedStore(FailCommits = true)
            let logs = new LogCapture()
            use! host = startHostOn Kestrel store noOptions (runHandler (withSession >=> bump)) logs
            let! response, _ = (Browser host).GetAsync "/"
            Expect.equal response.StatusCode HttpStatusCode.InternalServerError "response.StatusCode"
            Expect.isEmpty (setCookies response) "setCookies response"
            let failure = logs.Entries |> List.find (fun e -> e.EventId.Name = "SessionCommitFailed")
            Expect.equal failure.Level LogLevel.Error "failure.Level"
            isType<SessionStoreException> failure.Error |> ignore
        }

        testCaseTask "a commit retried after the store failed it throws, never reports the dropped changes stored"
        <| fun () -> task {
            let store = ObservedStore(FailCommits = true)
            let outcome (commit: unit -> Task) = task {
                try
                    do! commit ()
                    return "stored"
                with :? SessionStoreException as e ->
                    return if isNull e.InnerException then "failed" else "failed, " + e.InnerException.Message
            }
            let retrying: HttpHandler =
                Session.handler (fun s ->
                    fun next ctx -> task {
                        s |> Session.set "cart" [ 1 ]
                        let! first = outcome (fun () -> s.CommitAsync Threading.CancellationToken.None)
                        let! retry = outcome (fun () -> s.CommitAsync Threading.CancellationToken.None)
                        // The store is back: a new change commits, and then nothing is left failed.
                        store.FailCommits <- false
                        s |> Session.set "note" "again"
                        let! again = outcome (fun () -> s.CommitAsync Threading.CancellationToken.None)
                        let! after = outcome (fun () -> s.CommitAsync Threading.CancellationToken.None)
                        return! text $"{first} | {retry} | {again} | {after}" next ctx
                    })
            use! host = serve store retrying
            let! body = (Browser host).GetTextAsync "/"
            Expect.equal body "failed | failed, The store is down (test). | stored | stored" "the retry failed with the store's error inside"
        }

        testCaseTask "a commit, rotation or facts check that fails drops its changes and a retry says so; a logout forgets it"
        <| fun () -> task {
            let store = ObservedStore()
            let outcome (commit: unit -> Task) = task {
                try
                    do! commit ()
                    return "stored"
                with e ->
                    return e.GetType().Name
            }
            let commit (s: SessionHandle) () = s.CommitAsync Threading.CancellationToken.None
            let failing: HttpHandler =
                Session.handler (fun s ->
                    fun next ctx -> task {
                        // Flash values past the size limit: refused before the store is asked.
                        s |> Session.flash "notice" (String('x', 4000))
                        let! tooLarge = outcome (commit s)
                        let! afterTooLarge = outcome (commit s)
                        // A commit that succeeds leaves nothing failed.
                        s |> Session.set "step" 2
                        let! between = outcome (commit s)
                        // A rotation whose flash values pass the limit: refused before the store is asked.
                        s |> Session.flash "notice" (String('x', 4000))
                        let! rotatedTooLarge = outcome (fun () -> s.RotateAsync())
                        let! afterRotatedTooLarge = outcome (commit s)
                        // A rotation the store fails takes the pending change with it.
                        s |> Session.set "cart" [ 9 ]
                        store.FailCommits <- true
                        let! rotated = outcome (fun () -> s.RotateAsync())
                        store.FailCommits <- false
                        let! afterRotation = outcome (commit s)
                        // A logout ends the session and what it failed: a later commit of nothing is no failure.
                        do! s.DestroyAsync()
                        let! afterLogout = outcome (commit s)
                        return!
                            text
                                $"{tooLarge} {afterTooLarge} | {between} | {rotatedTooLarge} {afterRotatedTooLarge} | {rotated} {afterRotation} | {afterLogout}"
                                next
                                ctx
                    })
            use! host =
                startHost store (fun o -> o.MaxSessionBytes <- 1000) (runHandler (withSession >=> choose [ route "/set" >=> bump; failing ])) (new LogCapture())
            let browser = Browser host
            let! _ = browser.GetTextAsync "/set"
            let! body = browser.GetTextAsync "/"
            Expect.equal
                body
                "SessionTooLargeException SessionStoreException | stored | SessionTooLargeException SessionStoreException | SessionStoreException SessionStoreException | stored"
                "each failure's retry failed; after the logout nothing is left failed"
        }

        testCaseTask "a logout without a load waits for a load under way, a load meanwhile waits for it, and two logouts delete once"
        <| fun () -> task {
            let store = ObservedStore()
            let release = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
            let racing: HttpHandler =
                fun next ctx -> task {
                    let s = Session.ofContext ctx
                    store.DeleteGate <- release.Task
                    let first = s.DestroyAsync()
                    let second = Task.Run<unit>(fun () -> task { do! s.DestroyAsync() })
                    let reader =
                        Task.Run<string>(fun () -> task {
                            do! s.LoadAsync()
                            return Json.serialize s.Current
                        })
                    do! Task.Delay 100
                    release.SetResult()
                    do! first
                    do! second
                    let! read = reader
                    return! text read next ctx
                }
            use! host = serve store (choose [ route "/set" >=> bump; racing ])
            let browser = Browser host
            let! _ = browser.GetTextAsync "/set"
            let old = browser.Cookie
            let! read = browser.GetTextAsync "/"
            Expect.equal read "{}" "the load made during the logout waited for it, and found the new, empty session"
            Expect.equal store.Deletes 1 "one delete for two logouts"
            let replay = Browser host
            replay.Cookie <- old
            let! body = replay.GetTextAsync "/set"
            Expect.equal body "1" "the session is gone: its cookie starts a new count"
        }

        testCaseTask "a logout the store fails leaves the handle usable: the next load reads the session"
        <| fun () -> task {
            let store = ObservedStore()
            let failing: HttpHandler =
                fun next ctx -> task {
                    let s = Session.ofContext ctx
                    store.FailDeletes <- true
                    let! destroyed = task {
                        try
                            do! s.DestroyAsync()
                            return "destroyed"
                        with e ->
                            return e.GetType().Name
                    }
                    store.FailDeletes <- false
                    let! _ = Session.loadAsync ctx
                    return! text $"{destroyed} {Json.serialize s.Current}" next ctx
                }
            use! host = serve store (choose [ route "/set" >=> bump; failing ])
            let browser = Browser host
            let! _ = browser.GetTextAsync "/set"
            let! body = browser.GetTextAsync "/"
            Expect.equal body """SessionStoreException {"times":1}""" "the failed logout changed nothing: the session loads as stored"
        }

        testCaseTask "a handler that throws stores none of its changes"
        <| fun () -> task {
            let store = ObservedStore()
            let throws: HttpHandler =
                Session.handler (fun s ->
                    s |> Session.set "half" "done"
                    failwith "the handler broke")
            use! host = startHostOn Kestrel store noOptions (runHandler (withSession >=> throws)) (new LogCapture())
            let! response, _ = (Browser host).GetAsync "/"
            Expect.equal response.StatusCode HttpStatusCode.InternalServerError "response.StatusCode"
            Expect.equal store.Commits 0 "store.Commits"
        }

        testCaseTask "a handler that throws after its session moved (a sign-in, a rotation) or ended still gives the client its cookie, on the app's error page"
        <| fun () -> task {
            // The move is in the store once it returns: the client must follow it, or its session is lost to it.
            let failsAfter (move: SessionHandle -> Task) : HttpHandler =
                Session.handler (fun s ->
                    fun _ _ -> task {
                        do! move s
                        s |> Session.set "after" "dropped"
                        return failwith "the audit log is down"
                    })
            let app =
                withSession
                >=> choose [
                    route "/set"
                    >=> Session.handler (fun s ->
                        s |> Session.set "cart" [ 1; 2 ]
                        text "set")
                    route "/sign-in" >=> failsAfter (fun s -> s |> Session.signInAsync "alice" :> Task)
                    route "/rotate" >=> failsAfter (fun s -> s |> Session.rotateAsync :> Task)
                    route "/sign-out" >=> failsAfter Session.signOutAsync
                    route "/show" >=> Session.handler (fun s -> text (Json.serialize (Session.current s)))
                ]
            let pipeline (builder: IApplicationBuilder) =
                builder.UseExceptionHandler(fun (error: IApplicationBuilder) -> error.Run(fun ctx -> ctx.Response.WriteAsync "something went wrong")) |> ignore
                runHandler app builder
            use! host = startHostOn Kestrel (ObservedStore()) noOptions pipeline (new LogCapture())
            for route in [ "/sign-in"; "/rotate" ] do
                let browser = Browser host
                let! _ = browser.GetTextAsync "/set"
                let before = browser.Cookie
                let! response, body = browser.GetAsync route
                Expect.equal (int response.StatusCode, body) (500, "something went wrong") $"the app's error page answered {route}"
                Expect.notEqual browser.Cookie before $"the error page carries the session's new cookie ({route})"
                let! shown = browser.GetTextAsync "/show"
                Expect.equal shown """{"cart":[1,2]}""" $"the session keeps its data under its new id, without the failed handler's change ({route})"
            // A sign-out before the failure: the error page drops the cookie of the session that is gone.
            let browser = Browser host
            let! _ = browser.GetTextAsync "/set"
            let! response, _ = browser.GetAsync "/sign-out"
            Expect.equal (int response.StatusCode) 500 "the app's error page answered the sign-out"
            Expect.isNone browser.Cookie "the error page drops the session cookie"
        }

        testCaseTask "a change that crosses a value of the wrong kind fails at the call and records nothing"
        <| fun () -> task {
            let store = ObservedStore()
            let mutable error: exn = null
            let conflicting =
                Session.handler (fun s ->
                    s |> Session.set "name" "ada"
                    try
                        s |> Session.set "name.first" "x"
                    with e ->
                        error <- e
                    text (Json.serialize (Session.current s)))
            use! host = serve store conflicting
            let! body = (Browser host).GetTextAsync "/"
            Expect.equal body ("""{"name":"ada"}""") "body"
            let conflict = isType<PathConflictException> error
            Expect.stringContains conflict.Message "'name'" "conflict.Message"
            Expect.equal store.Commits 1 "store.Commits"
        }

        testCaseTask "a tampered, malformed, huge or forged cookie starts a fresh session, never an error"
        <| fun () -> task {
            let store = ObservedStore()
            use! host = serve store bump
            // A genuine cookie, then the same cookie with one character changed.
            let genuine = Browser host
            let! _ = genuine.GetTextAsync "/"
            let value = genuine.Cookie.Value
            let flipped = (if value[20] = 'A' then "B" else "A")
            let tampered = value.Substring(0, 20) + flipped + value.Substring(21)
            for cookie, what in hostileCookies @ [ tampered, "tampered" ] do
                let browser = Browser host
                browser.Cookie <- Some cookie
                let! response, body = browser.GetAsync "/"
                Expect.isTrue response.IsSuccessStatusCode ($"A {what} cookie must not fail the request.")
                Expect.equal body "1" "body"
                Expect.notEqual browser.Cookie (Some cookie) "browser.Cookie"
            // The genuine session is untouched by all of that.
            let! body = genuine.GetTextAsync "/"
            Expect.equal body "2" "body"
        }

        testCaseTask "a cookie naming a session the store no longer has starts a new session under a new id"
        <| fun () -> task {
            let store = ObservedStore()
            use! host = serve store bump
            let browser = Browser host
            let! _ = browser.GetTextAsync "/"
            let oldId, _ = store.Patches |> List.exactlyOne
            let! _ = store.DeleteAsync(oldId, testToken ())
            let oldCookie = browser.Cookie
            let! body = browser.GetTextAsync "/"
            Expect.equal body "1" "body"
            Expect.notEqual browser.Cookie oldCookie "browser.Cookie"
            let newId, _ = store.Patches |> List.last
            Expect.notEqual (newId: string) oldId "newId"
        }

        testCaseTask "session ids are 32 characters of base64url from 192 random bits, all different"
        <| fun () -> task {
            let store = ObservedStore()
            use! host = serve store bump
            for _ in 1..50 do
                let! _ = (Browser host).GetTextAsync "/"
                ()
            let ids = store.Patches |> List.map fst
            Expect.equal (ids |> List.distinct |> List.length) 50 "50 new visitors got 50 different ids."
            let base64url = Set.ofSeq "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            let decoded = [
                for id in ids do
                    Expect.equal id.Length 32 $"The id {id} is 32 characters long."
                    Expect.all id base64url.Contains $"The id {id} is written in the base64url alphabet, unpadded."
                    // 32 base64url characters decode to exactly 24 bytes.
                    let bytes = Convert.FromBase64String(id.Replace('-', '+').Replace('_', '/'))
                    Expect.equal bytes.Length 24 $"The id {id} holds 24 bytes (192 bits)."
                    Expect.isTrue (SessionId.isWellFormed id) id
                    bytes
            ]
            // All 192 bits are random: over 50 ids every bit position takes both values (a fixed part, a
            // counter or a timestamp would leave some bits the same in all of them; for random bits that
            // happens with probability 2^-49 per position).
            for bit in 0..191 do
                let values = decoded |> List.map (fun bytes -> (bytes[bit / 8] >>> (bit % 8)) &&& 1uy) |> List.distinct
                Expect.hasLength values 2 $"Bit {bit} of the id differs between ids."
        }

        testCaseTask "cookie options are honoured"
        <| fun () -> task {
            let store = ObservedStore()
            let configure (options: SesameOptions) =
                options.Cookie.Name <- "sid"
                options.Cookie.Path <- "/app"
                options.Cookie.Domain <- "example.test"
                options.Cookie.SameSite <- SameSiteMode.Strict
                options.Cookie.SecurePolicy <- CookieSecurePolicy.Always
                options.Cookie.MaxAge <- Nullable(TimeSpan.FromHours 1.0)
            use! host = startHost store configure (runHandler (withSession >=> bump)) (new LogCapture())
            let! response, _ = (Browser host).GetAsync "/"
            let cookie = (setCookies response |> List.exactlyOne).ToLowerInvariant()
            Expect.stringStarts cookie "sid=" "cookie"
            Expect.stringContains cookie "path=/app" "cookie"
            Expect.stringContains cookie "domain=example.test" "cookie"
            Expect.stringContains cookie "samesite=strict" "cookie"
            Expect.stringContains cookie "secure" "cookie"
            Expect.stringContains cookie "max-age=3600" "cookie"
        }

        testCaseTask "a session handle used after its request ended throws instead of recording into nowhere"
        <| fun () -> task {
            let store = ObservedStore()
            let mutable kept: SessionHandle = null
            use! host =
                serve
                    store
                    (Session.handler (fun s ->
                        kept <- s
                        text "ok"))
            let! _ = (Browser host).GetTextAsync "/"
            let error = throws<ObjectDisposedException>(fun () -> kept |> Session.set "late" 1)
            Expect.stringContains error.Message "request that has ended" "error.Message"
        }

        testCaseTask "withSession without AddSesame is a clear error"
        <| fun () -> task {
            use! host =
                Microsoft.Extensions.Hosting
                    .HostBuilder()
                    .ConfigureWebHost(fun web -> web.UseTestServer().Configure(runHandler (withSession >=> bump)) |> ignore)
                    .StartAsync()
            let client = host.GetTestClient()
            let! error = throwsAsync<InvalidOperationException>(fun () -> client.GetAsync "/" :> Task)
            Expect.stringContains error.Message "AddSesame" "error.Message"
        }
    ]
