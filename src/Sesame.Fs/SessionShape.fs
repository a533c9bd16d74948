namespace Sesame

open System
open System.Collections
open System.Collections.Concurrent
open System.Collections.Generic
open Microsoft.Extensions.Logging

/// <summary>
/// What a request does with a session whose shape is newer than the app's
/// (<see cref="P:Sesame.SesameOptions.ShapeVersion"/>): during a rolling deploy, an instance of the old version reads what
/// an instance of the new one wrote. Whatever the choice, the stored session is never changed by the older app.
/// </summary>
type NewerShapePolicy =
    /// The handler reads the session as stored (the newer shape); a change of its tree throws
    /// <see cref="T:Sesame.SessionShapeException"/> and records nothing. Facts beside the tree (sign-in, rotation,
    /// destroy) still work. The default.
    | ReadOnly = 0
    /// The request gets a new, empty session, created (with a new id and cookie) if the request changes it; the stored
    /// session is left as it is, for the newer instances.
    | StartNew = 1
    /// Loading the session throws <see cref="T:Sesame.SessionShapeException"/> (a 5xx unless the app catches it).
    | Fail = 2

/// <summary>What a typed read gives when the value at its path no longer fits the type it is read as.</summary>
/// <remarks>Whatever the fallback, the first failure for a path and type is logged (event <c>SessionValueUnreadable</c>,
/// with the path and the type, never the value); later ones are not.</remarks>
type ReadFallback =
    /// The read throws <see cref="T:System.Text.Json.JsonException"/> naming the path and the type (the default).
    | Throw = 0
    /// The read gives no value, as if the path were empty; the stored value stays until the app overwrites it.
    | Missing = 1
    /// The read gives no value and the value is removed from the session, committed with the request's changes (on a
    /// read-only session it only reads as missing).
    | Remove = 2

/// <summary>
/// A session's shape does not allow what the request did: the session is newer than the app (and served read-only, or
/// refused by <see cref="F:Sesame.NewerShapePolicy.Fail"/>), or another app instance changed its shape while the
/// request ran, so the request's changes, made for the old shape, were not stored.
/// </summary>
type SessionShapeException(message: string, sessionVersion: int, appVersion: int) =
    inherit InvalidOperationException(message)

    /// The shape version the session had when this request loaded it.
    member _.SessionVersion = sessionVersion

    /// The shape version this app declares (<see cref="P:Sesame.SesameOptions.ShapeVersion"/>).
    member _.AppVersion = appVersion

/// <summary>One step of a session's shape: a function from the tree at version <c>From</c> to the tree at <c>From + 1</c>.</summary>
[<Sealed>]
type SessionMigration internal (fromVersion: int, migrate: Func<Json, Json>) =
    /// The version of the trees the step takes.
    member _.From = fromVersion

    /// The version of the trees it gives: <c>From + 1</c>.
    member _.To = fromVersion + 1

    /// <summary>Migrates one tree (a JSON object) to the next version.</summary>
    /// <param name="tree">The session's tree at version <c>From</c>.</param>
    /// <returns>The tree at version <c>To</c>.</returns>
    member _.Apply(tree: Json) : Json = migrate.Invoke tree

/// <summary>
/// The app's migrations, from each older shape version to the next, registered in order (see
/// <see cref="P:Sesame.SesameOptions.Migrations"/>). A session stored at an older version than
/// <see cref="P:Sesame.SesameOptions.ShapeVersion"/> is migrated step by step as it is loaded.
/// </summary>
/// <remarks>Register them at startup; they are read on every request after that. The oldest may be dropped once no
/// session of that version can be alive (after the idle or absolute timeout): a session older than the oldest migration
/// starts afresh.</remarks>
[<Sealed>]
type SessionMigrations() =
    let steps = List<SessionMigration>()

    /// <summary>Adds the migration from <paramref name="fromVersion"/> to <paramref name="fromVersion"/> + 1.</summary>
    /// <param name="fromVersion">The version the migration starts from: the one after the last migration added (any, for the first).</param>
    /// <param name="migrate">Makes the tree of the next version from a tree of <paramref name="fromVersion"/>: a pure function
    /// of the tree (it may run on every load of a session until the session is next changed, and concurrently). It must
    /// give a JSON object.</param>
    /// <returns>These migrations, for chaining.</returns>
    /// <exception cref="System.ArgumentException">The version is negative or does not follow the last migration's.</exception>
    member this.Add(fromVersion: int, migrate: Func<Json, Json>) : SessionMigrations =
        if isNull migrate then nullArg (nameof migrate)
        if fromVersion < 0 || fromVersion = Int32.MaxValue then
            raise (ArgumentOutOfRangeException(nameof fromVersion, fromVersion, "A shape version is from 0 to 2^31 - 2."))
        if steps.Count > 0 && fromVersion <> steps[steps.Count - 1].To then
            invalidArg
                (nameof fromVersion)
                $"Migrations are added in order: the last one goes to version {steps[steps.Count - 1].To}, so the next starts from {steps[steps.Count - 1].To}, not {fromVersion}."
        steps.Add(SessionMigration(fromVersion, migrate))
        this

    /// <summary>The version the oldest migration starts from, or <c>None</c> when there is none.</summary>
    member _.Oldest: int option = if steps.Count = 0 then None else Some steps[0].From

    /// <summary>The version the newest migration goes to, or <c>None</c> when there is none.</summary>
    member _.Newest: int option = if steps.Count = 0 then None else Some steps[steps.Count - 1].To

    /// <summary>The number of migrations.</summary>
    member _.Count = steps.Count

    /// The step from a version, if registered.
    member internal _.From(version: int) : SessionMigration voption =
        if steps.Count = 0 || version < steps[0].From || version >= steps[steps.Count - 1].To then ValueNone else ValueSome steps[version - steps[0].From]

    interface IReadOnlyList<SessionMigration> with
        member _.Count = steps.Count
        member _.Item
            with get index = steps[index]
        member _.GetEnumerator() : IEnumerator<SessionMigration> = (steps :> seq<_>).GetEnumerator()
        member _.GetEnumerator() : IEnumerator = (steps :> IEnumerable).GetEnumerator()

/// <summary>
/// Which fallback typed reads use, by path prefix (see <see cref="P:Sesame.SesameOptions.ReadFallbacks"/>): the one
/// registered for the longest prefix of the path read, else <see cref="P:Sesame.ReadFallbacks.Default"/>.
/// A read that names a fallback itself uses that one.
/// </summary>
[<Sealed>]
type ReadFallbacks() =
    let byPrefix = List<struct (SessionPath * ReadFallback)>()
    /// The failures already logged, by path (indexes written [*]) and type; bounded, as keys may come from user input.
    let reported = ConcurrentDictionary<struct (string * Type), byte>()

    static let check (fallback: ReadFallback) =
        if not (Enum.IsDefined(typeof<ReadFallback>, fallback)) then raise (ArgumentOutOfRangeException("fallback", fallback, "Not a ReadFallback."))

    let mutable fallback = ReadFallback.Throw

    /// <summary>The fallback of paths no prefix names. Default <see cref="F:Sesame.ReadFallback.Throw"/> (as a read always did).</summary>
    member _.Default
        with get () = fallback
        and set (value: ReadFallback) =
            check value
            fallback <- value

    /// <summary>Uses <paramref name="fallback"/> for reads at <paramref name="prefix"/> and below (replacing the one it had).</summary>
    /// <param name="prefix">The path, e.g. <c>cart</c>: it covers <c>cart</c>, <c>cart.items[0]</c>, not <c>cartography</c>.</param>
    /// <param name="fallback">What reads there give for a value that does not fit.</param>
    /// <returns>These fallbacks, for chaining.</returns>
    member this.Add(prefix: SessionPath, fallback: ReadFallback) : ReadFallbacks =
        if obj.ReferenceEquals(prefix, null) then nullArg (nameof prefix)
        check fallback
        byPrefix.RemoveAll(fun (struct (p, _)) -> p = prefix) |> ignore
        byPrefix.Add(struct (prefix, fallback))
        this

    /// <summary>Uses <paramref name="fallback"/> for reads at <paramref name="prefix"/> (path text, e.g. <c>cart</c>) and below.</summary>
    /// <returns>These fallbacks, for chaining.</returns>
    /// <exception cref="System.ArgumentException">The text is not a path.</exception>
    member this.Add(prefix: string, fallback: ReadFallback) : ReadFallbacks = this.Add(SessionPath.parse prefix, fallback)

    /// <summary>The fallback for a read at <paramref name="path"/>.</summary>
    member _.For(path: SessionPath) : ReadFallback =
        let mutable best = fallback
        let mutable length = -1
        for entry in byPrefix do
            let struct (prefix, chosen) = entry
            if prefix.Segments.Length > length && SessionPath.isPrefixOf prefix path then
                best <- chosen
                length <- prefix.Segments.Length
        best

    /// Whether this failure (path with its indexes as [*], type) is the first of its kind: logged then, not after.
    member internal _.FirstReport(pattern: string, valueType: Type) : bool = reported.Count < 1024 && reported.TryAdd(struct (pattern, valueType), 0uy)

/// What became of a session older than the app's shape as it was loaded.
[<NoComparison; NoEquality>]
type internal MigrationOutcome =
    /// Migrated: the tree to serve (the stored one with the upgrade's patch applied) and the upgrade to commit.
    | Migrated of tree: Json * upgrade: ShapeUpgrade
    /// Older than the oldest migration: nothing can read it.
    | TooOld of oldest: int option
    /// A migration threw, or gave something that is not a session's tree (or one that cannot be stored).
    | Failed of fromVersion: int * toVersion: int * error: exn

/// Migrating sessions' trees, and the log messages of shapes and reads.
[<RequireQualifiedAccess>]
module internal SessionShape =

    /// <summary>
    /// The updates that make <paramref name="after"/> from <paramref name="before"/>, touching only what differs: a key
    /// removed is removed, a key added or changed is set (objects are compared key by key, down to the values that
    /// differ; an array that differs in any way is set whole, so an item a concurrent request appended meanwhile does
    /// not survive unmigrated among migrated ones).
    /// </summary>
    let changes (before: Json) (after: Json) : Update list =
        let found = List<Update>()
        let at (reversed: Segment list) = SessionPath.ofSegments (List.rev reversed)
        let rec go (reversed: Segment list) (before: Json) (after: Json) =
            if not (obj.ReferenceEquals(before, after)) then
                match before, after with
                | Json.Object b, Json.Object a ->
                    for KeyValue(key, _) in b do
                        if not (a.ContainsKey key) then found.Add(Update.Remove(at (Segment.Key key :: reversed)))
                    for KeyValue(key, value) in a do
                        match b.Find key with
                        | ValueSome old -> go (Segment.Key key :: reversed) old value
                        | ValueNone -> found.Add(Update.Set(at (Segment.Key key :: reversed), value))
                | _ when before.Equals after -> ()
                | _ -> found.Add(Update.Set(at reversed, after))
        go [] before after
        List.ofSeq found

    /// <summary>Checks that the migrations lead to the app's version.</summary>
    /// <exception cref="System.InvalidOperationException">The version is negative, or the migrations end elsewhere.</exception>
    let check (version: int) (migrations: SessionMigrations) =
        if version < 0 then raise (InvalidOperationException $"SesameOptions.ShapeVersion is {version}; a shape version is 0 or more.")
        match migrations.Newest with
        | Some newest when newest <> version ->
            raise (
                InvalidOperationException
                    $"SesameOptions.ShapeVersion is {version}, but the migrations end at version {newest}. Declare ShapeVersion = {newest}, or add the migrations up to {version}."
            )
        | None when version > 0 ->
            // Without it, every session stored before would start afresh: say so at startup rather than on every load.
            raise (
                InvalidOperationException
                    $"SesameOptions.ShapeVersion is {version}, but there is no migration into it, so no stored session could be read. Add the migration from {version - 1} (options.Migrations.Add({version - 1}, fun tree -> tree) when only the version is new)."
            )
        | _ -> ()

    /// <summary>Migrates a tree of <paramref name="stored"/> to <paramref name="version"/>, step by step, giving the one
    /// upgrade (from, to, minimal patch) that a commit brings to the store.</summary>
    let migrate (migrations: SessionMigrations) (version: int) (stored: int) (tree: Json) : MigrationOutcome =
        check version migrations
        match migrations.From stored with
        | ValueNone -> TooOld migrations.Oldest
        | ValueSome _ ->
            let mutable migrated = tree
            let mutable failure = ValueNone
            let mutable step = stored
            while failure.IsNone && step < version do
                match migrations.From step with
                | ValueSome migration ->
                    let notATree (what: string) =
                        Failed(
                            step,
                            step + 1,
                            InvalidOperationException $"The migration from shape {step} gave {what}; it must give the session's tree, a JSON object."
                        )
                    try
                        match box (migration.Apply migrated) with
                        | :? Json as next ->
                            match next with
                            | Json.Object _ -> migrated <- next
                            | other -> failure <- ValueSome(notATree (other.GetType().Name.ToLowerInvariant()))
                        | _ -> failure <- ValueSome(notATree "null")
                    with e ->
                        failure <- ValueSome(Failed(step, step + 1, e))
                | ValueNone -> failure <- ValueSome(TooOld migrations.Oldest)
                step <- step + 1
            match failure with
            | ValueSome outcome -> outcome
            | ValueNone ->
                try
                    // Checked as a change of the handler's would be (depth, lone surrogates), and applied to the stored
                    // tree, so the handler reads exactly what the store will hold (key order included).
                    let patch = Patch.fold (changes tree migrated)
                    Migrated(Patch.apply patch tree, { From = stored; To = version; Data = patch })
                with e ->
                    Failed(stored, version, e)

    /// A path as failures of one kind are logged: its indexes written [*].
    let pattern (path: SessionPath) =
        let text = Text.StringBuilder()
        for segment in path.Segments do
            match segment with
            | Segment.Index _ -> text.Append "[*]" |> ignore
            | key ->
                let one = string (SessionPath.ofSegments [ key ])
                if text.Length > 0 && not (one.StartsWith '[') then text.Append '.' |> ignore
                text.Append one |> ignore
        text.ToString()

    let private migrated =
        LoggerMessage.Define<int, int, int>(
            LogLevel.Debug,
            EventId(30, "SessionMigrated"),
            "Migrated the session from shape {FromVersion} to {ToVersion} as it was loaded ({UpdateCount} updates); it is stored migrated with the request's next change of it."
        )

    let private newer =
        LoggerMessage.Define<int, int, string>(
            LogLevel.Information,
            EventId(31, "SessionShapeNewer"),
            "The session's shape {SessionVersion} is newer than this app's {AppVersion} (a newer app instance wrote it): {Handling}."
        )

    let private changed =
        LoggerMessage.Define<int, int>(
            LogLevel.Warning,
            EventId(32, "SessionShapeChanged"),
            "The session's shape changed while this request ran (it was {SessionVersion}; another app instance migrated it): the request's {UpdateCount} updates, made for the old shape, were not stored."
        )

    let private failed =
        LoggerMessage.Define<int, int>(
            LogLevel.Error,
            EventId(33, "SessionMigrationFailed"),
            "Migrating a session from shape {FromVersion} to {ToVersion} failed: the request starts a new session, and the stored one is left as it is."
        )

    let private tooOld =
        LoggerMessage.Define<int, string>(
            LogLevel.Warning,
            EventId(34, "SessionShapeTooOld"),
            "The session's shape {SessionVersion} is older than any migration ({Oldest}): the request starts a new session, and the stored one is left as it is."
        )

    let private unreadable =
        LoggerMessage.Define<string, string, ReadFallback>(
            LogLevel.Warning,
            EventId(35, "SessionValueUnreadable"),
            "A session value at '{Path}' cannot be read as {ValueType}; the read's fallback is {Fallback}. Logged once per path and type."
        )

    let logMigrated (logger: ILogger) (fromVersion: int) (toVersion: int) (updates: int) = migrated.Invoke(logger, fromVersion, toVersion, updates, null)

    let logNewer (logger: ILogger) (sessionVersion: int) (appVersion: int) (policy: NewerShapePolicy) =
        if logger.IsEnabled LogLevel.Information then
            let handling =
                match policy with
                | NewerShapePolicy.StartNew -> "starting a new session, and leaving the stored one as it is"
                | NewerShapePolicy.Fail -> "failing the request"
                | _ -> "serving it read-only"
            newer.Invoke(logger, sessionVersion, appVersion, handling, null)

    let logChanged (logger: ILogger) (sessionVersion: int) (updates: int) = changed.Invoke(logger, sessionVersion, updates, null)

    let logFailed (logger: ILogger) (fromVersion: int) (toVersion: int) (error: exn) = failed.Invoke(logger, fromVersion, toVersion, error)

    let logTooOld (logger: ILogger) (sessionVersion: int) (oldest: int option) =
        tooOld.Invoke(
            logger,
            sessionVersion,
            (match oldest with
             | Some v -> $"the oldest starts from {v}"
             | None -> "there are none"),
            null
        )

    /// Logs an unreadable value once per path pattern and type: the path and the type, never the value.
    let logUnreadable (logger: ILogger) (fallbacks: ReadFallbacks) (path: SessionPath) (valueType: Type) (fallback: ReadFallback) =
        let pattern = pattern path
        if fallbacks.FirstReport(pattern, valueType) then unreadable.Invoke(logger, pattern, valueType.Name, fallback, null)
