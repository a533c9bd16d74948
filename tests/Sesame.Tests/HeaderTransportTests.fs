/// The session ticket in a header (SesameOptions.Transport, src/Sesame.Fs/SessionCookie.fs), end to end.
module Sesame.Tests.HeaderTransportTests

open System
open System.Net.Http
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.TestHost
open Expecto
open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

let private header = SesameOptions.DefaultHeaderName

let private app: HttpHandler =
    withSession
    >=> Session.handler (fun session next ctx -> task {
        let! body = task {
            match ctx.Request.Path.Value with
            | "/visit" -> return string (session |> Session.increment "visits" 1m)
            | "/show" -> return Json.serialize (Session.current session)
            | "/rotate" ->
                let! moved = Session.rotateAsync session
                return string moved
            | "/sign-in" ->
                let! result = Session.signInAsync "ada" session
                return string result
            | "/destroy" ->
                do! Session.destroyAsync session
                return "destroyed"
            | other -> return $"no route {other}"
        }
        return! text body next ctx
    })

/// An API client: keeps the ticket the server sends in the session header and sends it back; cookies it ignores
/// unless asked to keep them too.
type private ApiClient(client: HttpClient) =
    member val Token: string option = None with get, set
    member val Cookie: string option = None with get, set

    member this.SendAsync(url: string) : Task<HttpResponseMessage * string> = task {
        use request = new HttpRequestMessage(HttpMethod.Get, url)
        this.Token |> Option.iter (fun token -> request.Headers.Add(header, token))
        this.Cookie |> Option.iter (fun cookie -> request.Headers.Add("Cookie", $"{SesameOptions.DefaultCookieName}={cookie}"))
        let! response = client.SendAsync request
        let! body = response.Content.ReadAsStringAsync()
        match response.Headers.TryGetValues header with
        | true, values ->
            this.Token <-
                (match Seq.exactlyOne values with
                 | "" -> None
                 | token -> Some token)
        | _ -> ()
        return response, body
    }

let private headerOf (response: HttpResponseMessage) =
    match response.Headers.TryGetValues header with
    | true, values -> Some(Seq.exactlyOne values)
    | _ -> None

let private serveWith (transport: SessionTransport) (logs: LogCapture) = task {
    let store = ObservedStore()
    let! host = startHost store (fun options -> options.Transport <- transport) (runHandler app) logs
    return store, host
}

let private clientOf (host: Microsoft.Extensions.Hosting.IHost) = ApiClient(host.GetTestClient())

[<Tests>]
let tests =
    testList "HeaderTransport" [
        testCaseTask "a new session's ticket goes out in the header, not a cookie, and the header continues the session"
        <| fun () -> task {
            let! _, host = serveWith SessionTransport.Header (new LogCapture())
            use _ = host
            let client = clientOf host
            let! first, body = client.SendAsync "/visit"
            Expect.equal body "1" "first visit"
            Expect.isSome (headerOf first) "the ticket in the header"
            Expect.isEmpty (setCookies first) "no cookie"
            let! second, body = client.SendAsync "/visit"
            Expect.equal body "2" "the same session"
            Expect.isNone (headerOf second) "nothing to send when the session neither is created nor moves"
        }

        testCaseTask "the header carries the very ticket the cookie would: sealed under a key Data Protection protects, nothing of the session's data"
        <| fun () -> task {
            let! _, host = serveWith SessionTransport.Header (new LogCapture())
            use _ = host
            let client = clientOf host
            let! first, _ = client.SendAsync "/visit"
            let token = (headerOf first).Value
            let parts = token.Split '.'
            Expect.equal parts.Length 4 "key, id, creation time, tag"
            Expect.isTrue (parts[0].StartsWith "CfDJ8") "the seal key is a Data Protection payload"
            Expect.equal parts[1].Length 32 "the session id"
            let! _, shown = client.SendAsync "/show"
            Expect.isFalse (token.Contains "visits") "the ticket says nothing of the session"
            Expect.equal shown """{"visits":1}""" "the session"
        }

        testCaseTask "rotation and sign-in send the new ticket; the old one no longer opens the session"
        <| fun () -> task {
            let! _, host = serveWith SessionTransport.Header (new LogCapture())
            use _ = host
            let client = clientOf host
            let! _ = client.SendAsync "/visit"
            let before = client.Token
            let! rotated, body = client.SendAsync "/rotate"
            Expect.equal body "True" "rotated"
            Expect.isSome (headerOf rotated) "the new ticket"
            Expect.notEqual client.Token before "a different ticket"
            let! signedIn, body = client.SendAsync "/sign-in"
            Expect.equal body "SignedIn" "signed in"
            Expect.isSome (headerOf signedIn) "the ticket of the signed-in session"
            let! _, body = client.SendAsync "/visit"
            Expect.equal body "2" "the session went on under the new ticket"
            let stale = ApiClient(host.GetTestClient(), Token = before)
            let! _, body = stale.SendAsync "/show"
            Expect.equal body "{}" "the old ticket names no session"
        }

        testCaseTask "destroying the session sends the header blank"
        <| fun () -> task {
            let! _, host = serveWith SessionTransport.Header (new LogCapture())
            use _ = host
            let client = clientOf host
            let! _ = client.SendAsync "/visit"
            let! destroyed, _ = client.SendAsync "/destroy"
            Expect.equal (headerOf destroyed) (Some "") "a blank header tells the client to forget its ticket"
            Expect.isNone client.Token "the client forgot it"
        }

        testCaseTask "a tampered or foreign header value is no session: a new one starts, and the reason is logged"
        <| fun () -> task {
            let logs = new LogCapture()
            let! _, host = serveWith SessionTransport.Header logs
            use _ = host
            for hostile in [ "not a ticket"; String('A', 5000); "CfDJ8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" ] do
                let client = ApiClient(host.GetTestClient(), Token = Some hostile)
                let! response, body = client.SendAsync "/visit"
                Expect.equal body "1" $"a fresh session for {hostile.Substring(0, min 20 hostile.Length)}"
                Expect.isSome (headerOf response) "with a ticket of its own"
            let rejected = logs.Entries |> List.filter (fun e -> e.EventId.Id = 1 && e.Message.Contains header)
            Expect.equal rejected.Length 3 "each rejection logged, naming the header"
        }

        testCaseTask "with the header transport only, a session cookie is not read"
        <| fun () -> task {
            let! _, host = serveWith SessionTransport.Header (new LogCapture())
            use _ = host
            let client = clientOf host
            let! _ = client.SendAsync "/visit"
            let cookieOnly = ApiClient(host.GetTestClient(), Cookie = client.Token)
            let! _, body = cookieOnly.SendAsync "/show"
            Expect.equal body "{}" "the ticket sent as a cookie opens nothing"
        }

        testCaseTask "with both transports, responses carry both, and a request's header wins over its cookie"
        <| fun () -> task {
            let! _, host = serveWith SessionTransport.CookieAndHeader (new LogCapture())
            use _ = host
            let browser = Browser host
            let! first, _ = browser.GetAsync "/visit"
            Expect.isSome browser.Cookie "a cookie for browsers"
            Expect.equal (headerOf first) browser.Cookie "and the same ticket in the header"
            let! _, body = browser.GetAsync "/visit"
            Expect.equal body "2" "the cookie alone continues the session"
            let other = clientOf host
            let! _ = other.SendAsync "/visit"
            let both = ApiClient(host.GetTestClient(), Token = other.Token, Cookie = browser.Cookie)
            let! _, body = both.SendAsync "/show"
            Expect.equal body """{"visits":1}""" "the header's session, not the cookie's"
        }

        testCaseTask "responses of requests that used a header session vary by that header"
        <| fun () -> task {
            let! _, host = serveWith SessionTransport.Header (new LogCapture())
            use _ = host
            let client = clientOf host
            let! response, _ = client.SendAsync "/visit"
            let vary = response.Headers.Vary |> List.ofSeq
            Expect.contains vary header "Vary names the session header"
            Expect.isFalse (vary |> List.contains "Cookie") "not the cookie, which plays no part"
        }

        testCaseTask "a transport that names neither cookie nor header, or an empty header name, fails at startup"
        <| fun () -> task {
            let store = ObservedStore()
            let! e =
                throwsAsync<InvalidOperationException>(fun () ->
                    startHost store (fun o -> o.Transport <- enum 0) (fun app -> app.UseSesame() |> ignore) (new LogCapture()) :> Task)
            Expect.stringContains e.Message "Transport" "names the option"
            let! e =
                throwsAsync<InvalidOperationException>(fun () ->
                    startHost
                        store
                        (fun o ->
                            o.Transport <- SessionTransport.Header
                            o.HeaderName <- " ")
                        (fun app -> app.UseSesame() |> ignore)
                        (new LogCapture())
                    :> Task)
            Expect.stringContains e.Message "HeaderName" "names the option"
        }

        testCaseTask "an idle or absolute timeout of zero or less fails at startup, where it would end every session as it is stored"
        <| fun () -> task {
            let store = ObservedStore()
            let fails (configure: SesameOptions -> unit) (option: string) = task {
                let! e =
                    throwsAsync<InvalidOperationException>(fun () ->
                        startHost store configure (fun app -> app.UseSesame() |> ignore) (new LogCapture()) :> Task)
                Expect.stringContains e.Message option "names the option"
            }
            do! fails (fun o -> o.IdleTimeout <- Threading.Timeout.InfiniteTimeSpan) "IdleTimeout"
            do! fails (fun o -> o.IdleTimeout <- TimeSpan.Zero) "IdleTimeout"
            do! fails (fun o -> o.AbsoluteTimeout <- Nullable TimeSpan.Zero) "AbsoluteTimeout"
            // Never ending for being idle: the longest timeout there is, as the message says.
            use! host =
                startHost
                    store
                    (fun o ->
                        o.IdleTimeout <- TimeSpan.MaxValue
                        o.Transport <- SessionTransport.Header)
                    (runHandler app)
                    (new LogCapture())
            let client = clientOf host
            let! _, first = client.SendAsync "/visit"
            let! _, second = client.SendAsync "/visit"
            Expect.equal [ first; second ] [ "1"; "2" ] "a session kept under TimeSpan.MaxValue"
        }
    ]
