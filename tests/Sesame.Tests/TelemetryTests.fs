/// Sesame's meter, spans, lifecycle events and debug logs, end to end through the real pipeline on every store kind.
module Sesame.Tests.TelemetryTests

open System
open System.Collections.Concurrent
open System.Diagnostics
open System.Diagnostics.Metrics
open System.Net
open System.Threading
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Diagnostics.Metrics.Testing
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open Microsoft.Extensions.Time.Testing
open Expecto
open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

let private counters = [
    "sesame.sessions.created"
    "sesame.sessions.rotated"
    "sesame.sessions.signed_in"
    "sesame.sessions.destroyed"
    "sesame.sessions.expired"
    "sesame.sessions.evicted"
]

let private durations = [ "sesame.session.load.duration"; "sesame.session.commit.duration" ]

let private sizes = [ "sesame.session.patch.size"; "sesame.session.patch.updates"; "sesame.session.size" ]

/// The tags that tell measurements of one instrument apart (the store's is checked on its own).
let private distinguishing = [ "sesame.operation"; "sesame.outcome"; "sesame.eviction.reason"; "error.type" ]

let private keyOf (name: string) (tags: Collections.Generic.IReadOnlyDictionary<string, obj>) =
    let parts = [
        for tag in distinguishing do
            match tags.TryGetValue tag with
            | true, value -> $"{tag}={value}"
            | _ -> ()
    ]
    String.concat " " (name :: parts)

/// Every measurement the Sesame meter of one app made (through that app's IMeterFactory: other apps' are not seen).
type Measurements(factory: IMeterFactory) =
    let counted = [ for name in counters -> name, new MetricCollector<int64>(factory, SesameTelemetry.MeterName, name) ]
    let timed = [ for name in durations -> name, new MetricCollector<float>(factory, SesameTelemetry.MeterName, name) ]
    let sized = [ for name in sizes -> name, new MetricCollector<int64>(factory, SesameTelemetry.MeterName, name) ]

    /// What was measured, one line per instrument and distinguishing tags: the sum of a counter, the number of
    /// measurements of a histogram. Nothing else was measured.
    member _.Summary() : (string * int64) list =
        [
            for name, collector in counted do
                for m in collector.GetMeasurementSnapshot() -> keyOf name m.Tags, m.Value
            for name, collector in timed do
                for m in collector.GetMeasurementSnapshot() -> keyOf name m.Tags, 1L
            for name, collector in sized do
                for m in collector.GetMeasurementSnapshot() -> keyOf name m.Tags, 1L
        ]
        |> List.groupBy fst
        |> List.map (fun (key, values) -> key, List.sumBy snd values)
        |> List.sort

    /// The store tags of every measurement.
    member _.Stores() : string list =
        [
            for _, c in counted do
                for m in c.GetMeasurementSnapshot() -> string m.Tags["sesame.store"]
            for _, c in timed do
                for m in c.GetMeasurementSnapshot() -> string m.Tags["sesame.store"]
            for _, c in sized do
                for m in c.GetMeasurementSnapshot() -> string m.Tags["sesame.store"]
        ]
        |> List.distinct

    /// The values one size instrument recorded.
    member _.Sizes(name: string) : int64 list =
        let _, collector = sized |> List.find (fun (n, _) -> n = name)
        [ for m in collector.GetMeasurementSnapshot() -> m.Value ]

    /// The values one duration instrument recorded.
    member _.Durations(name: string) : float list =
        let _, collector = timed |> List.find (fun (n, _) -> n = name)
        [ for m in collector.GetMeasurementSnapshot() -> m.Value ]

    /// Forgets what was measured so far.
    member _.Clear() =
        for _, c in counted do
            c.Clear()
        for _, c in timed do
            c.Clear()
        for _, c in sized do
            c.Clear()

    interface IDisposable with
        member _.Dispose() =
            for _, c in counted do
                c.Dispose()
            for _, c in timed do
                c.Dispose()
            for _, c in sized do
                c.Dispose()

/// The expected summary, in the order Summary gives it.
let private expecting (lines: (string * int64) list) = List.sort lines

/// Events as the app saw them, by name, in order (a derived class: the overridable methods are the hook here).
type RecordingEvents() =
    inherit SesameEvents()
    let seen = ConcurrentQueue<string * SessionEventContext>()
    member _.Seen = List.ofSeq seen
    member _.Names = [ for name, _ in seen -> name ]
    override _.Created context =
        seen.Enqueue("created", context)
        Task.CompletedTask
    override _.Rotated context =
        seen.Enqueue("rotated", context)
        Task.CompletedTask
    override _.SignedIn context =
        seen.Enqueue("signed in", context)
        Task.CompletedTask
    override _.Destroyed context =
        seen.Enqueue("destroyed", context)
        Task.CompletedTask
    override _.Expired context =
        seen.Enqueue("expired", context)
        Task.CompletedTask
    override _.Evicted context =
        seen.Enqueue("evicted", context)
        Task.CompletedTask
    override _.CommitFailed context =
        seen.Enqueue("commit failed", context)
        Task.CompletedTask

    /// Waits (up to 10 s) until the condition holds: expiry and eviction events run off the store's thread, after the
    /// store's step that raised them.
    member _.WaitUntil(condition: unit -> bool) : Task = eventually condition

    /// Waits (up to 10 s) until there are <c>count</c> events of that name.
    member this.WaitFor(name: string, count: int) : Task = this.WaitUntil(fun () -> (seen |> Seq.filter (fun (n, _) -> n = name) |> Seq.length) >= count)

    /// The one event of that name, as its context type.
    member this.Single<'context when 'context :> SessionEventContext>(name: string) : 'context =
        match
            [
                for n, c in seen do
                    if n = name then c
            ]
        with
        | [ context ] -> isType<'context> context
        | other -> failtestf "Expected one '%s' event, got %d (all: %A)" name other.Length this.Names

/// A store that fails on demand, as an unreachable one does.
type FailingStore(inner: SessionStore) =
    inherit SessionStore()
    member val FailLoads = false with get, set
    member val FailCommits = false with get, set
    override _.ActiveSessionCount = inner.ActiveSessionCount
    override this.LoadAsync(id, idle, ct) =
        if this.FailLoads then Task.FromException<StoredSession>(SessionStoreException "The store is down (test).") else inner.LoadAsync(id, idle, ct)
    override this.CommitAsync(id, change, options, ct) =
        if this.FailCommits then
            Task.FromException<CommitResult>(SessionStoreException "The store is down (test).")
        else
            inner.CommitAsync(id, change, options, ct)
    override _.MoveAsync(fromId, toId, change, options, ct) = inner.MoveAsync(fromId, toId, change, options, ct)
    override _.DeleteAsync(id, ct) = inner.DeleteAsync(id, ct)
    override _.ListAsync(query, ct) = inner.ListAsync(query, ct)

/// A test app: its host, the store as the app was given it, its clock, meter, events, logs and spans.
type TelemetryApp = {
    Host: IHost
    Store: SessionStore
    Clock: FakeTimeProvider
    Meters: Measurements
    Events: RecordingEvents
    Logs: LogCapture
    /// The name of the activity source of the app's own request spans: Sesame's spans of its requests are their children.
    RequestSource: string
} with

    member this.Browser() = Browser this.Host

    interface IDisposable with
        member this.Dispose() =
            (this.Meters :> IDisposable).Dispose()
            this.Host.Dispose()

/// Handlers for every lifecycle path.
let private routes (rawStore: unit -> SessionStore) =
    withSession
    >=> choose [
        route "/bump" >=> Session.handler (fun s -> text (string (s |> Session.increment "times" 1m)))
        route "/read" >=> Session.handler (fun s -> text (string (s |> Session.tryGet<int> "times")))
        route "/rotate" >=> Session.rotate >=> text "rotated"
        route "/signin"
        >=> Session.handler (fun s ->
            fun next ctx -> task {
                let! _ = s |> Session.signInAsync "ada"
                return! text "in" next ctx
            })
        route "/destroy" >=> Session.destroy >=> text "out"
        route "/big"
        >=> Session.handler (fun s ->
            s |> Session.set "big" (String('x', 500))
            text "big")
        route "/object"
        >=> Session.handler (fun s ->
            s |> Session.set "a" {| x = 1 |}
            text "object")
        // A concurrent request makes "a" a number after this one loaded it: this one's change under "a" no longer fits.
        route "/conflict"
        >=> Session.handler (fun s ->
            fun next ctx -> task {
                let change = SessionChange(Patch.fold [ Update.Set(path "a", Json.int64 5L) ])
                let options = { IdleTimeout = TimeSpan.FromMinutes 20.0; MustExist = true; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }
                let! _ = rawStore().CommitAsync(s.Id, change, options, CancellationToken.None)
                s |> Session.set "a.y" 1
                return! text "conflict" next ctx
            })
    ]

/// Starts an app on a fresh store of the kind (wrapped by `wrap`), with the options `configure` sets, on the server
/// given (Kestrel for a request that fails: it answers 500 where TestHost throws to the client).
let private startAppOn (server: Server) (kind: StoreKind) (wrap: SessionStore -> SessionStore) (configure: SesameOptions -> unit) : Task<TelemetryApp> = task {
    let clock = FakeTimeProvider(DateTimeOffset.UtcNow)
    let store = wrap (kind.Create clock)
    let events = RecordingEvents()
    let logs = new LogCapture()
    let requestSource = $"Sesame.Tests.{Guid.NewGuid():N}"
    let spans = new ActivitySource(requestSource)
    let pipeline (app: IApplicationBuilder) =
        app.Use(fun (ctx: HttpContext) (next: RequestDelegate) ->
            task {
                use _request = spans.StartActivity "test request"
                try
                    do! next.Invoke ctx
                with _ when not ctx.Response.HasStarted ->
                    ctx.Response.StatusCode <- 500
            }
            :> Task)
        |> ignore
        runHandler (routes (fun () -> store)) app
    let configureAll (options: SesameOptions) =
        options.Events <- events
        configure options
    let services (services: IServiceCollection) =
        services.AddSingleton<TimeProvider>(clock) |> ignore
        services.AddSesame(fun options -> configureAll options).AddStore(store) |> ignore
    let! host = startHostWith server services pipeline logs
    let meters = new Measurements(host.Services.GetRequiredService<IMeterFactory>())
    return { Host = host; Store = store; Clock = clock; Meters = meters; Events = events; Logs = logs; RequestSource = requestSource }
}

/// Starts an app in memory (TestHost).
let private startApp kind wrap configure = startAppOn InMemory kind wrap configure

let private noOptions (_: SesameOptions) = ()

let private asIs (store: SessionStore) = store

/// The id of the session the app created (from the created event).
let private createdId (app: TelemetryApp) = (app.Events.Single<SessionCreatedContext> "created").SessionId

/// Runs a request that must succeed.
let private get (browser: Browser) (url: string) : Task = task {
    let! _ = browser.GetTextAsync url
    return ()
}

let private sizeOf (text: string) = JsonSize.utf8Length (json text)

let private storeTests (kind: StoreKind) =
    testList kind.Name [
        testCaseTask "a new visitor's first change is one created session and one commit"
        <| fun () -> task {
            use! app = startApp kind asIs noOptions
            do! get (app.Browser()) "/bump"
            Expect.equal
                (app.Meters.Summary())
                (expecting [
                    "sesame.sessions.created", 1L
                    "sesame.session.commit.duration sesame.operation=commit sesame.outcome=committed", 1L
                    "sesame.session.patch.size sesame.operation=commit", 1L
                    "sesame.session.patch.updates sesame.operation=commit", 1L
                ])
                "measurements"
            Expect.equal (app.Meters.Stores()) [ kind.Name ] "every measurement names the store"
            // One increment, and the creation time beside the tree.
            Expect.equal (app.Meters.Sizes "sesame.session.patch.updates") [ 2L ] "updates in the commit"
            Expect.isGreaterThan (app.Meters.Sizes "sesame.session.patch.size" |> List.exactlyOne) 0L "patch bytes"
            Expect.isTrue (app.Meters.Durations "sesame.session.commit.duration" |> List.forall (fun s -> s >= 0.0)) "durations in seconds, not negative"
            Expect.equal app.Events.Names [ "created" ] "events"
            let created = app.Events.Single<SessionCreatedContext> "created"
            Expect.isNull created.UserId "an anonymous session"
            Expect.equal created.Store kind.Name "the event names the store"
            Expect.equal created.Handle (SessionSummary.HandleOf created.SessionId) "the handle is the id's"
        }

        testCaseTask "a request that only reads its session is one load, with the session's size"
        <| fun () -> task {
            use! app = startApp kind asIs noOptions
            let browser = app.Browser()
            do! get browser "/bump"
            app.Meters.Clear()
            do! get browser "/read"
            Expect.equal
                (app.Meters.Summary())
                (expecting [ "sesame.session.load.duration sesame.outcome=found", 1L; "sesame.session.size", 1L ])
                "measurements"
            Expect.equal (app.Meters.Sizes "sesame.session.size") [ sizeOf """{"times":1}""" ] "the loaded tree's bytes"
            Expect.equal app.Events.Names [ "created" ] "no new event"
        }

        testCaseTask "a returning visitor's change is one load and one commit, and creates nothing"
        <| fun () -> task {
            use! app = startApp kind asIs noOptions
            let browser = app.Browser()
            do! get browser "/bump"
            app.Meters.Clear()
            do! get browser "/bump"
            Expect.equal
                (app.Meters.Summary())
                (expecting [
                    "sesame.session.load.duration sesame.outcome=found", 1L
                    "sesame.session.size", 1L
                    "sesame.session.commit.duration sesame.operation=commit sesame.outcome=committed", 1L
                    "sesame.session.patch.size sesame.operation=commit", 1L
                    "sesame.session.patch.updates sesame.operation=commit", 1L
                ])
                "measurements"
            Expect.equal (app.Meters.Sizes "sesame.session.patch.updates") [ 1L ] "one increment"
            Expect.equal
                (app.Meters.Sizes "sesame.session.patch.size")
                [ int64 (Patch.toUtf8 (Patch.fold [ Update.increment (path "times") 1m ])).Length ]
                "the patch's bytes"
        }

        testCaseTask "a rotation is one load, one move and one rotated session"
        <| fun () -> task {
            use! app = startApp kind asIs noOptions
            let browser = app.Browser()
            do! get browser "/bump"
            app.Meters.Clear()
            do! get browser "/rotate"
            Expect.equal
                (app.Meters.Summary())
                (expecting [
                    "sesame.session.load.duration sesame.outcome=found", 1L
                    "sesame.session.size", 1L
                    "sesame.session.commit.duration sesame.operation=move sesame.outcome=committed", 1L
                    "sesame.session.patch.size sesame.operation=move", 1L
                    "sesame.session.patch.updates sesame.operation=move", 1L
                    "sesame.sessions.rotated", 1L
                ])
                "measurements"
            Expect.equal app.Events.Names [ "created"; "rotated" ] "events"
            let rotated = app.Events.Single<SessionRotatedContext> "rotated"
            Expect.equal rotated.PreviousSessionId (createdId app) "from the session's first id"
            Expect.notEqual rotated.SessionId rotated.PreviousSessionId "to a new id"
        }

        testCaseTask "a sign-in of a stored session is one load, one move and one signed-in session, not a rotation"
        <| fun () -> task {
            use! app = startApp kind asIs noOptions
            let browser = app.Browser()
            do! get browser "/bump"
            app.Meters.Clear()
            do! get browser "/signin"
            Expect.equal
                (app.Meters.Summary())
                (expecting [
                    "sesame.session.load.duration sesame.outcome=found", 1L
                    "sesame.session.size", 1L
                    "sesame.session.commit.duration sesame.operation=move sesame.outcome=committed", 1L
                    "sesame.session.patch.size sesame.operation=move", 1L
                    "sesame.session.patch.updates sesame.operation=move", 1L
                    "sesame.sessions.signed_in", 1L
                ])
                "measurements"
            Expect.equal app.Events.Names [ "created"; "signed in" ] "events"
            let signedIn = app.Events.Single<SessionSignedInContext> "signed in"
            Expect.equal signedIn.UserId "ada" "the user"
            Expect.equal signedIn.PreviousSessionId (createdId app) "from the anonymous session"
        }

        testCaseTask "a new visitor's sign-in creates the session and signs it in, in one move"
        <| fun () -> task {
            use! app = startApp kind asIs noOptions
            do! get (app.Browser()) "/signin"
            Expect.equal
                (app.Meters.Summary())
                (expecting [
                    "sesame.session.commit.duration sesame.operation=move sesame.outcome=committed", 1L
                    "sesame.session.patch.size sesame.operation=move", 1L
                    "sesame.session.patch.updates sesame.operation=move", 1L
                    "sesame.sessions.created", 1L
                    "sesame.sessions.signed_in", 1L
                ])
                "measurements"
            Expect.equal app.Events.Names [ "created"; "signed in" ] "created first, then signed in"
            let created = app.Events.Single<SessionCreatedContext> "created"
            let signedIn = app.Events.Single<SessionSignedInContext> "signed in"
            Expect.equal created.UserId "ada" "created bound"
            Expect.isNull signedIn.PreviousSessionId "it had no id before"
            Expect.equal signedIn.SessionId created.SessionId "one session"
        }

        testCaseTask "a destroy is one delete and one destroyed session: it loads nothing"
        <| fun () -> task {
            use! app = startApp kind asIs noOptions
            let browser = app.Browser()
            do! get browser "/bump"
            app.Meters.Clear()
            do! get browser "/destroy"
            Expect.equal
                (app.Meters.Summary())
                (expecting [ "sesame.session.commit.duration sesame.operation=delete sesame.outcome=committed", 1L; "sesame.sessions.destroyed", 1L ])
                "measurements"
            Expect.equal (app.Events.Single<SessionDestroyedContext> "destroyed").SessionId (createdId app) "the destroyed session"
        }

        testCaseTask "a failing store's commit is one failed commit, with its error type, and a commit-failed event"
        <| fun () -> task {
            use! app = startAppOn Kestrel kind (fun store -> FailingStore(store, FailCommits = true)) noOptions
            let! response, _ = app.Browser().GetAsync "/bump"
            Expect.equal response.StatusCode HttpStatusCode.InternalServerError "the request fails"
            Expect.equal
                (app.Meters.Summary())
                (expecting [ "sesame.session.commit.duration sesame.operation=commit sesame.outcome=failed error.type=Sesame.SessionStoreException", 1L ])
                "measurements"
            Expect.equal (app.Meters.Stores()) [ "failing" ] "the app's store, by its type"
            Expect.equal app.Events.Names [ "commit failed" ] "events"
            isType<SessionStoreException> (app.Events.Single<SessionCommitFailedContext> "commit failed").Exception |> ignore
        }

        testCaseTask "a change that no longer fits the stored session is one conflicting commit"
        <| fun () -> task {
            use! app = startAppOn Kestrel kind asIs noOptions
            let browser = app.Browser()
            do! get browser "/object"
            app.Meters.Clear()
            let! response, _ = browser.GetAsync "/conflict"
            Expect.equal response.StatusCode HttpStatusCode.InternalServerError "the request fails"
            Expect.equal
                (app.Meters.Summary())
                (expecting [
                    "sesame.session.load.duration sesame.outcome=found", 1L
                    "sesame.session.size", 1L
                    "sesame.session.commit.duration sesame.operation=commit sesame.outcome=conflict error.type=Sesame.PathConflictException", 1L
                ])
                "measurements"
            isType<PathConflictException> (app.Events.Single<SessionCommitFailedContext> "commit failed").Exception |> ignore
        }

        testCaseTask "a change that would make the session too large is one too-large commit"
        <| fun () -> task {
            use! app = startAppOn Kestrel kind asIs (fun options -> options.MaxSessionBytes <- 100)
            let! response, _ = app.Browser().GetAsync "/big"
            Expect.equal response.StatusCode HttpStatusCode.InternalServerError "the request fails"
            Expect.equal
                (app.Meters.Summary())
                (expecting [ "sesame.session.commit.duration sesame.operation=commit sesame.outcome=too_large error.type=Sesame.SessionTooLargeException", 1L ])
                "measurements"
            isType<SessionTooLargeException> (app.Events.Single<SessionCommitFailedContext> "commit failed").Exception |> ignore
        }

        testCaseTask "a failed load is measured, traced as failed and logged as SessionLoadFailed"
        <| fun () -> task {
            use! app = startAppOn Kestrel kind (fun store -> FailingStore(store)) noOptions
            let failing = app.Store :?> FailingStore
            let browser = app.Browser()
            do! get browser "/bump"
            app.Meters.Clear()
            failing.FailLoads <- true
            let! response, _ = browser.GetAsync "/read"
            Expect.equal response.StatusCode HttpStatusCode.InternalServerError "the request fails"
            Expect.equal
                (app.Meters.Summary())
                (expecting [ "sesame.session.load.duration sesame.outcome=failed error.type=Sesame.SessionStoreException", 1L ])
                "measurements"
            let logged = app.Logs.Entries |> List.filter (fun e -> e.EventId.Id = 7)
            Expect.equal (logged |> List.map _.EventId.Name) [ "SessionLoadFailed" ] "logged once, as event 7"
            Expect.equal (single logged).Level LogLevel.Error "an error"
            isType<SessionStoreException> (single logged).Error |> ignore
        }

        testCaseTask "an expiry is counted and raised no later than one sweep interval after the session expired"
        <| fun () -> task {
            use! app = startApp kind asIs noOptions
            do! get (app.Browser()) "/bump"
            let id = createdId app
            app.Meters.Clear()
            // The documented delay: the stores' sweep interval (both default to one minute).
            let sweep = max MemoryStoreOptions.DefaultSweepInterval FileStoreOptions.DefaultSweepInterval
            app.Clock.Advance(SesameOptions.DefaultIdleTimeout - TimeSpan.FromSeconds 1.0)
            Expect.equal (app.Meters.Summary()) [] "nothing expires before the idle timeout"
            Expect.equal app.Events.Names [ "created" ] "no expiry event yet"
            app.Clock.Advance(TimeSpan.FromSeconds 1.0 + sweep)
            Expect.equal (app.Meters.Summary()) [ "sesame.sessions.expired", 1L ] "measurements"
            do! app.Events.WaitFor("expired", 1)
            let expired = app.Events.Single<SessionEndedContext> "expired"
            Expect.equal expired.SessionId id "the session that expired"
            Expect.equal expired.Reason SessionEndReason.Expired "the reason"
            Expect.isTrue (SessionMeta.createdOf expired.Meta).IsSome "the handler has the session's facts (its creation time)"
            Expect.equal expired.Store kind.Name "the store"
        }

        testCaseTask "a session ended to keep its user within the limit is counted as evicted and raised"
        <| fun () -> task {
            use! app = startApp kind asIs (fun options -> options.MaxSessionsPerUser <- 1)
            do! get (app.Browser()) "/signin"
            let first = createdId app
            app.Meters.Clear()
            app.Clock.Advance(TimeSpan.FromSeconds 1.0)
            do! get (app.Browser()) "/signin"
            Expect.equal
                (app.Meters.Summary())
                (expecting [
                    "sesame.session.commit.duration sesame.operation=move sesame.outcome=committed", 1L
                    "sesame.session.patch.size sesame.operation=move", 1L
                    "sesame.session.patch.updates sesame.operation=move", 1L
                    "sesame.sessions.created", 1L
                    "sesame.sessions.signed_in", 1L
                    "sesame.sessions.evicted sesame.eviction.reason=user_limit", 1L
                ])
                "measurements"
            do! app.Events.WaitFor("evicted", 1)
            let evicted = app.Events.Single<SessionEndedContext> "evicted"
            Expect.equal evicted.SessionId first "the older session"
            Expect.equal evicted.Reason SessionEndReason.UserLimit "the reason"
            Expect.equal evicted.UserId "ada" "its user"
        }

        testCaseTask "the active sessions gauge reports what the store holds"
        <| fun () -> task {
            use! app = startApp kind asIs noOptions
            use gauge = new MetricCollector<int64>(app.Host.Services.GetRequiredService<IMeterFactory>(), SesameTelemetry.MeterName, "sesame.sessions.active")
            for _ in 1..3 do
                do! get (app.Browser()) "/bump"
            gauge.RecordObservableInstruments()
            let last = gauge.LastMeasurement
            Expect.equal last.Value 3L "three visitors, three sessions"
            Expect.equal (string last.Tags["sesame.store"]) kind.Name "the store"
        }

        testCaseTask "load and commit spans carry the store, outcome and sizes, never the session id or data"
        <| fun () -> task {
            use! app = startApp kind asIs noOptions
            let spans = ConcurrentQueue<Activity>()
            use listener =
                new ActivityListener(
                    ShouldListenTo = (fun source -> source.Name = SesameTelemetry.ActivitySourceName || source.Name = app.RequestSource),
                    Sample = (fun _ -> ActivitySamplingResult.AllDataAndRecorded),
                    ActivityStopped =
                        fun activity ->
                            // Only this app's: Sesame's spans of its requests are children of its request spans.
                            if
                                activity.Source.Name = SesameTelemetry.ActivitySourceName
                                && not (isNull activity.Parent)
                                && activity.Parent.Source.Name = app.RequestSource
                            then
                                spans.Enqueue activity
                )
            ActivitySource.AddActivityListener listener
            let browser = app.Browser()
            do! get browser "/bump"
            do! get browser "/bump"
            let id = createdId app
            let recorded = List.ofSeq spans
            Expect.equal [ for s in recorded -> s.OperationName ] [ "sesame.session.commit"; "sesame.session.load"; "sesame.session.commit" ] "spans"
            let tag (name: string) (span: Activity) = span.GetTagItem name
            for span in recorded do
                Expect.equal (tag "sesame.store" span) (box kind.Name) "the store"
                Expect.equal (tag "sesame.session.handle" span) (box (SessionSummary.HandleOf id)) "the session, as its handle"
                for KeyValue(name, value) in span.TagObjects do
                    Expect.isFalse ((string value).Contains id) $"tag {name} holds the session id"
                    Expect.isFalse ((string value).Contains "times") $"tag {name} holds session data"
            Expect.equal (tag "sesame.outcome" recorded[1]) (box "found") "the load found the session"
            Expect.equal (tag "sesame.session.bytes" recorded[1]) (box (sizeOf """{"times":1}""")) "the loaded session's bytes"
            Expect.equal (tag "sesame.outcome" recorded[2]) (box "committed") "the commit"
            Expect.equal (tag "sesame.patch.updates" recorded[2]) (box 1) "its updates"
            Expect.isGreaterThan (unbox<int64>(tag "sesame.patch.bytes" recorded[2])) 0L "its bytes"
        }

        testCaseTask "the debug log says what each request loaded and stored, naming the session by its handle only"
        <| fun () -> task {
            use! app = startApp kind asIs noOptions
            let browser = app.Browser()
            do! get browser "/bump"
            do! get browser "/bump"
            let id = createdId app
            let handle = SessionSummary.HandleOf id
            let sesame = app.Logs.Entries |> List.filter (fun e -> e.Category = "Sesame")
            let loaded = sesame |> List.filter (fun e -> e.EventId.Name = "SessionLoaded")
            let stored = sesame |> List.filter (fun e -> e.EventId.Name = "SessionStored")
            Expect.equal (loaded |> List.map _.EventId.Id) [ 9 ] "one load, event 9"
            Expect.equal (stored |> List.map _.EventId.Id) [ 10; 10 ] "two commits, event 10"
            Expect.stringContains (single loaded).Message handle "the load names the handle"
            let bytes = sizeOf """{"times":1}"""
            Expect.stringContains (single loaded).Message $"{bytes} bytes" "and the loaded size"
            Expect.stringContains stored[1].Message "1 updates" "the second commit's update count"
            for entry in sesame do
                Expect.isFalse (entry.Message.Contains id) $"event {entry.EventId} logs the session id"
        }
    ]

[<Tests>]
let tests =
    testList "Telemetry" [
        yield! StoreKinds.all |> List.map storeTests

        testCaseTask "evictions to keep the memory store within its bounds are counted and raised"
        <| fun () -> task {
            let bounded = {
                StoreKinds.all.Head with
                    Name = "memory"
                    Create = fun clock -> new MemoryStore(MemoryStoreOptions(MaxSessions = 3), clock) :> SessionStore
            }
            use! app = startApp bounded asIs noOptions
            for _ in 1..4 do
                app.Clock.Advance(TimeSpan.FromSeconds 1.0)
                do! get (app.Browser()) "/bump"
            let store = app.Store :?> MemoryStore
            let evictedCount () = app.Events.Names |> List.filter ((=) "evicted") |> List.length
            do! app.Events.WaitUntil(fun () -> store.Count + evictedCount () = 4)
            let evicted = [
                for name, c in app.Events.Seen do
                    if name = "evicted" then c :?> SessionEndedContext
            ]
            Expect.isNonEmpty evicted "the store evicted"
            Expect.equal (store.Count + evicted.Length) 4 "every session the store let go of was reported"
            let summary = app.Meters.Summary() |> Map.ofList
            Expect.equal summary["sesame.sessions.evicted sesame.eviction.reason=bounds"] (int64 evicted.Length) "counted"
            for e in evicted do
                Expect.equal e.Reason SessionEndReason.Evicted "the reason"
                // New sessions, evicted from the memory store's ring: their facts are read for the handler only.
                Expect.isTrue (SessionMeta.createdOf e.Meta).IsSome "the handler has the session's facts (its creation time)"
                let! stillThere = store.LoadAsync(e.SessionId, TimeSpan.FromMinutes 1.0, testToken ())
                Expect.isNull stillThere "an evicted session is gone"
        }

        testCaseTask "an eviction handler that waits on the store holds up neither the store nor its requests (file store)"
        <| fun () -> task {
            // The file store reports an eviction from its writer thread, once the delete record is on disk: a handler
            // run there that waited on the store would wait on itself. Handlers for ends a store made run on the pool.
            use directory = new TempDirectory()
            let file = directory.File "sessions"
            let bounded = {
                StoreKinds.all.Head with
                    Name = "file"
                    Create = fun clock -> FileStore.Open(file, FileStoreOptions(MaxSessions = 2), null, clock) :> SessionStore
            }
            let waits = ConcurrentQueue<bool>()
            let storeOf = ref Unchecked.defaultof<FileStore>
            let blocking (options: SesameOptions) =
                options.Events <-
                    SesameEvents(
                        OnEvicted =
                            Func<_, _>(fun context ->
                                // Blocking on the store's writer from a handler: bad practice, and it must still not deadlock.
                                waits.Enqueue(storeOf.Value.CompactAsync().Wait(TimeSpan.FromSeconds 5.0))
                                Task.CompletedTask)
                    )
            use! app = startApp bounded asIs blocking
            storeOf.Value <- app.Store :?> FileStore
            for _ in 1..6 do
                app.Clock.Advance(TimeSpan.FromSeconds 1.0)
                do! get (app.Browser()) "/bump"
            do! app.Events.WaitUntil(fun () -> waits.Count >= 4)
            Expect.equal (List.ofSeq waits) [ true; true; true; true ] "each handler's call to the store was answered"
            Expect.equal storeOf.Value.LiveCount 2 "within the bound"
        }

        testCaseTask "the eviction handlers still running when the app stops finish before its services are disposed"
        <| fun () -> task {
            let handled = ConcurrentQueue<string>()
            let logs = new LogCapture()
            let configure (options: SesameOptions) =
                options.Events.OnEvicted <-
                    Func<SessionEndedContext, Task>(fun context -> task {
                        do! Task.Delay 500
                        // What a handler does with the app's services, which throw once the container is disposed.
                        context.Services.GetRequiredService<ILoggerFactory>() |> ignore
                        handled.Enqueue context.SessionId
                    })
            let store = new MemoryStore(MemoryStoreOptions(MaxSessions = 2))
            let app =
                withSession
                >=> Session.handler (fun s ->
                    s |> Session.set "k" 1
                    text "ok")
            let! host = startHost store configure (runHandler app) logs
            // Eight first visits where two sessions fit: six evictions, whose handlers take half a second each.
            for _ in 1..8 do
                let! response, _ = (Browser host).GetAsync "/"
                Expect.equal response.StatusCode HttpStatusCode.OK "a first visit"
            do! host.StopAsync()
            host.Dispose()
            Expect.equal handled.Count 6 "every eviction's handler ran to its end"
            Expect.equal
                (logs.Entries
                 |> List.filter (fun e -> e.Category = "Sesame" && (e.EventId.Id = 14 || e.EventId.Id = 18))
                 |> List.map (fun e -> e.Category, e.EventId.Id, e.Message))
                []
                "no handler failed, none was left"
        }

        testCaseTask "an event handler that throws is logged and does not fail the request"
        <| fun () -> task {
            let logs = new LogCapture()
            let configure (options: SesameOptions) =
                options.Events.OnCreated <- Func<SessionCreatedContext, Task>(fun _ -> raise (InvalidOperationException "the handler broke"))
            use! host =
                startHost
                    (new MemoryStore())
                    configure
                    (runHandler (
                        withSession
                        >=> Session.handler (fun s ->
                            s |> Session.set "k" 1
                            text "ok")
                    ))
                    logs
            let! response, body = (Browser host).GetAsync "/"
            Expect.equal response.StatusCode HttpStatusCode.OK "the request succeeds"
            Expect.equal body "ok" "body"
            Expect.isNonEmpty (setCookies response) "the session was created"
            let failure = logs.Entries |> List.find (fun e -> e.EventId.Name = "SessionEventHandlerFailed")
            Expect.equal failure.EventId.Id 14 "event id"
            Expect.equal failure.Level LogLevel.Error "an error"
            Expect.stringContains failure.Message "Created" "names the event"
            isType<InvalidOperationException> failure.Error |> ignore
        }

        testCaseTask "a handler set as a property runs, with the session's context"
        <| fun () -> task {
            let seen = ConcurrentQueue<SessionCreatedContext>()
            let configure (options: SesameOptions) =
                options.Events.OnCreated <-
                    Func<SessionCreatedContext, Task>(fun context ->
                        seen.Enqueue context
                        Task.CompletedTask)
            use! host =
                startHost
                    (new MemoryStore())
                    configure
                    (runHandler (
                        withSession
                        >=> Session.handler (fun s ->
                            s |> Session.set "k" 1
                            text "ok")
                    ))
                    (new LogCapture())
            let! _ = (Browser host).GetTextAsync "/"
            let created = single seen
            Expect.equal created.Store "memory" "the store"
            Expect.isNotNull (created.Services.GetService<SessionStore>()) "the app's services"
        }
    ]
