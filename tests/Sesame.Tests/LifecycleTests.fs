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
open Xunit
open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

let private noOptions (_: SesameOptions) = ()

/// Starts a host whose every request runs `handler` under withSession.
let private serve (store: ObservedStore) (handler: HttpHandler) =
    startHost store noOptions (runHandler (withSession >=> handler)) (new LogCapture())

let private bump: HttpHandler =
    Session.handler (fun session -> text (string (session |> Session.increment "times" 1m)))

[<Fact>]
let ``a request that never touches the session does no store I/O and sets no cookie`` () =
    task {
        let store = ObservedStore()
        use! host = serve store (text "hello")
        let browser = Browser host
        let! response, body = browser.GetAsync "/"
        Assert.Equal("hello", body)
        Assert.Empty(setCookies response)
        Assert.Equal(0, store.Loads)
        Assert.Equal(0, store.Commits)
    }

[<Fact>]
let ``reading a new visitor's session sets no cookie and writes nothing`` () =
    task {
        let store = ObservedStore()
        use! host = serve store (Session.handler (fun s -> text (Json.serialize (Session.current s))))
        let! response, body = (Browser host).GetAsync "/"
        Assert.Equal("{}", body)
        Assert.Empty(setCookies response)
        Assert.Equal(0, store.Commits)
    }

[<Fact>]
let ``a new visitor gets a cookie when the session is first changed, and the session continues with it`` () =
    task {
        let store = ObservedStore()
        use! host = serve store bump
        let browser = Browser host
        let! first, body1 = browser.GetAsync "/"
        Assert.Equal("1", body1)
        let cookie = setCookies first |> List.exactlyOne
        Assert.StartsWith("sesame=", cookie)
        Assert.Contains("httponly", cookie.ToLowerInvariant())
        Assert.Contains("samesite=lax", cookie.ToLowerInvariant())
        Assert.Contains("path=/", cookie)
        Assert.True(first.Headers.CacheControl.NoCache && first.Headers.CacheControl.NoStore, "A response that sets a session cookie must not be cached.")
        let! second, body2 = browser.GetAsync "/"
        Assert.Equal("2", body2)
        Assert.Empty(setCookies second)
    }

[<Fact>]
let ``reading an existing session loads it once and writes nothing`` () =
    task {
        let store = ObservedStore()
        let reader = Session.handler (fun s -> text (string (s |> Session.tryGet<int> "times")))
        use! host = serve store (choose [ route "/bump" >=> bump; route "/read" >=> reader ])
        let browser = Browser host
        let! _ = browser.GetTextAsync "/bump"
        let loadsBefore, commitsBefore = store.Loads, store.Commits
        let! body = browser.GetTextAsync "/read"
        Assert.Equal("Some(1)", body)
        Assert.Equal(loadsBefore + 1, store.Loads)
        Assert.Equal(commitsBefore, store.Commits)
    }

[<Fact>]
let ``ten changes in one request make exactly one store write`` () =
    task {
        let store = ObservedStore()
        let tenChanges =
            Session.handler (fun s ->
                for i in 1..5 do
                    s |> Session.increment "count" 1m |> ignore
                    s |> Session.set $"items.k{i}" i
                text "done")
        use! host = serve store tenChanges
        let! _ = (Browser host).GetTextAsync "/"
        Assert.Equal(1, store.Commits)
        let _, patch = store.Patches |> List.exactlyOne
        // Five increments of one path fold into one; the five sets stay.
        Assert.Equal(6, patch.Updates.Length)
    }

[<Fact>]
let ``the change is stored before the client has the response, even with a slow store`` () =
    task {
        let store = ObservedStore(CommitDelay = TimeSpan.FromMilliseconds 300.0)
        use! host = serve store (Session.handler (fun s -> s |> Session.set "paid" true; text "ok"))
        let! _ = (Browser host).GetTextAsync "/"
        // The moment the response is in hand, the store already holds the change.
        let id, _ = store.Patches |> List.exactlyOne
        let! stored = (store.Inner).LoadAsync(id, TimeSpan.FromMinutes 1.0, testToken ())
        Assert.Equal(Some(json """{"paid":true}"""), stored)
    }

[<Fact>]
let ``a change made after the response started is committed when the handler ends`` () =
    task {
        let store = ObservedStore()
        let late: HttpHandler =
            fun next ctx ->
                task {
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
        Assert.Equal("""{"early":1,"late":2}""", body)
        Assert.Equal(2, store.Commits)
    }

[<Fact>]
let ``a failing store gives a 500 and the app's logger sees the error`` () =
    task {
        let store = ObservedStore(FailCommits = true)
        let logs = new LogCapture()
        use! host = startHostOn Kestrel store noOptions (runHandler (withSession >=> bump)) logs
        let! response, _ = (Browser host).GetAsync "/"
        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode)
        Assert.Empty(setCookies response)
        let failure = logs.Entries |> List.find (fun e -> e.EventId.Name = "SessionCommitFailed")
        Assert.Equal(LogLevel.Error, failure.Level)
        Assert.IsType<SessionStoreException>(failure.Error) |> ignore
    }

[<Fact>]
let ``a handler that throws stores none of its changes`` () =
    task {
        let store = ObservedStore()
        let throws: HttpHandler =
            Session.handler (fun s ->
                s |> Session.set "half" "done"
                failwith "the handler broke")
        use! host = startHostOn Kestrel store noOptions (runHandler (withSession >=> throws)) (new LogCapture())
        let! response, _ = (Browser host).GetAsync "/"
        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode)
        Assert.Equal(0, store.Commits)
    }

[<Fact>]
let ``a change that crosses a value of the wrong kind fails at the call and records nothing`` () =
    task {
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
        Assert.Equal("""{"name":"ada"}""", body)
        let conflict = Assert.IsType<PathConflictException>(error)
        Assert.Contains("'name'", conflict.Message)
        Assert.Equal(1, store.Commits)
    }

let private hostileCookies =
    [ "", "empty"
      "not base64 at all!", "not base64url"
      String('A', 5000), "huge"
      "CfDJ8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "forged" ]

[<Fact>]
let ``a tampered, malformed, huge or forged cookie starts a fresh session, never an error`` () =
    task {
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
            Assert.True(response.IsSuccessStatusCode, $"A {what} cookie must not fail the request.")
            Assert.Equal("1", body)
            Assert.NotEqual(Some cookie, browser.Cookie)
        // The genuine session is untouched by all of that.
        let! body = genuine.GetTextAsync "/"
        Assert.Equal("2", body)
    }

[<Fact>]
let ``a cookie naming a session the store no longer has starts a new session under a new id`` () =
    task {
        let store = ObservedStore()
        use! host = serve store bump
        let browser = Browser host
        let! _ = browser.GetTextAsync "/"
        let oldId, _ = store.Patches |> List.exactlyOne
        do! (store :> ISessionStore).DeleteAsync(oldId, testToken ())
        let oldCookie = browser.Cookie
        let! body = browser.GetTextAsync "/"
        Assert.Equal("1", body)
        Assert.NotEqual(oldCookie, browser.Cookie)
        let newId, _ = store.Patches |> List.last
        Assert.NotEqual<string>(oldId, newId)
    }

[<Fact>]
let ``session ids are 32 characters of base64url from 192 random bits, all different`` () =
    task {
        let store = ObservedStore()
        use! host = serve store bump
        for _ in 1..50 do
            let! _ = (Browser host).GetTextAsync "/"
            ()
        let ids = store.Patches |> List.map fst
        Assert.Equal(50, ids |> List.distinct |> List.length)
        Assert.All(ids, fun id -> Assert.True(SessionId.isWellFormed id, id))
    }

[<Fact>]
let ``cookie options are honoured`` () =
    task {
        let store = ObservedStore()
        let configure (options: SesameOptions) =
            options.CookieName <- "sid"
            options.CookiePath <- "/app"
            options.CookieDomain <- "example.test"
            options.SameSite <- SameSiteMode.Strict
            options.SecurePolicy <- CookieSecurePolicy.Always
            options.CookieMaxAge <- Nullable(TimeSpan.FromHours 1.0)
        use! host = startHost store configure (runHandler (withSession >=> bump)) (new LogCapture())
        let! response, _ = (Browser host).GetAsync "/"
        let cookie = (setCookies response |> List.exactlyOne).ToLowerInvariant()
        Assert.StartsWith("sid=", cookie)
        Assert.Contains("path=/app", cookie)
        Assert.Contains("domain=example.test", cookie)
        Assert.Contains("samesite=strict", cookie)
        Assert.Contains("secure", cookie)
        Assert.Contains("max-age=3600", cookie)
    }

[<Fact>]
let ``a session handle used after its request ended throws instead of recording into nowhere`` () =
    task {
        let store = ObservedStore()
        let mutable kept: SessionHandle = null
        use! host = serve store (Session.handler (fun s -> kept <- s; text "ok"))
        let! _ = (Browser host).GetTextAsync "/"
        let error = Assert.Throws<ObjectDisposedException>(fun () -> kept |> Session.set "late" 1)
        Assert.Contains("request that has ended", error.Message)
    }

[<Fact>]
let ``withSession without AddSesame is a clear error`` () =
    task {
        use! host =
            Microsoft.Extensions.Hosting.HostBuilder()
                .ConfigureWebHost(fun web ->
                    web.UseTestServer().Configure(runHandler (withSession >=> bump)) |> ignore)
                .StartAsync()
        let client = host.GetTestClient()
        let! error = Assert.ThrowsAsync<InvalidOperationException>(fun () -> client.GetAsync "/" :> Task)
        Assert.Contains("AddSesame", error.Message)
    }
