namespace Sesame

open System
open System.Collections.Generic
open System.Diagnostics
open System.Diagnostics.Metrics
open System.Text.Json

/// <summary>
/// Where Sesame reports what its sessions do, for the tools .NET teams already run: the meter <c>Sesame</c>
/// (<c>dotnet-counters monitor --counters Sesame</c>, OpenTelemetry's <c>AddMeter("Sesame")</c>) and the activity
/// source <c>Sesame</c> (OpenTelemetry's <c>AddSource("Sesame")</c>). The README lists every instrument.
/// </summary>
/// <remarks>
/// The meter is made by the app's <c>IMeterFactory</c>, so an app (or a test) with several hosts gets one meter per
/// host. Nothing is measured while nobody listens: each instrument costs a check of whether it is enabled. Metrics and
/// spans never carry a session id or any session data; spans carry the session's handle (a one-way hash of its id).
/// </remarks>
[<RequireQualifiedAccess>]
module SesameTelemetry =

    /// <summary>The name of Sesame's meter: <c>Sesame</c>.</summary>
    [<Literal>]
    let MeterName = "Sesame"

    /// <summary>The name of Sesame's activity source: <c>Sesame</c>.</summary>
    [<Literal>]
    let ActivitySourceName = "Sesame"

/// The tag names and values Sesame's instruments and spans use (OpenTelemetry style: lower case, dotted, snake_case).
[<RequireQualifiedAccess>]
module internal TelemetryTags =
    [<Literal>]
    let Store = "sesame.store"

    [<Literal>]
    let Outcome = "sesame.outcome"

    [<Literal>]
    let Operation = "sesame.operation"

    [<Literal>]
    let EvictionReason = "sesame.eviction.reason"

    [<Literal>]
    let ErrorType = "error.type"

    [<Literal>]
    let SessionHandle = "sesame.session.handle"

    [<Literal>]
    let SessionBytes = "sesame.session.bytes"

    [<Literal>]
    let PatchBytes = "sesame.patch.bytes"

    [<Literal>]
    let PatchUpdates = "sesame.patch.updates"

/// What a load or a write came to, as the <c>sesame.outcome</c> tag says it.
[<RequireQualifiedAccess>]
module internal Outcome =
    let Found = "found"
    let Missing = "missing"
    let Committed = "committed"
    let Gone = "gone"
    let TooLarge = "too_large"
    let Conflict = "conflict"
    let UserLimit = "user_limit"
    let Failed = "failed"
    let Canceled = "canceled"

    /// The outcome of a commit or move that returned.
    let ofResult (result: CommitResult) =
        match result with
        | CommitResult.Committed -> Committed
        | CommitResult.SessionGone -> Gone
        | CommitResult.UserLimitReached -> UserLimit
        | CommitResult.ShapeChanged -> Conflict
        | _ -> Failed

    /// The outcome of a store call that threw.
    let ofError (error: exn) =
        match error with
        | :? SessionTooLargeException -> TooLarge
        | :? PathConflictException -> Conflict
        | :? OperationCanceledException -> Canceled
        | _ -> Failed

/// The size of a change as a patch's compact JSON (the form a persistent store writes), counted without writing it.
[<Sealed; AbstractClass>]
type internal PatchSize =
    static member private DigitsOf(i: int) : int64 =
        let mutable digits = 1L
        let mutable rest = i / 10
        while rest > 0 do
            digits <- digits + 1L
            rest <- rest / 10
        digits

    static member private PathLength(path: SessionPath) : int64 =
        let segments = path.Segments
        let mutable total = 2L + int64 (max 0 (segments.Length - 1))
        for segment in segments do
            total <-
                total
                + match segment with
                  | Segment.Key key -> JsonSize.stringLength key
                  | Segment.Index i -> PatchSize.DigitsOf i
        total

    /// The bytes of the patch's compact JSON (see Patch.writeTo), counted without writing it.
    static member Utf8Length(patch: Patch) : int64 =
        if patch.IsEmpty then
            0L
        else
            // The outer array's brackets and commas; each operation is an array of its name, its path and its value.
            let mutable total = 2L - 1L
            for update in patch.Updates do
                let operation, value =
                    match update with
                    | Update.Set(_, value) -> 3L, JsonSize.utf8Length value
                    | Update.Remove _ -> 6L, -1L
                    | Update.Increment(_, by) -> 9L, int64 by.Text.Length
                    | Update.Append(_, value) -> 6L, JsonSize.utf8Length value
                // A comma before it, its brackets, its quoted name, a comma, its path, and a comma and its value.
                total <- total + 1L + 2L + (operation + 2L) + 1L + PatchSize.PathLength update.Path + (if value < 0L then 0L else 1L + value)
            total

    /// The bytes of all a change writes: its tree patch, its facts patch and its shape upgrade.
    static member Of(change: SessionChange) : int64 =
        let upgrade =
            match change.Upgrade with
            | ValueSome u -> PatchSize.Utf8Length u.Data
            | ValueNone -> 0L
        PatchSize.Utf8Length change.Data + PatchSize.Utf8Length change.Meta + upgrade

    /// The number of updates a change holds, folded.
    static member UpdatesOf(change: SessionChange) : int =
        let upgrade =
            match change.Upgrade with
            | ValueSome u -> u.Data.Updates.Length
            | ValueNone -> 0
        change.Data.Updates.Length + change.Meta.Updates.Length + upgrade

/// <summary>Sesame's instruments, on a meter the app's <c>IMeterFactory</c> made (one per app host).</summary>
[<Sealed>]
type internal SesameInstruments(meterFactory: IMeterFactory) =
    static let version = typeof<SesameInstruments>.Assembly.GetName().Version.ToString()
    static let source = new ActivitySource(SesameTelemetry.ActivitySourceName, version)

    static let durations =
        InstrumentAdvice<float>(
            HistogramBucketBoundaries = [| 0.00005; 0.0001; 0.00025; 0.0005; 0.001; 0.0025; 0.005; 0.01; 0.025; 0.05; 0.1; 0.25; 0.5; 1.0; 2.5; 5.0; 10.0 |]
        )

    static let bytes = InstrumentAdvice<int64>(HistogramBucketBoundaries = [| 64L; 256L; 1024L; 4096L; 16384L; 65536L; 262144L; 1048576L; 4194304L |])

    static let updates = InstrumentAdvice<int64>(HistogramBucketBoundaries = [| 1L; 2L; 4L; 8L; 16L; 32L; 64L; 128L; 256L; 1024L |])

    let meter =
        let options = MeterOptions(SesameTelemetry.MeterName, Version = version)
        match meterFactory with
        | null -> new Meter(options)
        | factory -> factory.Create options

    let sessions (name: string) (description: string) = meter.CreateCounter<int64>(name, "{session}", description)

    /// The activity source of every Sesame span (one per process, as activity sources are).
    static member Source = source

    /// The meter the instruments are on.
    member _.Meter = meter

    member val Created = sessions "sesame.sessions.created" "Sessions created: a new session's first commit, or a sign-in of a session not stored yet."
    member val Rotated = sessions "sesame.sessions.rotated" "Sessions moved to a new id without a sign-in (RotateAsync)."
    member val SignedIn = sessions "sesame.sessions.signed_in" "Sessions signed in: bound to a user at a new id."
    member val Destroyed = sessions "sesame.sessions.destroyed" "Sessions the app destroyed (DestroyAsync, Sessions.endAsync)."
    member val Expired = sessions "sesame.sessions.expired" "Sessions a store found expired (in its sweep, or at a load)."
    member val Evicted = sessions "sesame.sessions.evicted" "Sessions a store evicted: to stay within its bounds, or its user within the user's session limit."

    member val LoadDuration =
        meter.CreateHistogram<float>("sesame.session.load.duration", "s", "How long loading a session from the store took.", null, durations)

    member val CommitDuration =
        meter.CreateHistogram<float>(
            "sesame.session.commit.duration",
            "s",
            "How long a store write took: a commit, a move (rotation, sign-in) or a delete.",
            null,
            durations
        )

    member val PatchSize =
        meter.CreateHistogram<int64>("sesame.session.patch.size", "By", "The size of a committed change, in bytes of its compact JSON patch.", null, bytes)

    member val PatchUpdates =
        meter.CreateHistogram<int64>("sesame.session.patch.updates", "{update}", "The number of updates in a committed change, after folding.", null, updates)

    member val SessionSize =
        meter.CreateHistogram<int64>(
            "sesame.session.size",
            "By",
            "The size of a session's tree when a request loads it, in bytes of compact JSON.",
            null,
            bytes
        )

    /// Whether anything listens to what a load records.
    member this.LoadsWatched = this.LoadDuration.Enabled || this.SessionSize.Enabled

    /// Whether anything listens to what a commit or move records.
    member this.WritesWatched =
        this.CommitDuration.Enabled
        || this.PatchSize.Enabled
        || this.PatchUpdates.Enabled
        || this.Created.Enabled
        || this.Rotated.Enabled
        || this.SignedIn.Enabled

    /// Whether anything listens to what a delete records.
    member this.DeletesWatched = this.CommitDuration.Enabled || this.Destroyed.Enabled

    /// <summary>Reports the store's live sessions (<see cref="P:Sesame.SessionStore.ActiveSessionCount"/>) as the
    /// gauge <c>sesame.sessions.active</c>, when the store can tell.</summary>
    member _.ObserveActiveSessions(storeName: string, store: SessionStore) =
        let tag = KeyValuePair<string, obj>(TelemetryTags.Store, storeName)
        let observe () : IEnumerable<Measurement<int64>> =
            let count =
                try
                    store.ActiveSessionCount
                with _ ->
                    Nullable()
            if count.HasValue then [| Measurement<int64>(count.Value, tag) |] else Array.Empty()
        // A gauge, not an up-down counter: instances sharing a store each report the same sessions, which must not add up.
        meter.CreateObservableGauge<int64>(
            "sesame.sessions.active",
            Func<IEnumerable<Measurement<int64>>>(observe),
            "{session}",
            "The sessions the store holds now (stores that can count them cheaply: memory, file)."
        )
        |> ignore
