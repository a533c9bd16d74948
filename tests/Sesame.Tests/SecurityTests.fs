/// Session lifecycle and hardening, end to end: rotation, destruction, expiry, limits, hostile input, headers, keys.
module Sesame.Tests.SecurityTests

open System
open System.IO
open System.Net
open System.Net.Http
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.DataProtection
open Microsoft.AspNetCore.HttpOverrides
open Microsoft.AspNetCore.Hosting
open Microsoft.AspNetCore.TestHost
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open Xunit
open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

/// The stores every lifecycle behaviour is proven on. Each call makes a fresh, empty store.
let storeKinds: obj[] seq = StoreKinds.all |> Seq.map (fun (name, _) -> [| box name |])

let private makeStore (kind: string) =
    let _, make = StoreKinds.all |> Seq.find (fun (name, _) -> name = kind)
    make ()

let private show = Session.handler (fun s -> text (Json.serialize (Session.current s)))

/// A handler that loads the session, signals it has, waits for the test's go, then sets a key: an in-flight request.
type InFlight() =
    let loaded = TaskCompletionSource()
    let go = TaskCompletionSource()
    member _.Loaded = loaded.Task
    member _.Go() = go.SetResult()
    member _.Handler: HttpHandler =
        Session.handler (fun s ->
            fun next ctx ->
                task {
                    loaded.SetResult()
                    do! go.Task
                    s |> Session.set "lateKey" "from the in-flight request"
                    return! text "late" next ctx
                })

let private lifecycleApp (inFlight: InFlight) =
    withSession
    >=> choose
        [ route "/login" >=> Session.handler (fun s -> s |> Session.set "user" "ada"; id) >=> Session.rotate >=> text "in"
          route "/rotate" >=> Session.rotate >=> text "rotated"
          route "/logout" >=> Session.destroy >=> text "out"
          route "/set" >=> Session.handler (fun s -> s |> Session.set "cart" [ 1; 2 ]; text "set")
          route "/slow" >=> inFlight.Handler
          route "/show" >=> show
          route "/untouched" >=> text "untouched" ]

let private startLifecycle (store: ISessionStore) (configure: SesameOptions -> unit) (inFlight: InFlight) =
    startHost store configure (runHandler (lifecycleApp inFlight)) (new LogCapture())

let private noOptions (_: SesameOptions) = ()

/// A user with a session, and a request of that session that has loaded it and waits: the situation
/// in which a rotation or a logout must not be undone by a late commit.
let private userWithRequestInFlight (host: IHost) (inFlight: InFlight) =
    task {
        let user = Browser host
        let! _ = user.GetTextAsync "/set"
        let old = user.Cookie
        let slowBrowser = Browser host
        slowBrowser.Cookie <- old
        let slow = slowBrowser.GetTextAsync "/slow"
        do! inFlight.Loaded
        return user, old, slow
    }

[<Theory; MemberData(nameof storeKinds)>]
let ``rotating the id keeps the data, issues a new cookie and kills the old id`` (kind: string) =
    task {
        let store = makeStore kind
        use! host = startLifecycle store noOptions (InFlight())
        let browser = Browser host
        let! _ = browser.GetTextAsync "/set"
        let before = browser.Cookie
        let! response, _ = browser.GetAsync "/login"
        Assert.NotEmpty(setCookies response)
        Assert.NotEqual(before, browser.Cookie)
        let! kept = browser.GetTextAsync "/show"
        Assert.Equal("""{"cart":[1,2],"user":"ada"}""", kept)
        // The old cookie now opens nothing.
        let attacker = Browser host
        attacker.Cookie <- before
        let! stolen = attacker.GetTextAsync "/show"
        Assert.Equal("{}", stolen)
    }

[<Theory; MemberData(nameof storeKinds)>]
let ``a late commit under the old id cannot bring a rotated session back`` (kind: string) =
    task {
        let store = makeStore kind
        let inFlight = InFlight()
        use! host = startLifecycle store noOptions inFlight
        let! user, old, slow = userWithRequestInFlight host inFlight
        let! _ = user.GetTextAsync "/rotate"
        inFlight.Go()
        let! _ = slow
        let replay = Browser host
        replay.Cookie <- old
        let! underOld = replay.GetTextAsync "/show"
        Assert.Equal("{}", underOld)
        let! underNew = user.GetTextAsync "/show"
        Assert.Equal("""{"cart":[1,2]}""", underNew)
    }

[<Theory; MemberData(nameof storeKinds)>]
let ``destroying deletes the session, expires the cookie, and a concurrent request cannot bring it back`` (kind: string) =
    task {
        let store = makeStore kind
        let inFlight = InFlight()
        use! host = startLifecycle store noOptions inFlight
        let! user, old, slow = userWithRequestInFlight host inFlight
        let! response, _ = user.GetAsync "/logout"
        let expired = setCookies response |> List.exactlyOne
        Assert.Contains("expires=Thu, 01 Jan 1970", expired)
        Assert.Equal(None, user.Cookie)
        inFlight.Go()
        let! _ = slow
        // Replaying the cookie after logout opens a new, empty session.
        let replay = Browser host
        replay.Cookie <- old
        let! body = replay.GetTextAsync "/show"
        Assert.Equal("{}", body)
    }

[<Theory; MemberData(nameof storeKinds)>]
let ``an idle session expires and is never served after`` (kind: string) =
    task {
        let store = makeStore kind
        // Generous margins: on a busy machine the second request must still come well inside the timeout.
        let idle = TimeSpan.FromSeconds 1.5
        use! host = startLifecycle store (fun o -> o.IdleTimeout <- idle) (InFlight())
        let browser = Browser host
        let! _ = browser.GetTextAsync "/set"
        let! fresh = browser.GetTextAsync "/show"
        Assert.Equal("""{"cart":[1,2]}""", fresh)
        do! Task.Delay(idle * 3.0)
        let! expired = browser.GetTextAsync "/show"
        Assert.Equal("{}", expired)
    }

[<Theory; MemberData(nameof storeKinds)>]
let ``a session ends at its absolute lifetime however active it is`` (kind: string) =
    task {
        let store = makeStore kind
        use! host = startLifecycle store (fun o -> o.AbsoluteTimeout <- Nullable(TimeSpan.FromSeconds 1.0)) (InFlight())
        let browser = Browser host
        let! _ = browser.GetTextAsync "/set"
        // Keep it busy: idle expiry alone would never end it.
        for _ in 1..3 do
            do! Task.Delay 200
            let! _ = browser.GetTextAsync "/show"
            ()
        do! Task.Delay 800
        let! ended = browser.GetTextAsync "/show"
        Assert.Equal("{}", ended)
    }

[<Theory; MemberData(nameof storeKinds)>]
let ``a session over the size limit is refused with the limit and the size, and nothing of it is stored`` (kind: string) =
    task {
        let store = makeStore kind
        let logs = new LogCapture()
        let app =
            withSession
            >=> choose
                [ route "/small" >=> Session.handler (fun s -> s |> Session.set "small" 1; text "ok")
                  route "/big" >=> Session.handler (fun s -> s |> Session.set "note" "kept?"; s |> Session.set "big" (String('x', 5000)); text "big")
                  route "/show" >=> show ]
        use! host = startHostOn Kestrel store (fun o -> o.MaxSessionBytes <- 1000) (runHandler app) logs
        let browser = Browser host
        let! _ = browser.GetTextAsync "/small"
        let! response, _ = browser.GetAsync "/big"
        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode)
        let failure = logs.Entries |> List.find (fun e -> e.EventId.Name = "SessionCommitFailed")
        let tooLarge = Assert.IsType<SessionTooLargeException>(failure.Error)
        Assert.Equal(1000, tooLarge.Limit)
        Assert.Contains("1000", tooLarge.Message)
        Assert.Contains(string tooLarge.Size, tooLarge.Message)
        let! stored = browser.GetTextAsync "/show"
        Assert.Equal("""{"small":1}""", stored)
    }

[<Fact>]
let ``a cookie protected with another app's keys starts a fresh session`` () =
    task {
        use! host = startLifecycle (new MemoryStore()) noOptions (InFlight())
        let foreign = DataProtectionProvider.Create("another-app").CreateProtector("Sesame.SessionCookie.v1")
        let forged = foreign.Protect(SessionTicket.format { Id = SessionId.create (); Created = DateTimeOffset.UtcNow })
        let browser = Browser host
        browser.Cookie <- Some forged
        let! response, body = browser.GetAsync "/show"
        Assert.Equal(HttpStatusCode.OK, response.StatusCode)
        Assert.Equal("{}", body)
    }

[<Fact>]
let ``requests that read or change a session are not cacheable; untouched ones are left alone`` () =
    task {
        use! host = startLifecycle (new MemoryStore()) noOptions (InFlight())
        let browser = Browser host
        let! _ = browser.GetTextAsync "/set"
        let! read, _ = browser.GetAsync "/show"
        Assert.True(read.Headers.CacheControl.NoStore && read.Headers.CacheControl.NoCache)
        Assert.Contains("Cookie", read.Headers.Vary)
        let! untouched, _ = browser.GetAsync "/untouched"
        Assert.Null(untouched.Headers.CacheControl)
    }

[<Fact>]
let ``the cache headers can be turned off`` () =
    task {
        use! host = startLifecycle (new MemoryStore()) (fun o -> o.NoCacheHeaders <- false) (InFlight())
        let browser = Browser host
        let! _ = browser.GetTextAsync "/set"
        let! read, _ = browser.GetAsync "/show"
        Assert.Null(read.Headers.CacheControl)
    }

[<Fact>]
let ``behind a proxy with forwarded headers the cookie is Secure when the client used https`` () =
    task {
        let pipeline (app: IApplicationBuilder) =
            app.UseForwardedHeaders(ForwardedHeadersOptions(ForwardedHeaders = ForwardedHeaders.XForwardedProto)) |> ignore
            runHandler (lifecycleApp (InFlight())) app
        use! host = startHost (new MemoryStore()) noOptions pipeline (new LogCapture())
        let client = host.GetTestClient()
        use viaHttps = new HttpRequestMessage(HttpMethod.Get, "/set")
        viaHttps.Headers.Add("X-Forwarded-Proto", "https")
        let! secure = client.SendAsync viaHttps
        Assert.Contains("secure", (setCookies secure |> List.exactlyOne).ToLowerInvariant())
        let! plain = client.GetAsync "/set"
        Assert.DoesNotContain("secure", (setCookies plain |> List.exactlyOne).ToLowerInvariant())
    }

/// A real memory store that declares itself shared, as a Redis store is.
type SharedMemoryStore() =
    let inner = new MemoryStore() :> ISessionStore
    interface ISharedSessionStore
    interface ISessionStore with
        member _.LoadAsync(id, idle, ct) = inner.LoadAsync(id, idle, ct)
        member _.CommitAsync(id, patch, options, ct) = inner.CommitAsync(id, patch, options, ct)
        member _.DeleteAsync(id, ct) = inner.DeleteAsync(id, ct)

let private startWithKeys (persistKeys: DirectoryInfo option) (logs: LogCapture) =
    let services (services: IServiceCollection) =
        services.AddSesame(fun o -> o.Store <- SharedMemoryStore()) |> ignore
        match persistKeys with
        | Some directory -> services.AddDataProtection().PersistKeysToFileSystem directory |> ignore
        | None -> ()
    startHostWith InMemory services (runHandler (withSession >=> show)) logs

[<Fact>]
let ``a shared store without a shared key ring is warned about at startup`` () =
    task {
        let logs = new LogCapture()
        use! _host = startWithKeys None logs
        let warning = logs.Entries |> List.find (fun e -> e.EventId.Name = "DataProtectionKeysNotShared")
        Assert.Equal(LogLevel.Warning, warning.Level)
        Assert.Contains("PersistKeysTo", warning.Message)
        let quiet = new LogCapture()
        let keys = Directory.CreateTempSubdirectory "sesame-keys-"
        try
            use! _other = startWithKeys (Some keys) quiet
            Assert.DoesNotContain(quiet.Entries, fun e -> e.EventId.Name = "DataProtectionKeysNotShared")
        finally
            keys.Delete true
    }
