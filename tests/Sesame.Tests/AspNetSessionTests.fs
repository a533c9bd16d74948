/// ASP.NET Core's ISession over Sesame (src/Sesame.Fs/AspNetSession.fs): how bytes are kept in the tree, and when the
/// session is loaded for ISession's synchronous members. (The behaviours ASP.NET Core documents, TempData and the
/// lost-update comparison run in the C# tests, where ISession's users are.)
module Sesame.Tests.AspNetSessionTests

open System
open System.Text
open System.Threading
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.DependencyInjection
open Expecto
open FsCheck
open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

/// A store across the network, as far as its callers can tell: its loads never complete at once.
type private FarStore(shared: bool, gate: Task) =
    inherit SessionStore()
    let inner = new MemoryStore()
    let mutable loads = 0
    new(shared) = new FarStore(shared, Task.CompletedTask)
    member _.Loads = Volatile.Read &loads
    override _.IsShared = shared
    /// Never completes synchronously, and not before the gate opens (a test that must see a load in flight holds it).
    override _.LoadAsync(id, idle, ct) = task {
        Interlocked.Increment &loads |> ignore
        do! Task.Yield()
        do! gate
        return! inner.LoadAsync(id, idle, ct)
    }
    override _.CommitAsync(id, change, options, ct) = inner.CommitAsync(id, change, options, ct)
    override _.MoveAsync(fromId, toId, change, options, ct) = inner.MoveAsync(fromId, toId, change, options, ct)
    override _.DeleteAsync(id, ct) = inner.DeleteAsync(id, ct)
    override _.ListAsync(query, ct) = inner.ListAsync(query, ct)

/// ISession as ASP.NET Core apps use it, through its extension methods: `/set?key=..&value=..`, `/get?key=..`,
/// `/load-then-get?key=..` (awaits LoadAsync first), `/plain` (no session use).
let private isessionApp: HttpHandler =
    fun next ctx -> task {
        let key = string ctx.Request.Query["key"]
        let! body = task {
            match ctx.Request.Path.Value with
            | "/set" ->
                ctx.Session.SetString(key, string ctx.Request.Query["value"])
                return "set"
            | "/get" ->
                return
                    (match ctx.Session.GetString key with
                     | null -> "(none)"
                     | value -> value)
            | "/load-then-get" ->
                do! ctx.Session.LoadAsync()
                return
                    (match ctx.Session.GetString key with
                     | null -> "(none)"
                     | value -> value)
            | "/plain" -> return "plain"
            | other -> return $"no route {other}"
        }
        return! text body next ctx
    }

let private serveCompatible (store: SessionStore) (preload: SessionPreload option) (handler: HttpHandler) =
    let services (services: IServiceCollection) =
        let sesame = services.AddSesame().AddStore(store)
        match preload with
        | Some preload -> sesame.AddSessionCompatibility(fun o -> o.Preload <- preload) |> ignore
        | None -> sesame.AddSessionCompatibility() |> ignore
    let pipeline (app: IApplicationBuilder) =
        app.UseSesame() |> ignore
        runHandler handler app
    startHostWith InMemory services pipeline (new LogCapture())

let private bytes (text: string) = Encoding.UTF8.GetBytes text

[<Tests>]
let tests =
    testList "AspNetSession" [
        testList "SessionBytes" [
            testProperty "every byte array reads back exactly, through the tree's JSON text"
            <| fun (value: byte[]) ->
                let value = if isNull value then [||] else value
                let stored = Json.parse (Json.serialize (SessionBytes.toJson value))
                SessionBytes.ofJson stored = value

            testProperty "every string SetString writes reads back exactly"
            <| fun (NonNull(text: string)) ->
                // SetString encodes with UTF-8, which turns a lone surrogate into U+FFFD before Sesame sees the bytes.
                let written = Encoding.UTF8.GetBytes text
                Encoding.UTF8.GetString(SessionBytes.ofJson (SessionBytes.toJson written)) = Encoding.UTF8.GetString written

            testCase "text is kept as a JSON string other readers of the tree read as it is"
            <| fun () ->
                Expect.equal (SessionBytes.toJson (bytes "Grüße, 世界 👋\n\ttab")) (Json.string "Grüße, 世界 👋\n\ttab") "UTF-8 text"
                Expect.equal (SessionBytes.toJson [||]) (Json.string "") "no bytes: the empty string"
                Expect.equal (SessionBytes.toJson (bytes """{"a":[1,2]}""")) (Json.string """{"a":[1,2]}""") "JSON text stays text"

            testCase "bytes that are not text are base64 in a tagged object"
            <| fun () ->
                // What SetInt32(key, 5) writes: four big-endian bytes.
                Expect.equal (Json.serialize (SessionBytes.toJson [| 0uy; 0uy; 0uy; 5uy |])) """{"$base64":"AAAABQ=="}""" "SetInt32's bytes"
                Expect.equal (Json.serialize (SessionBytes.toJson [| 0xC3uy; 0x28uy |])) """{"$base64":"wyg="}""" "invalid UTF-8"
                Expect.equal (Json.serialize (SessionBytes.toJson (bytes "bell\a"))) """{"$base64":"YmVsbAc="}""" "a control character"

            testCase "values Sesame's own API set read as their JSON text"
            <| fun () ->
                Expect.equal (SessionBytes.ofJson (Json.int64 42L)) (bytes "42") "a number"
                Expect.equal (SessionBytes.ofJson (Json.parse """{"qty":2}""")) (bytes """{"qty":2}""") "an object"
                Expect.equal
                    (SessionBytes.ofJson (Json.parse """{"$base64":"not base64!"}"""))
                    (bytes """{"$base64":"not base64!"}""")
                    "a tag that holds no base64"
        ]

        testCaseTask "an F# handler under withSession gets HttpContext.Session over the same tree"
        <| fun () -> task {
            let store = ObservedStore()
            let services (services: IServiceCollection) = services.AddSesame().AddStore(store).AddSessionCompatibility() |> ignore
            let handler: HttpHandler =
                withSession
                >=> Session.handler (fun session next ctx ->
                    match ctx.Request.Path.Value with
                    | "/set" ->
                        ctx.Session.SetString("name", "Ada")
                        ctx.Session.SetInt32("year", 1815)
                        text "set" next ctx
                    | _ ->
                        let name = session |> Session.tryGet<string> "name"
                        let year = ctx.Session.GetInt32 "year"
                        let tree = Json.serialize (Session.current session)
                        text $"{name}|{year}|{tree}" next ctx)
            use! host = startHostWith InMemory services (runHandler handler) (new LogCapture())
            let browser = Browser host
            let! _ = browser.GetTextAsync "/set"
            let! shown = browser.GetTextAsync "/show"
            Expect.equal shown """Some(Ada)|1815|{"name":"Ada","year":{"$base64":"AAAHFw=="}}""" "one tree, two APIs"
        }

        testCaseTask "with a shared store that answers asynchronously, ISession works unchanged: the session was loaded before the handler"
        <| fun () -> task {
            let store = new FarStore(true)
            use! host = serveCompatible store None isessionApp
            let browser = Browser host
            let! _ = browser.GetTextAsync "/set?key=name&value=Ada"
            let! name = browser.GetTextAsync "/get?key=name"
            Expect.equal name "Ada" "read synchronously, with no LoadAsync in the handler"
        }

        testCaseTask "the first ISession use on a session still loading throws an error that names the fix"
        <| fun () -> task {
            // The load is held until the handler has tried: on a busy machine a yielded load could finish first. (At
            // most 10 s, so that a GetString that blocked on the load would fail this test rather than hang it.)
            let loadMayFinish = TaskCompletionSource()
            let store = new FarStore(true, Task.WhenAny(loadMayFinish.Task, Task.Delay(TimeSpan.FromSeconds 10.0)))
            let mutable error: exn = null
            let handler: HttpHandler =
                fun next ctx ->
                    match ctx.Request.Path.Value with
                    | "/set" ->
                        ctx.Session.SetString("name", "Ada")
                        text "set" next ctx
                    | "/load-then-get" -> task {
                        do! ctx.Session.LoadAsync()
                        return! text (ctx.Session.GetString "name") next ctx
                      }
                    | _ ->
                        try
                            ctx.Session.GetString "name" |> ignore
                        with e ->
                            error <- e
                        loadMayFinish.TrySetResult() |> ignore
                        text "tried" next ctx
            use! host = serveCompatible store (Some SessionPreload.Never) handler
            let browser = Browser host
            let! _ = browser.GetTextAsync "/set"
            let! _ = browser.GetTextAsync "/get"
            Expect.isTrue (error :? InvalidOperationException) $"an InvalidOperationException, not {error}"
            Expect.stringContains error.Message "await HttpContext.Session.LoadAsync()" "names the fix"
            Expect.stringContains error.Message "SessionPreload.Always" "and the option"
            let! loaded = browser.GetTextAsync "/load-then-get"
            Expect.equal loaded "Ada" "after await LoadAsync, it works"
        }

        testCaseTask "the preload loads only requests that carry a ticket, and adds no cache headers to those that leave the session alone"
        <| fun () -> task {
            let store = new FarStore(true)
            use! host = serveCompatible store None isessionApp
            let browser = Browser host
            let! anonymous, _ = browser.GetAsync "/plain"
            Expect.equal store.Loads 0 "no ticket: nothing to load"
            Expect.isFalse (anonymous.Headers.CacheControl <> null && anonymous.Headers.CacheControl.NoStore) "no no-store"
            let! _ = browser.GetTextAsync "/set?key=name&value=Ada"
            let loads = store.Loads
            let! plain, _ = browser.GetAsync "/plain"
            Expect.equal store.Loads (loads + 1) "a request with a ticket is loaded before its handler"
            Expect.isFalse (plain.Headers.CacheControl <> null && plain.Headers.CacheControl.NoStore) "but it did not use the session: cacheable as before"
        }

        testCaseTask "with an in-process store nothing is preloaded: a request that never uses the session does no store I/O"
        <| fun () -> task {
            let store = ObservedStore()
            use! host = serveCompatible store None isessionApp
            let browser = Browser host
            let! _ = browser.GetTextAsync "/set?key=name&value=Ada"
            let loads = store.Loads
            let! _ = browser.GetTextAsync "/plain"
            Expect.equal store.Loads loads "lazy, as Sesame always is"
            let! name = browser.GetTextAsync "/get?key=name"
            Expect.equal name "Ada" "and ISession loads it on first use, without waiting: the store answers at once"
        }
    ]
