/// Sessions bound to ASP.NET Core cookie authentication (src/Sesame.Fs/Authentication.fs, BindToAuthentication), end to
/// end through the real pipeline: the app signs in and out with HttpContext.SignInAsync/SignOutAsync only.
module Sesame.Tests.AuthenticationTests

open System
open System.Collections.Generic
open System.Net
open System.Net.Http
open System.Security.Claims
open System.Threading
open System.Threading.Tasks
open Microsoft.AspNetCore.Authentication
open Microsoft.AspNetCore.Authentication.Cookies
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.TestHost
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Hosting
open Expecto
open Sesame

let private authCookie = ".AspNetCore.Cookies"
let private sessionCookie = SesameOptions.DefaultCookieName

/// A client that keeps every cookie the app sets (the session's and the auth cookie), as a browser does.
type private Jar(client: HttpClient) =
    let cookies = Dictionary<string, string>()

    member _.Cookies = cookies

    /// A copy of this browser: the same cookies, from here on kept apart.
    member _.Clone() =
        let other = Jar(client)
        for pair in cookies do
            other.Cookies[pair.Key] <- pair.Value
        other

    member _.Has(name: string) = cookies.ContainsKey name

    /// Sends a GET with the cookies; keeps what the response sets, drops what it deletes.
    member _.SendAsync(url: string) : Task<HttpStatusCode * string> = task {
        use request = new HttpRequestMessage(HttpMethod.Get, url)
        if cookies.Count > 0 then request.Headers.Add("Cookie", String.Join("; ", cookies |> Seq.map (fun pair -> $"{pair.Key}={pair.Value}")))
        let! response = client.SendAsync request
        let! body = response.Content.ReadAsStringAsync()
        for header in setCookies response do
            let pair = header.Split(';')[0]
            let at = pair.IndexOf '='
            let name, value = pair.Substring(0, at), pair.Substring(at + 1)
            if value = "" then cookies.Remove name |> ignore else cookies[name] <- value
        return response.StatusCode, body
    }

    /// The body of a GET that must answer 200.
    member this.TextAsync(url: string) : Task<string> = task {
        let! status, body = this.SendAsync url
        if status <> HttpStatusCode.OK then failwith $"GET {url} answered {int status}: {body}"
        return body
    }

/// What the app's own cookie events saw.
type Calls() =
    let mutable signingIn = 0
    let mutable signedIn = 0
    let mutable signingOut = 0
    let mutable validated = 0
    member _.SigningIn = signingIn
    member _.SignedIn = signedIn
    member _.SigningOut = signingOut
    member _.Validated = validated
    member _.OnSigningIn() = Interlocked.Increment &signingIn |> ignore
    member _.OnSignedIn() = Interlocked.Increment &signedIn |> ignore
    member _.OnSigningOut() = Interlocked.Increment &signingOut |> ignore
    member _.OnValidated() = Interlocked.Increment &validated |> ignore

/// An app's events given as a type (CookieAuthenticationOptions.EventsType), resolved from the request's services.
type AppCookieEvents(calls: Calls) =
    inherit CookieAuthenticationEvents()

    override _.SigningIn(context) =
        calls.OnSigningIn()
        base.SigningIn context

    override _.SignedIn(context) =
        calls.OnSignedIn()
        base.SignedIn context

    override _.SigningOut(context) =
        calls.OnSigningOut()
        base.SigningOut context

    override _.ValidatePrincipal(context) =
        calls.OnValidated()
        base.ValidatePrincipal context

/// How the test app's cookie scheme is set up.
type private Events =
    /// No events of the app's own.
    | NoEvents
    /// The app sets callbacks on options.Events.
    | Callbacks of Calls
    /// The app gives its events as a type.
    | EventsType of Calls
    /// The app's OnSigningIn gives the principal its user id claim (from its name).
    | AddsUserId

let private principal (user: string) = ClaimsPrincipal(ClaimsIdentity([ Claim(ClaimTypes.NameIdentifier, user) ], "test"))

/// The second submit of a login form: `/slow-login` loads the session, signals, and signs in when the test says go.
type private SlowLogin() =
    static member val Loaded = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously) with get, set
    static member val Go = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously) with get, set

/// The app: one path per operation, the user in the query.
let private handle (ctx: HttpContext) : Task =
    let query (name: string) = string ctx.Request.Query[name]
    task {
        let! body = task {
            match ctx.Request.Path.Value with
            | "/put" ->
                let! session = Session.loadAsync ctx
                session |> Session.set "value" (query "value")
                return "put"
            | "/get" ->
                let! session = Session.loadAsync ctx
                return session |> Session.getOr "value" "(none)"
            | "/id" ->
                let! session = Session.loadAsync ctx
                return if session.IsNew then "(new)" else session.Id
            | "/login" ->
                do! ctx.SignInAsync(principal (query "user"))
                return "signed in"
            | "/slow-login" ->
                let! _ = Session.loadAsync ctx
                SlowLogin.Loaded.SetResult()
                do! SlowLogin.Go.Task
                do! ctx.SignInAsync(principal (query "user"))
                return "signed in"
            | "/login-or-stay" ->
                // The docs' way to answer a refused sign-in: catch the limit's exception.
                try
                    do! ctx.SignInAsync(principal (query "user"))
                    return "signed in"
                with :? SessionUserLimitException ->
                    return "too many devices"
            | "/ended-then-login-or-stay" ->
                // Another device ended the session's user's sessions while this request ran, then a refused sign-in.
                let! session = Session.loadAsync ctx
                let! _ = Sessions.endAllAsync (query "ended") ctx
                try
                    do! ctx.SignInAsync(principal (query "user"))
                with :? SessionUserLimitException ->
                    ()
                let value = session |> Session.getOr "value" "(none)"
                let user = Session.userId session |> Option.defaultValue "(none)"
                return $"user={user} value={value} new={session.IsNew}"
            | "/login-then-fail" ->
                do! ctx.SignInAsync(principal (query "user"))
                return failwith "the audit log is down"
            | "/login-external" ->
                do! ctx.SignInAsync("External", principal (query "user"))
                return "signed in elsewhere"
            | "/login-without-id" ->
                try
                    do! ctx.SignInAsync(ClaimsPrincipal(ClaimsIdentity([ Claim(ClaimTypes.Name, "nameless") ], "test")))
                    return "signed in"
                with :? InvalidOperationException as e ->
                    return $"refused: {e.Message}"
            | "/logout" ->
                do! ctx.SignOutAsync()
                return "signed out"
            | "/whoami" ->
                if ctx.User.Identity.IsAuthenticated then
                    return ctx.User.FindFirst(ClaimTypes.NameIdentifier).Value
                else
                    ctx.Response.StatusCode <- 401
                    return "anonymous"
            | "/flash" ->
                let! session = Session.loadAsync ctx
                session |> Session.flash "notice" (query "value")
                return "flashed"
            | "/login-flashing" ->
                // Keeps the flash it finds, flashes a welcome of its own, then signs in.
                let! session = Session.loadAsync ctx
                session |> Session.keepFlash "notice"
                session |> Session.flash "welcome" (query "user")
                do! ctx.SignInAsync(principal (query "user"))
                return "signed in"
            | "/read-flashes" ->
                let! session = Session.loadAsync ctx
                let read key = session |> Session.tryGetFlash<string> key |> Option.defaultValue "(none)"
                let notice, welcome = read "notice", read "welcome"
                return $"notice={notice} welcome={welcome}"
            | "/aspnet-put" ->
                ctx.Session.SetString("k", query "value")
                return "put"
            | "/aspnet-id" -> return ctx.Session.Id
            | "/sessions" ->
                let! sessions = Sessions.ofUserAsync (query "user") ctx
                return String.Join(",", sessions |> List.map _.Id)
            | "/end-all" ->
                let! ended = Sessions.endAllAsync (query "user") ctx
                return string ended
            | other -> return $"no route {other}"
        }
        do! ctx.Response.WriteAsync body
    }

/// Starts the app: Sesame bound to cookie authentication ("Cookies", the default scheme; "External", not bound); with
/// an error page, ASP.NET Core's exception handler first in the pipeline, else TestServer hands an exception to the client.
let private startAppWith (errorPage: bool) (events: Events) (configureSesame: SesameOptions -> unit) (sesameFirst: bool) =
    let services (services: IServiceCollection) =
        services.AddSesame(fun options -> configureSesame options).AddStore(new MemoryStore()).BindToAuthentication().AddSessionCompatibility() |> ignore
        services
            .AddAuthentication(CookieAuthenticationDefaults.AuthenticationScheme)
            .AddCookie(fun options ->
                match events with
                | NoEvents -> ()
                | Callbacks calls ->
                    options.Events.OnSigningIn <-
                        fun _ ->
                            calls.OnSigningIn()
                            Task.CompletedTask
                    options.Events.OnSignedIn <-
                        fun _ ->
                            calls.OnSignedIn()
                            Task.CompletedTask
                    options.Events.OnSigningOut <-
                        fun _ ->
                            calls.OnSigningOut()
                            Task.CompletedTask
                    options.Events.OnValidatePrincipal <-
                        fun _ ->
                            calls.OnValidated()
                            Task.CompletedTask
                | EventsType _ -> options.EventsType <- typeof<AppCookieEvents>
                | AddsUserId ->
                    options.Events.OnSigningIn <-
                        fun context ->
                            let name = context.Principal.FindFirst(ClaimTypes.Name).Value
                            context.Principal <- principal $"user-{name}"
                            Task.CompletedTask)
            .AddCookie("External")
        |> ignore
        match events with
        | EventsType calls -> services.AddSingleton<Calls>(calls).AddScoped<AppCookieEvents>() |> ignore
        | _ -> ()
    let pipeline (app: IApplicationBuilder) =
        if errorPage then
            app.UseExceptionHandler(fun (error: IApplicationBuilder) -> error.Run(fun ctx -> ctx.Response.WriteAsync "something went wrong")) |> ignore
        if sesameFirst then app.UseSesame().UseAuthentication() |> ignore else app.UseAuthentication().UseSesame() |> ignore
        app.Run(RequestDelegate handle)
    startHostWith InMemory services pipeline (new LogCapture())

let private startApp = startAppWith false

let private browserOf (host: IHost) = Jar((host.GetTestServer()).CreateClient())

let private noOptions (_: SesameOptions) = ()

/// One session per user, and a sign-in past it refused.
let private oneSessionEach (options: SesameOptions) =
    options.MaxSessionsPerUser <- 1
    options.UserLimitPolicy <- UserLimitPolicy.Refuse

/// Alice signed in on her phone, at her limit of one session (the Refuse policy); bob signed in on a shared computer,
/// with a cart.
let private aliceAtLimitBobShared () = task {
    let! host = startApp NoEvents oneSessionEach true
    let alicePhone, shared = browserOf host, browserOf host
    let! _ = alicePhone.TextAsync "/login?user=alice"
    let! _ = shared.TextAsync "/login?user=bob"
    let! _ = shared.TextAsync "/put?value=bob-cart"
    return host, alicePhone, shared
}

[<Tests>]
let tests =
    testList "Authentication" [
        testCaseTask "signing in moves the session to a new id, keeps its data, and the old cookie no longer loads it"
        <| fun () -> task {
            let! host = startApp NoEvents noOptions true
            use _ = host
            let browser = browserOf host
            let! _ = browser.TextAsync "/put?value=cart"
            let! before = browser.TextAsync "/id"
            let beforeLogin = browser.Clone()
            let! _ = browser.TextAsync "/login?user=alice"
            let! after = browser.TextAsync "/id"
            Expect.notEqual after before "a sign-in gives the session a new id"
            Expect.notEqual after "(new)" "the signed-in session is stored"
            let! value = browser.TextAsync "/get"
            Expect.equal value "cart" "the session keeps its data across the sign-in"
            let! replayed = beforeLogin.TextAsync "/id"
            Expect.equal replayed "(new)" "the cookie from before the sign-in names no session any more"
            let! whoami = browser.TextAsync "/whoami"
            Expect.equal whoami "alice" "the auth cookie authenticates the user"
        }

        testCaseTask "a signed-in session is bound to the user: listed among the user's sessions"
        <| fun () -> task {
            let! host = startApp NoEvents noOptions true
            use _ = host
            let phone, laptop = browserOf host, browserOf host
            let! _ = phone.TextAsync "/login?user=alice"
            let! _ = laptop.TextAsync "/login?user=alice"
            let! phoneId = phone.TextAsync "/id"
            let! laptopId = laptop.TextAsync "/id"
            let! listed = phone.TextAsync "/sessions?user=alice"
            Expect.equal (set (listed.Split ',')) (set [ phoneId; laptopId ]) "both devices' sessions are the user's"
            let! others = phone.TextAsync "/sessions?user=bob"
            Expect.equal others "" "another user has none"
        }

        testCaseTask "a session id planted before sign-in is not the one after it"
        <| fun () -> task {
            let! host = startApp NoEvents noOptions true
            use _ = host
            let attacker = browserOf host
            let! _ = attacker.TextAsync "/put?value=bait"
            let! planted = attacker.TextAsync "/id"
            // The victim's browser is given the attacker's session cookie, then signs in.
            let victim = attacker.Clone()
            let! _ = victim.TextAsync "/login?user=alice"
            let! victimId = victim.TextAsync "/id"
            Expect.notEqual victimId planted "the victim's signed-in session is not at the planted id"
            Expect.notEqual victim.Cookies[sessionCookie] attacker.Cookies[sessionCookie] "the victim got a new session cookie"
            let! _ = victim.TextAsync "/put?value=secret"
            let! seen = attacker.TextAsync "/get"
            Expect.equal seen "(none)" "the planted cookie does not reach the victim's session"
            let! attackerId = attacker.TextAsync "/id"
            Expect.equal attackerId "(new)" "the planted id is dead"
        }

        testCaseTask "signing out destroys the session and removes it from the user's sessions"
        <| fun () -> task {
            let! host = startApp NoEvents noOptions true
            use _ = host
            let browser = browserOf host
            let! _ = browser.TextAsync "/login?user=alice"
            let! _ = browser.TextAsync "/put?value=private"
            let signedIn = browser.Clone()
            let! _ = browser.TextAsync "/logout"
            Expect.isFalse (browser.Has sessionCookie) "the session cookie is expired"
            Expect.isFalse (browser.Has authCookie) "the auth cookie is expired"
            let! listed = browser.TextAsync "/sessions?user=alice"
            Expect.equal listed "" "the user has no session left"
            // Replaying the cookies from before the sign-out: no session, and the auth cookie is refused.
            let! status, _ = signedIn.SendAsync "/whoami"
            Expect.equal status HttpStatusCode.Unauthorized "the old auth cookie's session has ended, so it is rejected"
            let! value = signedIn.TextAsync "/get"
            Expect.equal value "(none)" "the old session cookie finds no data"
        }

        testCaseTask "ending the user's sessions from another request rejects the auth cookie on its next request"
        <| fun () -> task {
            let! host = startApp NoEvents noOptions true
            use _ = host
            let phone, admin = browserOf host, browserOf host
            let! _ = phone.TextAsync "/login?user=alice"
            let! whoami = phone.TextAsync "/whoami"
            Expect.equal whoami "alice" "signed in"
            let! ended = admin.TextAsync "/end-all?user=alice"
            Expect.equal ended "1" "the phone's session is ended"
            let! status, _ = phone.SendAsync "/whoami"
            Expect.equal status HttpStatusCode.Unauthorized "the auth cookie of the ended session no longer authenticates"
            Expect.isFalse (phone.Has authCookie) "the auth cookie is signed out"
            Expect.isFalse (phone.Has sessionCookie) "the dead session's cookie is expired"
            let! again = phone.TextAsync "/login?user=alice"
            Expect.equal again "signed in" "the user can sign in again"
            let! back = phone.TextAsync "/whoami"
            Expect.equal back "alice" "and is authenticated again"
        }

        testCaseTask "signing in as another user empties the previous user's session"
        <| fun () -> task {
            let! host = startApp NoEvents noOptions true
            use _ = host
            let browser = browserOf host
            let! _ = browser.TextAsync "/login?user=alice"
            let! _ = browser.TextAsync "/put?value=alice-private"
            let! _ = browser.TextAsync "/login?user=bob"
            let! value = browser.TextAsync "/get"
            Expect.equal value "(none)" "bob does not see alice's data"
            let! alices = browser.TextAsync "/sessions?user=alice"
            Expect.equal alices "" "the session is no longer alice's"
            let! bobs = browser.TextAsync "/sessions?user=bob"
            let! id = browser.TextAsync "/id"
            Expect.equal bobs id "it is bob's"
        }

        testCaseTask "signing in as another user leaves none of the previous user's flash values, kept or not, and gives a new ISession id"
        <| fun () -> task {
            let! host = startApp NoEvents noOptions true
            use _ = host
            let browser = browserOf host
            // Made through ISession, so that it has an ISession id of its own, which sign-in keeps.
            let! _ = browser.TextAsync "/aspnet-put?value=x"
            let! _ = browser.TextAsync "/login?user=alice"
            let! alicesId = browser.TextAsync "/aspnet-id"
            let! again = browser.TextAsync "/aspnet-id"
            Expect.equal again alicesId "an ISession id names the session for its life"
            let! _ = browser.TextAsync "/flash?value=alice-private"
            let! _ = browser.TextAsync "/login-flashing?user=bob"
            let! flashes = browser.TextAsync "/read-flashes"
            Expect.equal flashes "notice=(none) welcome=bob" "bob reads the welcome his login flashed, and not alice's flash, though the login kept it"
            let! bobsId = browser.TextAsync "/aspnet-id"
            Expect.notEqual bobsId alicesId "bob's session has an ISession id of its own"
            let! bobsAgain = browser.TextAsync "/aspnet-id"
            Expect.equal bobsAgain bobsId "which names it from then on"
        }

        testCaseTask "signing in again as the same user keeps the session's flash values and its ISession id"
        <| fun () -> task {
            let! host = startApp NoEvents noOptions true
            use _ = host
            let browser = browserOf host
            let! _ = browser.TextAsync "/aspnet-put?value=x"
            let! _ = browser.TextAsync "/login?user=alice"
            let! before = browser.TextAsync "/aspnet-id"
            let! _ = browser.TextAsync "/flash?value=for-alice"
            let! _ = browser.TextAsync "/login-flashing?user=alice"
            let! flashes = browser.TextAsync "/read-flashes"
            Expect.equal flashes "notice=for-alice welcome=alice" "both values reach the next request"
            let! after = browser.TextAsync "/aspnet-id"
            Expect.equal after before "the same ISession id"
        }

        testCaseTask "validating the auth cookie does not count as using the session: no no-cache headers"
        <| fun () -> task {
            let! host = startApp NoEvents noOptions true
            use _ = host
            let client = (host.GetTestServer()).CreateClient()
            let browser = Jar(client)
            let! _ = browser.TextAsync "/login?user=alice"
            use request = new HttpRequestMessage(HttpMethod.Get, "/whoami")
            request.Headers.Add("Cookie", String.Join("; ", browser.Cookies |> Seq.map (fun pair -> $"{pair.Key}={pair.Value}")))
            let! response = client.SendAsync request
            let! body = response.Content.ReadAsStringAsync()
            Expect.equal body "alice" "authenticated through the bound session"
            Expect.isFalse
                (response.Headers.CacheControl <> null && response.Headers.CacheControl.NoStore)
                "no Cache-Control: no-store for a handler that left the session alone"
        }

        testCaseTask "the app's own event callbacks still run, first, around the binding"
        <| fun () -> task {
            let calls = Calls()
            let! host = startApp (Callbacks calls) noOptions true
            use _ = host
            let browser = browserOf host
            let! _ = browser.TextAsync "/login?user=alice"
            let! _ = browser.TextAsync "/whoami"
            let! listed = browser.TextAsync "/sessions?user=alice"
            Expect.isNonEmpty listed "the session is bound"
            let! _ = browser.TextAsync "/logout"
            // Three requests came with the auth cookie after the sign-in: /whoami, /sessions and /logout.
            Expect.equal (calls.SigningIn, calls.SignedIn, calls.Validated, calls.SigningOut) (1, 1, 3, 1) "every app callback ran, as often as without Sesame"
            let! after = browser.TextAsync "/sessions?user=alice"
            Expect.equal after "" "the sign-out destroyed the session"
        }

        testCaseTask "an app's events given as EventsType still run, and the session is bound"
        <| fun () -> task {
            let calls = Calls()
            let! host = startApp (EventsType calls) noOptions true
            use _ = host
            let browser = browserOf host
            let! _ = browser.TextAsync "/login?user=alice"
            let! whoami = browser.TextAsync "/whoami"
            Expect.equal whoami "alice" "signed in"
            let! listed = browser.TextAsync "/sessions?user=alice"
            Expect.isNonEmpty listed "the session is bound"
            let admin = browserOf host
            let! _ = admin.TextAsync "/end-all?user=alice"
            let! status, _ = browser.SendAsync "/whoami"
            Expect.equal status HttpStatusCode.Unauthorized "the ended session's auth cookie is rejected"
            Expect.equal (calls.SigningIn, calls.SignedIn) (1, 1) "the app's sign-in events ran"
            Expect.equal calls.Validated 3 "the app's validation ran for each request that came with the auth cookie"
            Expect.equal calls.SigningOut 1 "the app saw the sign-out of the rejected cookie"
        }

        testCaseTask "a sign-in with another scheme than the one that authenticates requests leaves the session alone"
        <| fun () -> task {
            let! host = startApp NoEvents noOptions true
            use _ = host
            let browser = browserOf host
            let! _ = browser.TextAsync "/put?value=cart"
            let! before = browser.TextAsync "/id"
            let! _ = browser.TextAsync "/login-external?user=alice"
            let! after = browser.TextAsync "/id"
            Expect.equal after before "the external cookie's sign-in does not move the session"
            let! listed = browser.TextAsync "/sessions?user=alice"
            Expect.equal listed "" "nor binds it to the user"
        }

        testCaseTask "the principal the app's OnSigningIn gives is the one the session is bound to"
        <| fun () -> task {
            let! host = startApp AddsUserId noOptions true
            use _ = host
            let browser = browserOf host
            let! answer = browser.TextAsync "/login-without-id"
            Expect.equal answer "signed in" "the app's callback ran before the binding looked for the user id"
            let! listed = browser.TextAsync "/sessions?user=user-nameless"
            let! id = browser.TextAsync "/id"
            Expect.equal listed id "the session is bound to the user id the app's callback gave"
        }

        testCaseTask "a principal without the user id claim cannot sign in, and no auth cookie is issued"
        <| fun () -> task {
            let! host = startApp NoEvents noOptions true
            use _ = host
            let browser = browserOf host
            let! answer = browser.TextAsync "/login-without-id"
            Expect.stringStarts answer "refused: " "the sign-in throws"
            Expect.stringContains answer ClaimTypes.NameIdentifier "the error names the missing claim"
            Expect.isFalse (browser.Has authCookie) "no auth cookie was issued"
        }

        testCaseTask "an account switch submitted twice leaves the first submit's session as it made it, and gives the second none of it"
        <| fun () -> task {
            SlowLogin.Loaded <- TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
            SlowLogin.Go <- TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
            use! host = startApp NoEvents noOptions true
            let shared = browserOf host
            let! _ = shared.TextAsync "/login?user=bob"
            let! _ = shared.TextAsync "/put?value=bob-cart"
            let late = shared.Clone()
            let lateLogin = late.TextAsync "/slow-login?user=alice"
            do! SlowLogin.Loaded.Task
            let! _ = shared.TextAsync "/login?user=alice"
            let! _ = shared.TextAsync "/put?value=alice-first"
            SlowLogin.Go.SetResult()
            let! _ = lateLogin
            let! underFirst = shared.TextAsync "/get"
            Expect.equal underFirst "alice-first" "the second submit's switch did not empty the session the first made"
            let! underLate = late.TextAsync "/get"
            Expect.equal underLate "(none)" "the second submit has none of bob's data"
            let! whoami = late.TextAsync "/whoami"
            Expect.equal whoami "alice" "and is signed in as alice"
        }

        testCaseTask "a login that throws after SignInAsync still gives the browser its session's new id, on the app's error page"
        <| fun () -> task {
            let! host = startAppWith true NoEvents noOptions true
            use _ = host
            let browser = browserOf host
            let! _ = browser.TextAsync "/put?value=cart"
            let before = browser.Cookies[sessionCookie]
            let! status, body = browser.SendAsync "/login-then-fail?user=alice"
            Expect.equal (status, body) (HttpStatusCode.InternalServerError, "something went wrong") "the app's error page answered"
            Expect.notEqual browser.Cookies[sessionCookie] before "the error page carries the session cookie of the new id"
            let! value = browser.TextAsync "/get"
            Expect.equal value "cart" "the session keeps its data under its new id"
            let! whoami, _ = browser.SendAsync "/whoami"
            Expect.equal whoami HttpStatusCode.Unauthorized "the failed login signed nobody in: the error page dropped the auth cookie"
        }

        testCaseTask "a sign-in past MaxSessionsPerUser with the Refuse policy fails with SessionUserLimitException"
        <| fun () -> task {
            let! host = startApp NoEvents oneSessionEach true
            use _ = host
            let first, second = browserOf host, browserOf host
            let! _ = first.TextAsync "/login?user=alice"
            let! status, _ = task {
                try
                    return! second.SendAsync "/login?user=alice"
                with e ->
                    // TestServer hands the app's exception to the client.
                    Expect.isTrue
                        (e :? SessionUserLimitException || (e.InnerException :? SessionUserLimitException))
                        $"the sign-in is refused with the limit's exception, not {e}"
                    return HttpStatusCode.InternalServerError, ""
            }
            Expect.equal status HttpStatusCode.InternalServerError "the refused sign-in fails"
            Expect.isFalse (second.Has authCookie) "no auth cookie was issued"
            let! listed = first.TextAsync "/sessions?user=alice"
            Expect.equal (listed.Split(',').Length) 1 "the user still has one session"
        }

        testCaseTask "a sign-in as another user that the limit refuses, caught by the app, leaves the signed-in user's session as it was"
        <| fun () -> task {
            let! host, _, shared = aliceAtLimitBobShared ()
            use _ = host
            // Bob also has a flash message and an ISession id.
            let! _ = shared.TextAsync "/flash?value=saved"
            let! _ = shared.TextAsync "/aspnet-put?value=x"
            let! bobsId = shared.TextAsync "/aspnet-id"
            // Alice, at her limit, tries to sign in there.
            let! answer = shared.TextAsync "/login-or-stay?user=alice"
            Expect.equal answer "too many devices" "the sign-in is refused"
            let! who = shared.TextAsync "/whoami"
            Expect.equal who "bob" "bob is still signed in"
            let! cart = shared.TextAsync "/get"
            Expect.equal cart "bob-cart" "bob's cart is as it was"
            let! id = shared.TextAsync "/aspnet-id"
            Expect.equal id bobsId "bob's ISession id is as it was"
            let! flashes = shared.TextAsync "/read-flashes"
            Expect.equal flashes "notice=saved welcome=(none)" "bob's flash message is still there"
        }

        testCaseTask "a refused sign-in as another user does not bring back the previous user's session that ended meanwhile"
        <| fun () -> task {
            let! host, alicePhone, shared = aliceAtLimitBobShared ()
            use _ = host
            let! answer = shared.TextAsync "/ended-then-login-or-stay?ended=bob&user=alice"
            Expect.equal answer "user=(none) value=(none) new=True" "the request holds a new, empty session"
            let! listed = alicePhone.TextAsync "/sessions?user=bob"
            Expect.equal listed "" "bob has no session"
        }

        testCaseTask "authentication before UseSesame is a clear error when a bound cookie comes back"
        <| fun () -> task {
            let! host = startApp NoEvents noOptions false
            use _ = host
            let browser = browserOf host
            // The endpoint runs after both middlewares, so the sign-in itself has a session.
            let! _ = browser.TextAsync "/login?user=alice"
            let! answer = task {
                try
                    let! _ = browser.SendAsync "/whoami"
                    return "no error"
                with e ->
                    return string e
            }
            Expect.stringContains answer "app.UseSesame() before app.UseAuthentication()" "the error says how to fix the pipeline"
        }
    ]
