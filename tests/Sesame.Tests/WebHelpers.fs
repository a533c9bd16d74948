/// Test hosts, a cookie-keeping client, an observed store and a log capture for end-to-end tests.
[<AutoOpen>]
module Sesame.Tests.WebHelpers

open System
open System.Collections.Concurrent
open System.Net
open System.Net.Http
open System.Threading
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Hosting
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.TestHost
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open Sesame

/// <summary>
/// A real store wrapped to count its calls and, on demand, slow its commits down or make them
/// fail as a broken store would. It records the ids and tree patches it was given (commits and moves),
/// and passes on what the inner store reports of the sessions it ends.
/// </summary>
type ObservedStore(inner: SessionStore) as this =
    inherit SessionStore()
    let mutable loads = 0
    let mutable commits = 0
    let mutable moves = 0
    let mutable deletes = 0
    let patches = ConcurrentQueue<string * Patch>()

    do
        inner.Observer <- {
            new ISessionStoreObserver with
                member _.SessionEnded(id, meta, reason) = this.ReportEnded(id, meta, reason)
        }

    new() = ObservedStore(new MemoryStore())

    member _.Inner = inner
    member _.Loads = Volatile.Read &loads
    member _.Commits = Volatile.Read &commits
    member _.Moves = Volatile.Read &moves
    member _.Deletes = Volatile.Read &deletes
    /// The (id, tree patch) of every commit and move (the new id), in order.
    member _.Patches = List.ofSeq patches
    member val CommitDelay = TimeSpan.Zero with get, set
    member val FailCommits = false with get, set
    /// What each delete waits for before it goes on (a slow store).
    member val DeleteGate = Task.CompletedTask with get, set
    member val FailDeletes = false with get, set

    override _.IsShared = inner.IsShared

    override _.LoadAsync(id, idle, ct) =
        Interlocked.Increment &loads |> ignore
        inner.LoadAsync(id, idle, ct)

    override this.CommitAsync(id, change, options, ct) = task {
        Interlocked.Increment &commits |> ignore
        if this.CommitDelay > TimeSpan.Zero then do! Task.Delay this.CommitDelay
        if this.FailCommits then raise (SessionStoreException "The store is down (test).")
        let! result = inner.CommitAsync(id, change, options, ct)
        patches.Enqueue((id, change.Data))
        return result
    }

    override this.MoveAsync(fromId, toId, change, options, ct) = task {
        Interlocked.Increment &moves |> ignore
        if this.FailCommits then raise (SessionStoreException "The store is down (test).")
        let! result = inner.MoveAsync(fromId, toId, change, options, ct)
        patches.Enqueue((toId, change.Data))
        return result
    }

    override this.DeleteAsync(id, ct) = task {
        Interlocked.Increment &deletes |> ignore
        do! this.DeleteGate
        if this.FailDeletes then raise (SessionStoreException "The store is down (test).")
        return! inner.DeleteAsync(id, ct)
    }

    override _.ListAsync(query, ct) = inner.ListAsync(query, ct)

    /// The tree the inner store holds for a session, or None.
    member _.TreeOf(id: string) : Task<Json option> = task {
        let! loaded = inner.LoadAsync(id, TimeSpan.FromMinutes 1.0, CancellationToken.None)
        return loaded |> Option.ofObj |> Option.map _.Data
    }

/// A store the end-to-end suites run on.
type StoreKind = {
    Name: string
    /// Makes a fresh, empty store that reads the given clock (a store on a server's time ignores it).
    Create: TimeProvider -> SessionStore
    /// Whether the store's expiry follows that clock; when it does not, a test must wait in real time.
    FollowsClock: bool
}

/// A log entry captured from the app.
type LogEntry = { Level: LogLevel; EventId: EventId; Category: string; Message: string; Error: exn }

/// Captures every log entry the app writes.
type LogCapture() =
    let entries = ConcurrentQueue<LogEntry>()
    member _.Entries = List.ofSeq entries

    interface ILoggerProvider with
        member _.CreateLogger(category) = {
            new ILogger with
                member _.BeginScope(_state) = {
                    new IDisposable with
                        member _.Dispose() = ()
                }
                member _.IsEnabled(_level) = true
                member _.Log(level, eventId, state, error, formatter) =
                    entries.Enqueue { Level = level; EventId = eventId; Category = category; Message = formatter.Invoke(state, error); Error = error }
        }

        member _.Dispose() = ()

/// Runs a Giraffe-style handler as the app's terminal handler.
let runHandler (handler: HttpHandler) (app: IApplicationBuilder) =
    let func = handler (fun ctx -> Task.FromResult(Some ctx))
    app.Run(fun ctx -> func ctx :> Task)

/// Where a test app runs: in memory (TestHost), or on a real Kestrel socket on loopback.
type Server =
    | InMemory
    | Kestrel

/// Starts a test app whose services and pipeline the caller sets (Sesame's included).
let startHostWith (server: Server) (configureServices: IServiceCollection -> unit) (pipeline: IApplicationBuilder -> unit) (logs: LogCapture) : Task<IHost> =
    HostBuilder()
        .ConfigureLogging(fun logging ->
            logging.SetMinimumLevel(LogLevel.Debug) |> ignore
            logging.AddProvider logs |> ignore)
        .ConfigureWebHost(fun web ->
            match server with
            | InMemory -> web.UseTestServer() |> ignore
            | Kestrel -> web.UseKestrel().UseUrls("http://127.0.0.1:0") |> ignore
            web.ConfigureServices(configureServices).Configure(pipeline) |> ignore)
        .StartAsync()

/// Sesame's services on the given store, with the caller's options.
let private sesameOn (store: SessionStore) (configure: SesameOptions -> unit) (services: IServiceCollection) =
    services.AddRouting() |> ignore
    services.AddSesame(fun options -> configure options).AddStore(store) |> ignore

/// Starts a test app with Sesame on the given store, with options and pipeline set by the caller.
let startHostOn
    (server: Server)
    (store: SessionStore)
    (configure: SesameOptions -> unit)
    (pipeline: IApplicationBuilder -> unit)
    (logs: LogCapture)
    : Task<IHost> =
    startHostWith server (sesameOn store configure) pipeline logs

/// Starts an in-memory test app (TestHost) with Sesame whose clock (cookie tickets, absolute timeout) is the given one.
let startHostAt
    (clock: TimeProvider)
    (store: SessionStore)
    (configure: SesameOptions -> unit)
    (pipeline: IApplicationBuilder -> unit)
    (logs: LogCapture)
    : Task<IHost> =
    let services (services: IServiceCollection) =
        services.AddSingleton<TimeProvider>(clock) |> ignore
        sesameOn store configure services
    startHostWith InMemory services pipeline logs

/// Starts an in-memory test app (TestHost) with Sesame.
let startHost store configure pipeline logs = startHostOn InMemory store configure pipeline logs

/// The loopback address a Kestrel test app listens on.
let addressOf (host: IHost) =
    let addresses =
        host.Services
            .GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()
    Uri(Seq.head addresses.Addresses)

/// A real HttpClient with its own cookie container, talking to a Kestrel test app.
let kestrelClient (host: IHost) = new HttpClient(new HttpClientHandler(CookieContainer = CookieContainer(), UseCookies = true), BaseAddress = addressOf host)

/// A client that keeps the session cookie between requests, as a browser does.
type Browser(client: HttpClient, cookieName: string) =
    let mutable cookie: string option = None

    /// A browser on a test app: TestHost's client, or a plain HttpClient for Kestrel.
    new(host: IHost) =
        let client =
            match host.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>() with
            | :? TestServer as server -> server.CreateClient()
            | _ -> new HttpClient(BaseAddress = addressOf host)
        Browser(client, SesameOptions.DefaultCookieName)

    /// The session cookie's value, if the server has set one.
    member _.Cookie
        with get () = cookie
        and set value = cookie <- value

    /// Sends a request with the cookie; keeps any new cookie; gives the response and its body.
    member _.SendAsync(method: HttpMethod, url: string) : Task<HttpResponseMessage * string> = task {
        use request = new HttpRequestMessage(method, url)
        match cookie with
        | Some value -> request.Headers.Add("Cookie", $"{cookieName}={value}")
        | None -> ()
        let! response = client.SendAsync request
        let! body = response.Content.ReadAsStringAsync()
        match response.Headers.TryGetValues "Set-Cookie" with
        | true, values ->
            for header in values do
                let prefix = cookieName + "="
                if header.StartsWith prefix then
                    let value = header.Substring(prefix.Length).Split(';')[0]
                    cookie <- if value = "" then None else Some value
        | _ -> ()
        return response, body
    }

    member this.GetAsync(url: string) = this.SendAsync(HttpMethod.Get, url)

    /// The body of a GET that must succeed.
    member this.GetTextAsync(url: string) : Task<string> = task {
        let! response, body = this.GetAsync url
        if not response.IsSuccessStatusCode then failwith $"GET {url} answered {int response.StatusCode}: {body}"
        return body
    }

/// The Set-Cookie headers of a response.
let setCookies (response: HttpResponseMessage) =
    match response.Headers.TryGetValues "Set-Cookie" with
    | true, values -> List.ofSeq values
    | _ -> []
