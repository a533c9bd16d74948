namespace Sesame.Redis

open System
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging
open Microsoft.Extensions.Logging.Abstractions
open Sesame
open StackExchange.Redis

/// The store's log messages, each with a stable event id.
module internal RedisLog =

    let scriptReloaded =
        LoggerMessage.Define<string>(
            LogLevel.Information,
            EventId(1, "RedisScriptReloaded"),
            "Redis no longer had the {Script} script (NOSCRIPT: restarted, failed over or flushed); sent it again with EVAL."
        )

    let failed =
        LoggerMessage.Define<string, string>(
            LogLevel.Warning,
            EventId(2, "RedisOperationFailed"),
            "Redis {Operation} of session {Session} failed."
        )

    let timedOut =
        LoggerMessage.Define<string, string, TimeSpan>(
            LogLevel.Warning,
            EventId(3, "RedisOperationTimedOut"),
            "Redis {Operation} of session {Session} got no answer within {Timeout}."
        )

    let invalidSession =
        LoggerMessage.Define<string, string>(
            LogLevel.Error,
            EventId(4, "RedisInvalidSession"),
            "The Redis key of session {Session} does not hold a valid Sesame session: {Reason}."
        )

    let connectionFailed =
        LoggerMessage.Define<string, string>(
            LogLevel.Warning,
            EventId(5, "RedisConnectionFailed"),
            "Lost the connection to Redis at {EndPoint} ({FailureType}); it is being re-established."
        )

    let connectionRestored =
        LoggerMessage.Define<string>(LogLevel.Information, EventId(6, "RedisConnectionRestored"), "The connection to Redis at {EndPoint} is back.")

    let committed =
        LoggerMessage.Define<int, string>(LogLevel.Debug, EventId(7, "RedisCommitted"), "Committed {Updates} updates to session {Session}.")

    let notConnected =
        LoggerMessage.Define<string, string>(
            LogLevel.Warning,
            EventId(8, "RedisNotConnected"),
            "Redis {Operation} of session {Session} was not sent: there is no connection to Redis (it is being re-established)."
        )

/// Reading script replies (explicit conversions, which F# picks by the annotated result type).
module internal Reply =
    let array (reply: RedisResult) : RedisResult[] = RedisResult.op_Explicit reply
    let text (reply: RedisResult) : string = match (RedisResult.op_Explicit reply: string) with null -> "" | t -> t
    let int64 (reply: RedisResult) : int64 = RedisResult.op_Explicit reply
    /// An array reply's items as they are (no copy, unlike the conversion to RedisValue[]).
    let items (reply: RedisResult) : RedisResult[] = RedisResult.op_Explicit reply

/// <summary>
/// Sessions in Redis (StackExchange.Redis): one hash per session, each commit applied by one
/// Lua script call (EVALSHA) that patches the stored tree atomically, idle expiry as the key's
/// TTL. For apps that outgrow one machine: many web servers, one Redis.
/// </summary>
/// <remarks>
/// <para>One key per session (<c>KeyPrefix</c> + id), and each script touches only that key,
/// so the store works with Redis Cluster. The hash holds one field per node of the JSON tree,
/// each leaf as its exact JSON text: numbers keep every digit, <c>[]</c> stays an array and key
/// order is kept (the layout is described at the top of Commit.lua). A container's node lists its
/// members, so a commit finds what lies under a path by following them: its Redis work grows with
/// the nodes it replaces and writes (plus the path's depth and the width of an object it adds a
/// key to), not with the session's size. The hash also keeps the session's exact size in bytes of
/// compact JSON (what <c>JsonSize.utf8Length</c> gives), updated by every commit, so
/// <c>MaxSizeBytes</c> is checked exactly, before anything is written.</para>
/// <para>A load is one round trip (a script that reads the hash and slides its TTL, at most once
/// per <c>ExpiryRefreshInterval</c>); so is a commit. Every operation is bounded by
/// <c>OperationTimeout</c>: an unreachable or slow Redis is a <see cref="T:Sesame.SessionStoreException"/>,
/// never a hang, and the store works again as soon as StackExchange.Redis reconnects. With no
/// connection nothing is sent (the operation fails at once), so a commit reported as failed is
/// not replayed from the client's backlog once Redis is back.</para>
/// <para>It is an <see cref="T:Sesame.ISharedSessionStore"/>: every app instance on the same Redis
/// serves every session, so the cookie one instance issues must open on the others. Their ASP.NET
/// Core Data Protection keys must therefore be shared by all instances: <c>services.AddSesameRedis(...)</c>
/// registers the store and keeps the key ring in the same Redis on the same connection; otherwise
/// use any shared key repository (for example
/// <c>services.AddDataProtection().PersistKeysToFileSystem(sharedDirectory).SetApplicationName("my-app")</c>).
/// Sesame logs the warning <c>DataProtectionKeysNotShared</c> at startup when they are not persisted anywhere.</para>
/// <para>Logs name a session by the first six characters of its id only: ids are secrets.</para>
/// <para>Needs Redis 4.0 or later.</para>
/// </remarks>
[<Sealed>]
type RedisStore private (connection: IConnectionMultiplexer, options: RedisStoreOptions, logger: ILogger, ownsConnection: bool) =
    static let commitScript = RedisScript.Embedded "Commit"
    static let loadScript = RedisScript.Embedded "Load"

    let options = if isNull options then RedisStoreOptions() else options
    let logger = if isNull logger then NullLogger.Instance :> ILogger else logger

    do
        if isNull connection then nullArg "connection"
        if isNull options.KeyPrefix then invalidArg "options" "KeyPrefix cannot be null (use the empty string for no prefix)."
        if options.OperationTimeout <= TimeSpan.Zero && options.OperationTimeout <> Timeout.InfiniteTimeSpan then
            invalidArg "options" $"OperationTimeout must be positive; it is {options.OperationTimeout}."
        if options.ExpiryRefreshInterval < TimeSpan.Zero then
            invalidArg "options" $"ExpiryRefreshInterval cannot be negative; it is {options.ExpiryRefreshInterval}."

    let database = connection.GetDatabase(options.Database, null)
    let refreshMilliseconds = RedisValue.op_Implicit (int64 options.ExpiryRefreshInterval.TotalMilliseconds)

    // Only the interactive connection carries the store's commands; the subscription one (pub/sub)
    // fails and comes back with it and would log everything twice.
    let onFailed =
        EventHandler<ConnectionFailedEventArgs>(fun _ e ->
            if e.ConnectionType = ConnectionType.Interactive then
                RedisLog.connectionFailed.Invoke(logger, string e.EndPoint, string e.FailureType, e.Exception))

    let onRestored =
        EventHandler<ConnectionFailedEventArgs>(fun _ e ->
            if e.ConnectionType = ConnectionType.Interactive then
                RedisLog.connectionRestored.Invoke(logger, string e.EndPoint, null))

    do
        connection.add_ConnectionFailed onFailed
        connection.add_ConnectionRestored onRestored

    /// Names a session in logs and messages without giving its id away.
    let redact (id: string) =
        if id.Length <= 6 then "…" else id.Substring(0, 6) + "…"

    // The prefix as UTF-8 once; each key is the id with this prefix, written after it on the
    // wire, so no prefix + id string is made per operation.
    let prefix: RedisKey = RedisKey.op_Implicit (Text.Encoding.UTF8.GetBytes options.KeyPrefix: byte[])

    let keyOf (id: string) : RedisKey =
        if isNull id then nullArg "id"
        (RedisKey.op_Implicit id: RedisKey).Prepend prefix

    let invalid (id: string) (reason: string) =
        RedisLog.invalidSession.Invoke(logger, redact id, reason, null)
        SessionStoreException($"The Redis key of session {redact id} does not hold a valid Sesame session ({reason}). Delete the key to start the session afresh.")

    /// Runs one call to Redis within OperationTimeout, turning Redis failures into SessionStoreException.
    let bounded (operation: string) (id: string) (key: RedisKey) (cancellationToken: CancellationToken) (start: unit -> Task<'result>) : Task<'result> =
        task {
            cancellationToken.ThrowIfCancellationRequested()
            // With no connection, StackExchange.Redis (by default) holds a command in its backlog and
            // sends it when the connection is back, possibly after this store has reported it failed:
            // a commit the app saw fail would then be applied later. So nothing is sent without one.
            if not (database.IsConnected(key, CommandFlags.None)) then
                RedisLog.notConnected.Invoke(logger, operation, redact id, null)
                raise (SessionStoreException($"Redis {operation} of session {redact id} was not sent: there is no connection to Redis (it is being re-established)."))
            let work =
                try
                    start ()
                with e ->
                    Task.FromException<'result> e
            try
                return! work.WaitAsync(options.OperationTimeout, cancellationToken)
            with
            | :? TimeoutException as e ->
                // Whether our clock or the client's ran out, the caller gets the same answer;
                // the abandoned call's own failure, if any, must not go unobserved.
                work.ContinueWith((fun (t: Task<'result>) -> t.Exception |> ignore), TaskContinuationOptions.OnlyOnFaulted) |> ignore
                RedisLog.timedOut.Invoke(logger, operation, redact id, options.OperationTimeout, null)
                let applied = if operation = "commit" then " It may or may not have been applied." else ""
                return raise (SessionStoreException($"Redis did not answer the {operation} of session {redact id} within {options.OperationTimeout}.{applied}", e))
            | :? OperationCanceledException when cancellationToken.IsCancellationRequested ->
                work.ContinueWith((fun (t: Task<'result>) -> t.Exception |> ignore), TaskContinuationOptions.OnlyOnFaulted) |> ignore
                return raise (OperationCanceledException(cancellationToken))
            | :? RedisException as e ->
                RedisLog.failed.Invoke(logger, operation, redact id, e)
                return raise (SessionStoreException($"Redis {operation} of session {redact id} failed: {e.Message}", e))
        }

    /// What the load script's reply means (see Load.lua).
    let loaded (id: string) (reply: RedisResult) : Json option =
        let parts = Reply.array reply
        match Reply.text parts[0] with
        | "hash" ->
            match RedisLayout.rebuild (Reply.items parts[1]) with
            | Ok json -> Some json
            | Error reason -> raise (invalid id reason)
        | "none" -> None
        | kind -> raise (invalid id $"the key holds a {kind}, not a hash")

    /// What the commit script's reply means (see Commit.lua).
    let committed (id: string) (patch: Patch) (commit: CommitOptions) (reply: RedisResult) : CommitResult =
        let parts = Reply.array reply
        match Reply.text parts[0] with
        | "ok" ->
            if logger.IsEnabled LogLevel.Debug then
                RedisLog.committed.Invoke(logger, patch.Updates.Length, redact id, null)
            CommitResult.Committed
        | "gone" -> CommitResult.SessionGone
        | "large" -> raise (SessionTooLargeException(Reply.int64 parts[1], commit.MaxSizeBytes))
        | "conflict" ->
            raise (RedisLayout.conflict patch (int (Reply.int64 parts[1])) (Reply.text parts[2]) (int (Reply.int64 parts[3])) (Reply.text parts[4]))
        | "corrupt" -> raise (invalid id (Reply.text parts[1]))
        | other -> raise (SessionStoreException($"The Redis commit script gave an unexpected reply '{other}'."))

    let reloaded (script: RedisScript) () = RedisLog.scriptReloaded.Invoke(logger, script.Name, null)

    /// <summary>A store on an existing connection, with default options and no logging. The caller keeps owning the connection.</summary>
    /// <param name="connection">A StackExchange.Redis connection (configure it with <c>AbortOnConnectFail=false</c> so it reconnects).</param>
    new(connection: IConnectionMultiplexer) = new RedisStore(connection, RedisStoreOptions(), NullLogger.Instance, false)

    /// <summary>A store on an existing connection. The caller keeps owning the connection.</summary>
    /// <param name="connection">A StackExchange.Redis connection (configure it with <c>AbortOnConnectFail=false</c> so it reconnects).</param>
    /// <param name="options">The store's options (<c>null</c> for the defaults).</param>
    /// <param name="logger">Where the store logs (<c>null</c> for nowhere).</param>
    new(connection: IConnectionMultiplexer, options: RedisStoreOptions, logger: ILogger) = new RedisStore(connection, options, logger, false)

    /// <summary>
    /// Connects to Redis and makes a store that owns the connection (disposing the store closes it).
    /// Returns even while Redis is unreachable: the connection keeps retrying in the background
    /// (<c>AbortOnConnectFail</c> is set to false), and operations fail with
    /// <see cref="T:Sesame.SessionStoreException"/> until it succeeds. Commands are never queued
    /// while disconnected (<c>BacklogPolicy.FailFast</c>), so a failed commit is never sent later.
    /// </summary>
    /// <param name="configuration">A StackExchange.Redis configuration string, e.g. <c>"localhost:6379"</c> or <c>"host:6379,password=...,ssl=true"</c>.</param>
    /// <param name="options">The store's options (<c>null</c> for the defaults).</param>
    /// <param name="logger">Where the store logs (<c>null</c> for nowhere).</param>
    /// <returns>The store.</returns>
    static member ConnectAsync(configuration: string, options: RedisStoreOptions, logger: ILogger) : Task<RedisStore> =
        if isNull configuration then nullArg "configuration"
        let settings = ConfigurationOptions.Parse configuration
        settings.AbortOnConnectFail <- false
        // A command is sent now or fails now: never queued to run once Redis is back, after the
        // store has reported it failed (the store also checks the connection before each call).
        settings.BacklogPolicy <- BacklogPolicy.FailFast
        task {
            let! connection = ConnectionMultiplexer.ConnectAsync(settings, null)
            return new RedisStore(connection, options, logger, true)
        }

    /// <summary>Connects to Redis with default options and no logging (see the other overload).</summary>
    /// <param name="configuration">A StackExchange.Redis configuration string, e.g. <c>"localhost:6379"</c>.</param>
    /// <returns>The store.</returns>
    static member ConnectAsync(configuration: string) : Task<RedisStore> =
        RedisStore.ConnectAsync(configuration, RedisStoreOptions(), NullLogger.Instance)

    /// <summary>The Redis key that holds a session: <c>KeyPrefix</c> followed by the id.</summary>
    /// <param name="id">The session id.</param>
    member _.KeyOf(id: string) : string = options.KeyPrefix + id

    /// The store's options.
    member _.Options = options

    /// The connection the store uses.
    member _.Connection = connection

    // A marker: with it, Sesame checks at startup that the instances share their Data Protection keys.
    interface ISharedSessionStore

    interface ISessionStore with
        member _.LoadAsync(id, idleTimeout, cancellationToken) =
            let key = keyOf id
            let arguments = [| RedisValue.op_Implicit (RedisLayout.ttlMilliseconds idleTimeout); refreshMilliseconds |]
            task {
                let! reply = bounded "load" id key cancellationToken (fun () -> loadScript.EvaluateAsync(database, key, arguments, reloaded loadScript))
                return loaded id reply
            }

        member _.CommitAsync(id, patch, commit, cancellationToken) =
            task {
                if isNull (box patch) then nullArg "patch"
                let key = keyOf id
                let arguments = RedisLayout.commitArguments patch commit
                let! reply = bounded "commit" id key cancellationToken (fun () -> commitScript.EvaluateAsync(database, key, arguments, reloaded commitScript))
                return committed id patch commit reply
            }

        member _.DeleteAsync(id, cancellationToken) =
            let key = keyOf id
            bounded "delete" id key cancellationToken (fun () -> database.KeyDeleteAsync(key, CommandFlags.None)) :> Task

    interface IDisposable with
        member _.Dispose() =
            connection.remove_ConnectionFailed onFailed
            connection.remove_ConnectionRestored onRestored
            if ownsConnection then connection.Dispose()
