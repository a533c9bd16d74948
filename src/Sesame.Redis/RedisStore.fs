namespace Sesame.Redis

open System
open System.Collections.Generic
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

    let failed = LoggerMessage.Define<string, string>(LogLevel.Warning, EventId(2, "RedisOperationFailed"), "Redis {Operation} of session {Session} failed.")

    let libraryLoaded =
        LoggerMessage.Define<string, string>(
            LogLevel.Information,
            EventId(13, "RedisLibraryLoaded"),
            "Redis had no {Library} function library (a new server, restarted without persistence, or FUNCTION FLUSH); loaded it on the server of {Script}."
        )

    let functionsUnavailable =
        LoggerMessage.Define<string>(
            LogLevel.Information,
            EventId(14, "RedisFunctionsUnavailable"),
            "Redis cannot run the store's function library ({Reason}); its scripts run with EVALSHA instead, which costs Redis more time per call."
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

    let committed = LoggerMessage.Define<int, string>(LogLevel.Debug, EventId(7, "RedisCommitted"), "Committed {Updates} updates to session {Session}.")

    let notConnected =
        LoggerMessage.Define<string, string>(
            LogLevel.Warning,
            EventId(8, "RedisNotConnected"),
            "Redis {Operation} of session {Session} was not sent: there is no connection to Redis (it is being re-established)."
        )

    let notReplicated =
        LoggerMessage.Define<string, string, int64, int>(
            LogLevel.Warning,
            EventId(9, "RedisNotReplicated"),
            "Redis {Operation} of session {Session} was applied on the primary but acknowledged by {Acknowledged} of the {Replicas} replicas asked for."
        )

    let staleMoveCleared =
        LoggerMessage.Define<string>(
            LogLevel.Warning,
            EventId(10, "RedisStaleMoveCleared"),
            "A move of session {Session} to another Redis Cluster slot was left unfinished (its mover failed or gave up); it was undone."
        )

    let sweepFailed =
        LoggerMessage.Define<int, int>(
            LogLevel.Warning,
            EventId(11, "RedisSweepFailed"),
            "Sweeping the expired sessions failed for {Failed} of the {Shards} shards; the next sweep tries again."
        )

    let swept =
        LoggerMessage.Define<int, int64>(
            LogLevel.Debug,
            EventId(12, "RedisSwept"),
            "Swept the expiry sets: {Ended} sessions that Redis ended were reported; {Sessions} sessions are live."
        )

/// Reading script replies (explicit conversions, which F# picks by the annotated result type).
module internal Reply =
    let array (reply: RedisResult) : RedisResult[] = RedisResult.op_Explicit reply
    let text (reply: RedisResult) : string =
        match (RedisResult.op_Explicit reply: string) with
        | null -> ""
        | t -> t
    let int64 (reply: RedisResult) : int64 = RedisResult.op_Explicit reply
    /// An array reply's items as they are (no copy, unlike the conversion to RedisValue[]).
    let items (reply: RedisResult) : RedisResult[] = RedisResult.op_Explicit reply

/// The keys of one shard: its sessions' key prefix and its sets (see Layout.lua).
[<Sealed>]
type internal ShardKeys(prefix: string, tag: char) =
    let text (name: string) = prefix + "{" + string tag + "}" + name
    /// KeyPrefix{t}: as UTF-8, put before an id to make its session's key.
    member val SessionPrefix: RedisKey = RedisKey.op_Implicit (Text.Encoding.UTF8.GetBytes(text ":"): byte[])
    /// The shard's expiry set.
    member val Expiry: RedisKey = RedisKey.op_Implicit (text "expiry")
    /// The shard's id set.
    member val Ids: RedisKey = RedisKey.op_Implicit (text "ids")
    /// The shard's bound hash.
    member val Bound: RedisKey = RedisKey.op_Implicit (text "bound")
    /// The shard's tag.
    member _.Tag = tag

/// Thrown inside an operation when there is no connection to the Redis server that owns its key.
exception internal NotConnected

/// <summary>
/// Sessions in Redis (StackExchange.Redis): one hash per session holding its tree and its facts, each change applied
/// by one Lua script call (FCALL, or EVALSHA before Redis 7) that patches the stored trees atomically, idle expiry as
/// the key's TTL, and the index of sessions by user, the expiry sets and the id sets kept by the same scripts. Works
/// on one Redis, a primary with replicas (Sentinel), and Redis Cluster. For apps that outgrow one machine: many web
/// servers, one Redis.
/// </summary>
/// <remarks>
/// <para>Keys (see the README's key layout): a session is <c>KeyPrefix{c}:id</c>, where <c>c</c> is the id's first
/// character in a Redis Cluster hash tag. A signed-in session's id starts with its user's shard character, so the
/// user's sessions, the user's index <c>KeyPrefix{c}u:user</c> and the shard's expiry set, id set and bound hash
/// (<c>KeyPrefix{c}expiry</c>, <c>ids</c>, <c>bound</c>) share one slot, and every script touches the keys of one slot.
/// Only a move of a session to an id in another slot (a sign-in from an anonymous session, on a cluster) takes three
/// scripts (see <see cref="M:Sesame.Redis.RedisStore.MoveAsync(System.String,System.String,Sesame.SessionChange,Sesame.CommitOptions,System.Threading.CancellationToken)"/>).</para>
/// <para>The hash holds one field per node of each tree, an object's leaves inline in its field within
/// <c>InlineLimit</c> bytes, each leaf as its exact JSON text: numbers keep every digit, <c>[]</c> stays an array and key
/// order is kept (the layout is described at the top of Patch.lua). A commit's Redis
/// work grows with the nodes it replaces and writes, not with the session's size. The hash keeps the data tree's exact
/// size in bytes of compact JSON, so <c>MaxSizeBytes</c> is checked before anything is written, and when the session
/// was last seen.</para>
/// <para>A load is one <c>HGETALL</c> of the hash. Once per <c>ExpiryRefreshInterval</c> (capped at a quarter of the
/// idle timeout), when the idle timeout changed, or when the session is not there, a script follows it that slides
/// the TTL (or reports a session Redis ended). A commit is one script call, and so is a move within one slot. Every
/// operation is bounded by
/// <c>OperationTimeout</c>: an unreachable or slow Redis is a <see cref="T:Sesame.SessionStoreException"/>, never a
/// hang, and the store works again as soon as StackExchange.Redis reconnects. With no connection nothing is sent (the
/// operation fails at once; on a cluster the store first asks the client to learn the cluster's new shape, and waits
/// for it within the timeout), so a commit reported as failed is not replayed later.</para>
/// <para>Sessions Redis ends by itself (TTL, or eviction under <c>maxmemory</c>) are found by a sweep of the expiry sets
/// every <c>SweepInterval</c>, taken out of the indexes and reported to the store's observer; no keyspace notifications
/// are used. <see cref="P:Sesame.Redis.RedisStore.ActiveSessionCount"/> is the number of sessions the last sweep counted.</para>
/// <para>It is shared (<c>IsShared</c>): every app instance on the same Redis serves every session, so their ASP.NET
/// Core Data Protection keys must be shared too: <c>AddRedisStore</c> (or <c>services.AddSesameRedis</c>) keeps the key
/// ring in the same Redis on the same connection.</para>
/// <para>Logs name a session by the first six characters of its id only: ids are secrets.</para>
/// <para>Needs Redis 5.0 or later. On Redis 7 and later its scripts run as one function library, which costs Redis
/// less time per call than EVALSHA; before 7, or where an ACL forbids functions, they run by EVALSHA.</para>
/// </remarks>
[<Sealed>]
type RedisStore private (connection: IConnectionMultiplexer, options: RedisStoreOptions, logger: ILogger, ownsConnection: bool) as this =
    inherit SessionStore()
    static let changing = [ "Layout"; "Patch" ]
    static let reading = [ "Layout" ]
    static let commitScript = RedisScript.Embedded("Commit", changing)
    static let moveScript = RedisScript.Embedded("Move", changing)
    static let loadScript = RedisScript.Embedded("Load", reading)
    static let deleteScript = RedisScript.Embedded("Delete", reading)
    static let moveGapScript = RedisScript.Embedded("MoveGap", reading)
    static let sweepScript = RedisScript.Embedded("Sweep", reading)
    static let listUserScript = RedisScript.Embedded("ListUser", reading)
    static let listShardScript = RedisScript.Embedded("ListShard", reading)
    /// How many expired sessions one sweep script call looks at.
    static let sweepBatch = 500L
    /// How many ids of a shard's set or a user's index one listing script call looks at (see ListShard.lua, ListUser.lua).
    static let listLookLimitCount = 1000L
    static let listLookLimit = RedisValue.op_Implicit listLookLimitCount
    /// ListUser.lua's last argument: read the user's index whole, or by ZRANGEBYLEX.
    static let readWhole = RedisValue.op_Implicit "1"
    static let readByLex = RedisValue.op_Implicit "0"

    do if isNull connection then nullArg "connection"

    // A copy, checked: later changes to the caller's options do not reach the store (its time budgets, its keys).
    let options =
        let copy = (if isNull options then RedisStoreOptions() else options).Clone()
        copy.Validate()
        copy

    let logger = if isNull logger then NullLogger.Instance :> ILogger else logger

    let database = connection.GetDatabase(options.Database, null)
    let prefix = RedisValue.op_Implicit options.KeyPrefix
    let refreshInterval = int64 options.ExpiryRefreshInterval.TotalMilliseconds
    let inlineLimit = options.InlineLimit
    let refreshMilliseconds = RedisValue.op_Implicit refreshInterval
    /// Redis's clock as the load scripts last told it (see ExpiryRefresh).
    let clock = RedisClock()
    /// What this store last read of sessions' expiry fields: whether a load sends its script beside its HGETALL.
    let hints = LoadHints()
    /// What a load that needed no script gives in place of the script's reply.
    let hashReply = [| RedisResult.Create(RedisValue.op_Implicit "hash") |]

    /// Whether Redis refused a call for being over maxmemory (policy noeviction).
    let isOutOfMemory (e: RedisServerException) = e.Kind = RedisErrorKind.OutOfMemory || e.Message.Contains("OOM", StringComparison.Ordinal)
    let replicas = options.WaitForReplicas
    let waitMilliseconds = max 1L (int64 options.WaitForReplicasTimeout.TotalMilliseconds)

    /// How long a move across slots may hold its mark before another operation may undo it.
    let markSpan =
        let timeout = if options.OperationTimeout = Timeout.InfiniteTimeSpan then TimeSpan.FromSeconds 30.0 else options.OperationTimeout
        RedisValue.op_Implicit (int64 (max 1000.0 (min 60000.0 (2.0 * timeout.TotalMilliseconds))))

    let shards =
        let byTag = Array.zeroCreate<ShardKeys> 128
        for tag in RedisLayout.tags do
            byTag[int tag] <- ShardKeys(options.KeyPrefix, tag)
        byTag

    let shardOf (id: string) = shards[int (RedisLayout.tagOf id)]

    /// An id no session is stored under (one that UTF-8 cannot carry, whose encoding would name another id's keys):
    /// loads, deletes and moves from it find nothing without asking the server. (A null id is refused further on.)
    let namesNoSession (id: string) = not (isNull id) && not (SessionStore.IsStorableId id)

    let sessionKey (id: string) : RedisKey = (RedisKey.op_Implicit id: RedisKey).Prepend (shardOf id).SessionPrefix

    let userKey (owner: string) : RedisKey = RedisKey.op_Implicit (options.KeyPrefix + "{" + string owner[0] + "}u:" + owner.Substring 1)

    /// A session's key and its shard's sets, as the load, commit and delete scripts declare them.
    let keysOf (id: string) : RedisKey[] =
        let shard = shardOf id
        [| sessionKey id; shard.Expiry; shard.Ids; shard.Bound |]

    // Only the interactive connection carries the store's commands; the subscription one (pub/sub)
    // fails and comes back with it and would log everything twice.
    let onFailed =
        EventHandler<ConnectionFailedEventArgs>(fun _ e ->
            if e.ConnectionType = ConnectionType.Interactive then
                RedisLog.connectionFailed.Invoke(logger, string e.EndPoint, string e.FailureType, e.Exception))

    let onRestored =
        EventHandler<ConnectionFailedEventArgs>(fun _ e ->
            if e.ConnectionType = ConnectionType.Interactive then RedisLog.connectionRestored.Invoke(logger, string e.EndPoint, null))

    do
        connection.add_ConnectionFailed onFailed
        connection.add_ConnectionRestored onRestored

    /// Names a session in logs and messages without giving its id away.
    let redact (id: string) =
        if isNull id then "(none)"
        elif id.Length <= 6 then "…"
        else id.Substring(0, 6) + "…"

    let invalid (id: string) (reason: string) =
        RedisLog.invalidSession.Invoke(logger, redact id, reason, null)
        SessionStoreException(
            $"The Redis key of session {redact id} does not hold a valid Sesame session ({reason}). Delete the key to start the session afresh."
        )

    let reloaded (script: RedisScript) () = RedisLog.scriptReloaded.Invoke(logger, script.Name, null)

    let libraryLoaded (script: RedisScript) () = RedisLog.libraryLoaded.Invoke(logger, RedisLibrary.name, script.Name, null)

    /// Whether the scripts run as the store's function library (FCALL), until Redis shows it cannot run it (before
    /// Redis 7, or an ACL that forbids it): then with EVALSHA, for the store's lifetime.
    [<VolatileField>]
    let mutable functions = true

    /// Whether Redis is a cluster (StackExchange.Redis gives keys a slot only then).
    let isCluster (key: RedisKey) = connection.HashSlot key >= 0

    [<VolatileField>]
    let mutable lastTopologyRefresh = 0L

    /// Asks the client to read the cluster's shape again (after a failover or a resharding), at most four times a second.
    let refreshTopology () =
        let now = Environment.TickCount64
        let last = lastTopologyRefresh
        if now - last > 250L && Interlocked.CompareExchange(&lastTopologyRefresh, now, last) = last then
            connection.ConfigureAsync(null).ContinueWith((fun (t: Task<bool>) -> t.Exception |> ignore), TaskContinuationOptions.OnlyOnFaulted) |> ignore

    /// Refusals Redis makes before running anything, which pass by themselves: a slot being migrated (TRYAGAIN, or a
    /// script reading a key that already left: the scripts read before they write), a failover under way.
    let passing (e: RedisServerException) =
        match e.Kind with
        | RedisErrorKind.TryAgain
        | RedisErrorKind.Moved
        | RedisErrorKind.Ask
        | RedisErrorKind.ClusterDown
        | RedisErrorKind.MasterDown
        | RedisErrorKind.Loading
        | RedisErrorKind.ReadOnly -> true
        | _ ->
            let message = e.Message
            message.Contains("TRYAGAIN", StringComparison.Ordinal)
            || message.Contains("non local key", StringComparison.Ordinal)
            || message.Contains("CLUSTERDOWN", StringComparison.Ordinal)
            || message.Contains("MOVED", StringComparison.Ordinal)

    /// Waits before trying again: 2, 4, 8 ... up to 100 ms.
    let pause (attempt: int) (token: CancellationToken) = Task.Delay(min 100 (2 <<< min attempt 6), token)

    /// <summary>
    /// Runs a script once Redis can take it: with no connection to the key's server, at once a NotConnected (one
    /// Redis) or, on a cluster, after the client learned the cluster's new shape; refusals that pass are tried again.
    /// When <paramref name="write"/> and <c>WaitForReplicas</c> is set, WAIT follows on the same connection; gives the
    /// number of replicas that acknowledged (Int64.MaxValue when nobody waited).
    /// </summary>
    let evaluate
        (script: RedisScript)
        (keys: RedisKey[])
        (arguments: RedisValue[])
        (write: bool)
        (token: CancellationToken)
        : Task<struct (RedisResult * int64)> = task {
        let mutable result = ValueNone
        let mutable attempt = 0
        while result.IsNone do
            token.ThrowIfCancellationRequested()
            let cluster = isCluster keys[0]
            // With no connection, StackExchange.Redis (by default) holds a command in its backlog and
            // sends it when the connection is back, possibly after this store has reported it failed:
            // a commit the app saw fail would then be applied later. So nothing is sent without one.
            if not (database.IsConnected(keys[0], CommandFlags.None)) then
                if not cluster || token.IsCancellationRequested then raise NotConnected
                // A cluster node is gone: a replica takes its slots over, which the client learns by asking.
                refreshTopology ()
                try
                    do! pause attempt token
                with :? OperationCanceledException ->
                    raise NotConnected
                attempt <- attempt + 1
            else
                let asFunction = functions
                try
                    if write && replicas > 0 then
                        let! reply =
                            script.EvaluateAndWaitAsync(
                                connection,
                                database,
                                cluster,
                                keys,
                                arguments,
                                replicas,
                                waitMilliseconds,
                                asFunction,
                                libraryLoaded script,
                                reloaded script
                            )
                        result <- ValueSome reply
                    elif asFunction then
                        let! reply = script.CallAsync(connection, database, keys, arguments, libraryLoaded script, reloaded script)
                        result <- ValueSome(struct (reply, Int64.MaxValue))
                    else
                        let! reply = script.EvaluateAsync(database, keys, arguments, reloaded script)
                        result <- ValueSome(struct (reply, Int64.MaxValue))
                with
                | :? RedisServerException as e when passing e ->
                    refreshTopology ()
                    do! pause attempt token
                    attempt <- attempt + 1
                // Nothing ran: the same call goes again as a script.
                | :? RedisServerException as e when asFunction && RedisLibrary.isUnavailable e ->
                    if functions then
                        functions <- false
                        RedisLog.functionsUnavailable.Invoke(logger, RedisLibrary.describeUnavailable e, null)
        return result.Value
    }

    /// Runs an operation within OperationTimeout, turning Redis failures into SessionStoreException.
    let bounded (operation: string) (id: string) (cancellationToken: CancellationToken) (work: CancellationToken -> Task<'result>) : Task<'result> = task {
        cancellationToken.ThrowIfCancellationRequested()
        use budget = CancellationTokenSource.CreateLinkedTokenSource cancellationToken
        if options.OperationTimeout <> Timeout.InfiniteTimeSpan then budget.CancelAfter options.OperationTimeout
        let running =
            try
                work budget.Token
            with e ->
                Task.FromException<'result> e
        let abandon () =
            // The abandoned call's own failure, if any, must not go unobserved.
            running.ContinueWith((fun (t: Task<'result>) -> t.Exception |> ignore), TaskContinuationOptions.OnlyOnFaulted) |> ignore
        let timedOut (inner: exn) =
            abandon ()
            RedisLog.timedOut.Invoke(logger, operation, redact id, options.OperationTimeout, null)
            let applied = if operation = "load" || operation = "listing" then "" else " It may or may not have been applied."
            SessionStoreException($"Redis did not answer the {operation} of session {redact id} within {options.OperationTimeout}.{applied}", inner)
        try
            return! running.WaitAsync(budget.Token)
        with
        | _ when cancellationToken.IsCancellationRequested ->
            abandon ()
            return raise (OperationCanceledException(cancellationToken))
        | :? OperationCanceledException as e -> return raise (timedOut e)
        | :? TimeoutException as e -> return raise (timedOut e)
        | NotConnected ->
            RedisLog.notConnected.Invoke(logger, operation, redact id, null)
            return
                raise (
                    SessionStoreException(
                        $"Redis {operation} of session {redact id} was not sent: there is no connection to Redis (it is being re-established)."
                    )
                )
        | :? RedisServerException as e when isOutOfMemory e ->
            RedisLog.failed.Invoke(logger, operation, redact id, e)
            return
                raise (
                    SessionStoreException(
                        $"Redis refused the {operation} of session {redact id}: it is out of memory (used memory is over maxmemory and maxmemory-policy is noeviction). Nothing was stored.",
                        e
                    )
                )
        | :? RedisException as e ->
            RedisLog.failed.Invoke(logger, operation, redact id, e)
            return raise (SessionStoreException($"Redis {operation} of session {redact id} failed: {e.Message}", e))
    }

    /// Fails a write that fewer replicas than WaitForReplicas acknowledged.
    let replicated (operation: string) (id: string) (acknowledged: int64) =
        if acknowledged < int64 replicas then
            RedisLog.notReplicated.Invoke(logger, operation, redact id, acknowledged, replicas, null)
            raise (
                SessionStoreException(
                    $"Redis applied the {operation} of session {redact id} on the primary, but only {acknowledged} of the {replicas} replicas asked for acknowledged it within {options.WaitForReplicasTimeout}: it is not acknowledged, and may be lost if the primary fails before its replicas have it."
                )
            )

    /// Reports a session Redis ended by itself that a script took out of the indexes (reason, owner).
    let reportEnded (id: string) (reason: string) (owner: string) =
        let why = if reason = "evicted" then SessionEndReason.Evicted else SessionEndReason.Expired
        this.ReportEnded(id, RedisLayout.factsOfOwner owner, why)

    /// Reports the ended session a reply may carry from `at` on (see ended in Layout.lua).
    let reportFrom (id: string) (parts: RedisResult[]) (at: int) =
        if parts.Length >= at + 2 then reportEnded id (Reply.text parts[at]) (Reply.text parts[at + 1])

    /// Clears a stale move mark found on session `id` and deletes the new session its mover had made.
    let clearStale (id: string) (mark: string) (token: CancellationToken) : Task = task {
        let! struct (reply, _) =
            evaluate moveGapScript (keysOf id) [| prefix; RedisValue.op_Implicit id; RedisValue.op_Implicit "unmark"; RedisValue.op_Implicit mark |] true token
        if Reply.text (Reply.array reply).[0] = "ok" then
            RedisLog.staleMoveCleared.Invoke(logger, redact id, null)
            let toId = mark.Substring(mark.IndexOf ' ' + 1)
            let! _ = evaluate deleteScript (keysOf toId) [| prefix; RedisValue.op_Implicit toId |] true token
            ()
    }

    /// Runs a script on a session that a move to another slot may hold (Layout.lua's checkMark): while the move is
    /// under way, waits and tries again; a stale mark is cleared first.
    let onSession (id: string) (run: unit -> Task<struct (RedisResult * int64)>) (token: CancellationToken) : Task<struct (RedisResult[] * int64)> = task {
        let mutable result = ValueNone
        let mutable attempt = 0
        while result.IsNone do
            let! struct (reply, acknowledged) = run ()
            let parts = Reply.array reply
            match Reply.text parts[0] with
            | "moving" ->
                do! pause attempt token
                attempt <- attempt + 1
            | "stale" -> do! clearStale id (Reply.text parts[1]) token
            | _ -> result <- ValueSome(struct (parts, acknowledged))
        return result.Value
    }

    /// What a change's script replied when it did not commit: the result, or the exception, of a refusal.
    let refused (id: string) (change: SessionChange) (commit: CommitOptions) (parts: RedisResult[]) : CommitResult =
        match Reply.text parts[0] with
        | "gone" -> CommitResult.SessionGone
        | "shape" -> CommitResult.ShapeChanged
        | "limit" -> CommitResult.UserLimitReached
        | "large" -> raise (SessionTooLargeException(Reply.int64 parts[1], commit.MaxSizeBytes))
        | "conflict" ->
            raise (RedisLayout.conflict change (int (Reply.int64 parts[1])) (Reply.text parts[2]) (int (Reply.int64 parts[3])) (Reply.text parts[4]))
        | "corrupt" -> raise (invalid id (Reply.text parts[1]))
        // As StoredSession refuses it in the stores that hold trees.
        | "notobject" -> invalidArg "data" "A stored session's tree and facts are JSON objects."
        | "exists" -> invalidOp "The move's new id is already a session; a new id must be fresh."
        | "foreign" ->
            invalidArg
                "toId"
                "On Redis Cluster a session bound to a user must have an id that starts with the user's shard character (Sesame's sign-in makes such ids), so that it shares a slot with the user's index."
        | other -> raise (SessionStoreException($"A Redis script of the store gave an unexpected reply '{other}'."))

    /// The owner a move leaves the session with, as Move.lua takes it: '=' the session's own (the change does not
    /// bind), '' none, else the owner of the user the change binds it to.
    let ownerAfter (change: SessionChange) =
        if not change.BindsUser then
            "="
        else
            match Patch.tryApply change.Meta Json.emptyObject with
            | Ok facts ->
                match SessionMeta.userOf facts with
                | Some user -> RedisLayout.ownerOf user
                | None -> ""
            // The script meets the same conflict on the stored facts, or none: it decides.
            | Error _ -> ""

    /// Move.lua's keys and arguments.
    let moveCall
        (fromId: string)
        (toId: string)
        (mode: string)
        (owner: string)
        (copied: RedisResult[])
        (change: SessionChange)
        (commit: CommitOptions)
        (cluster: bool)
        =
        let toKey = sessionKey toId
        let toShard = shardOf toId
        // The old id's sets are this script's only in mode 'k' (in mode 'c' they are in another slot).
        let fromShard = if mode = "k" then shardOf fromId else toShard
        let ownerKey = if owner = "" || owner = "=" then toKey else userKey owner
        let keys = [|
            (if mode = "k" then sessionKey fromId else toKey)
            toKey
            toShard.Expiry
            toShard.Ids
            toShard.Bound
            ownerKey
            fromShard.Expiry
            fromShard.Ids
            fromShard.Bound
        |]
        // The 11 values below, the copied fields, then the change: sized for the most they take (a value whose leaves go inline takes fewer).
        let steps = ScriptSteps.ofChange change
        let arguments = ScriptArguments(11 + copied.Length + RedisLayout.argumentCountOf steps)
        arguments.Add prefix
        arguments.Add(RedisValue.op_Implicit (if isNull fromId then "" else fromId))
        arguments.Add(RedisValue.op_Implicit toId)
        arguments.Add(RedisValue.op_Implicit mode)
        arguments.Add(RedisValue.op_Implicit owner)
        arguments.Add(RedisValue.op_Implicit (RedisLayout.ttlMilliseconds commit.IdleTimeout))
        arguments.Add(RedisValue.op_Implicit (int64 commit.MaxSizeBytes))
        arguments.Add(RedisValue.op_Implicit (int64 (max 0 commit.UserLimit.MaxSessions)))
        arguments.Add(RedisValue.op_Implicit (if commit.UserLimit.Policy = UserLimitPolicy.Refuse then "r" else "e"))
        arguments.Add(RedisValue.op_Implicit (if cluster then "1" else "0"))
        arguments.Add(RedisValue.op_Implicit (int64 (copied.Length / 2)))
        for item in copied do
            arguments.Add(RedisResult.op_Explicit item: RedisValue)
        RedisLayout.addChange arguments inlineLimit change steps
        struct (keys, arguments.ToArray())

    /// Reports the sessions a move ended to keep its user within the limit (Move.lua's 'ok' reply).
    let reportVictims (parts: RedisResult[]) =
        let mutable i = 1
        while i < parts.Length do
            let id = Reply.text parts[i]
            let count = int (Reply.int64 parts[i + 1])
            let facts =
                match RedisLayout.rebuildFacts parts (i + 2) count with
                | Ok facts -> facts
                | Error _ -> Json.emptyObject
            this.ReportEnded(id, facts, SessionEndReason.UserLimit)
            i <- i + 2 + count

    /// A move whose ids share a slot (or not a cluster): one script.
    let moveWithin (fromId: string) (toId: string) (change: SessionChange) (commit: CommitOptions) (owner: string) (cluster: bool) (token: CancellationToken) =
        task {
            let mode = if isNull fromId then "n" else "k"
            let struct (keys, arguments) = moveCall fromId toId mode owner [||] change commit cluster
            let! struct (parts, acknowledged) =
                if isNull fromId then
                    task {
                        let! struct (reply, acknowledged) = evaluate moveScript keys arguments true token
                        return struct (Reply.array reply, acknowledged)
                    }
                else
                    onSession fromId (fun () -> evaluate moveScript keys arguments true token) token
            match Reply.text parts[0] with
            | "ok" ->
                reportVictims parts
                replicated "move" toId acknowledged
                return CommitResult.Committed
            | "gone" ->
                reportFrom fromId parts 1
                return CommitResult.SessionGone
            | _ -> return refused toId change commit parts
        }

    /// <summary>
    /// A move to an id in another Redis Cluster slot, in three scripts: 'out' marks the old session and copies it;
    /// Move.lua (mode 'c') writes the copy with the change under the new id, indexes it and enforces the user's limit;
    /// 'done' deletes the old session if it still carries the mark (else the new one is deleted again and the move is
    /// tried afresh). A refusal or a failure of the second step takes the mark away.
    /// </summary>
    let moveAcross (fromId: string) (toId: string) (change: SessionChange) (commit: CommitOptions) (owner: string) (token: CancellationToken) =
        let gapKeys = keysOf fromId
        let gap (operation: string) (argument: RedisValue) (extra: RedisValue[]) =
            Array.append [| prefix; RedisValue.op_Implicit fromId; RedisValue.op_Implicit operation; argument |] extra
        let unmark (mark: string) = task {
            let! _ = evaluate moveGapScript gapKeys (gap "unmark" (RedisValue.op_Implicit mark) [||]) true token
            ()
        }
        let deleteNew () = task {
            let! _ = evaluate deleteScript (keysOf toId) [| prefix; RedisValue.op_Implicit toId |] true token
            ()
        }
        task {
            let mutable result = ValueNone
            while result.IsNone do
                let! struct (out, _) =
                    onSession fromId (fun () -> evaluate moveGapScript gapKeys (gap "out" (RedisValue.op_Implicit toId) [| markSpan |]) true token) token
                match Reply.text out[0] with
                | "gone" ->
                    reportFrom fromId out 1
                    result <- ValueSome CommitResult.SessionGone
                | "ok" ->
                    let mark = Reply.text out[1]
                    let copied = Reply.items out[2]
                    let struct (keys, arguments) = moveCall fromId toId "c" owner copied change commit true
                    let! moved = task {
                        try
                            let! struct (reply, acknowledged) = evaluate moveScript keys arguments true token
                            return Ok(struct (Reply.array reply, acknowledged))
                        with e ->
                            return Error e
                    }
                    match moved with
                    | Error e ->
                        // Whether the new session was written is unknown: delete it, then take the mark away. If that
                        // fails too, the mark goes stale and the next operation on the session undoes the move.
                        try
                            do! deleteNew ()
                            do! unmark mark
                        with _ ->
                            ()
                        raise e
                    | Ok(struct (parts, acknowledged)) when Reply.text parts[0] = "ok" ->
                        reportVictims parts
                        let! struct (finished, finishedAcknowledged) = evaluate moveGapScript gapKeys (gap "done" (RedisValue.op_Implicit mark) [||]) true token
                        if Reply.text (Reply.array finished).[0] = "ok" then
                            replicated "move" toId (min acknowledged finishedAcknowledged)
                            result <- ValueSome CommitResult.Committed
                        else
                            // The mark is gone: the old session expired meanwhile, or the move was undone as stale.
                            // Delete the copy; the next round finds the old session gone, or moves it again.
                            do! deleteNew ()
                    | Ok(struct (parts, _)) ->
                        do! unmark mark
                        result <- ValueSome(refused toId change commit parts)
                | _ -> result <- ValueSome(refused fromId change commit out)
            return result.Value
        }

    /// One page of a user's sessions, or of a shard's, as ListUser.lua and ListShard.lua give them.
    let summaries (items: RedisResult[]) (from: int) (into: ResizeArray<SessionSummary>) =
        let now = DateTimeOffset.UtcNow
        let mutable i = from
        while i < items.Length do
            let id = Reply.text items[i]
            let size = Reply.int64 items[i + 1]
            let seen = Reply.int64 items[i + 2]
            let left = Reply.int64 items[i + 3]
            let count = int (Reply.int64 items[i + 4])
            let facts =
                match RedisLayout.rebuildFacts items (i + 5) count with
                | Ok facts -> facts
                | Error reason -> raise (invalid id reason)
            let expires = if left < 0L then DateTimeOffset.MaxValue else now.AddMilliseconds(float left)
            into.Add(SessionSummary(id, facts, DateTimeOffset.FromUnixTimeMilliseconds seen, expires, size))
            i <- i + 5 + count

    [<VolatileField>]
    let mutable activeCount = Nullable<int64>()

    [<VolatileField>]
    let mutable sweeping = 0

    [<VolatileField>]
    let mutable disposed = false

    /// Sweeps every shard once; gives how many ended sessions it reported.
    let sweepAll (cancellationToken: CancellationToken) : Task<int> = task {
        let mutable reported = 0
        let mutable live = 0L
        let mutable failed = 0
        let mutable failure: exn = null
        for tag in RedisLayout.tags do
            let shard = shards[int tag]
            let keys = [| shard.Expiry; shard.Ids; shard.Bound |]
            let mutable more = true
            while more do
                cancellationToken.ThrowIfCancellationRequested()
                try
                    let! reply =
                        bounded "sweep" (string tag) cancellationToken (fun token -> task {
                            let! struct (reply, _) = evaluate sweepScript keys [| prefix; RedisValue.op_Implicit sweepBatch |] false token
                            return reply
                        })
                    let parts = Reply.array reply
                    more <- Reply.int64 parts[0] = 1L
                    if not more then live <- live + Reply.int64 parts[1]
                    let mutable i = 2
                    while i < parts.Length do
                        reportEnded (Reply.text parts[i]) "expired" (Reply.text parts[i + 1])
                        reported <- reported + 1
                        i <- i + 2
                with :? SessionStoreException as e ->
                    failed <- failed + 1
                    failure <- e
                    more <- false
        if failed = 0 then
            activeCount <- Nullable live
            RedisLog.swept.Invoke(logger, reported, live, null)
        // A sweep the store's disposal cut short (its connection closed) is no news.
        elif not disposed then
            RedisLog.sweepFailed.Invoke(logger, failed, RedisLayout.tags.Length, failure)
        return reported
    }

    let sweepInterval = options.SweepInterval

    let sweeper =
        if sweepInterval = TimeSpan.Zero || sweepInterval = Timeout.InfiniteTimeSpan then
            null
        else
            // The first sweep soon after the start, at a moment of the instance's own, so that instances spread out.
            let first = TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * (min 5000.0 sweepInterval.TotalMilliseconds))
            new Timer(
                (fun _ ->
                    if not disposed && Interlocked.Exchange(&sweeping, 1) = 0 then
                        sweepAll(CancellationToken.None)
                            .ContinueWith(fun (t: Task<int>) ->
                                t.Exception |> ignore
                                Volatile.Write(&sweeping, 0))
                        |> ignore),
                null,
                first,
                sweepInterval
            )

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
    /// <param name="configuration">A StackExchange.Redis configuration string, e.g. <c>"localhost:6379"</c>, <c>"host:6379,password=...,ssl=true"</c>, or a cluster's nodes.</param>
    /// <param name="options">The store's options (<c>null</c> for the defaults).</param>
    /// <param name="logger">Where the store logs (<c>null</c> for nowhere).</param>
    /// <returns>The store.</returns>
    static member ConnectAsync(configuration: string, options: RedisStoreOptions, logger: ILogger) : Task<RedisStore> =
        if isNull configuration then nullArg "configuration"
        // Options the store would refuse are refused before a connection is made for it.
        if not (isNull options) then options.Validate()
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
    static member ConnectAsync(configuration: string) : Task<RedisStore> = RedisStore.ConnectAsync(configuration, RedisStoreOptions(), NullLogger.Instance)

    /// Whether the store runs its scripts as its function library (true until Redis shows it cannot; tests set it
    /// to false to run the EVALSHA path on a Redis that has functions).
    member internal _.UsesFunctions
        with get () = functions
        and set value = functions <- value

    /// <summary>The Redis key that holds a session: <c>KeyPrefix{c}:id</c>, where <c>c</c> is the id's shard tag (its first character, for ids Sesame makes).</summary>
    /// <param name="id">The session id.</param>
    member internal _.KeyOf(id: string) : string =
        if isNull id then nullArg "id"
        options.KeyPrefix + "{" + string (RedisLayout.tagOf id) + "}:" + id

    /// <summary>The Redis key of a user's index of sessions: <c>KeyPrefix{c}u:userId</c>, where <c>c</c> is the user's shard character.</summary>
    /// <param name="userId">The user id.</param>
    member internal _.UserIndexKeyOf(userId: string) : string =
        if isNull userId then nullArg "userId"
        options.KeyPrefix + "{" + string (RedisLayout.shardOf userId) + "}u:" + userId

    /// The store's options.
    member _.Options = options

    /// The connection the store uses.
    member _.Connection = connection

    /// <summary>
    /// Sweeps the expiry sets now (the store also does every <c>SweepInterval</c>): sessions whose expiry passed and
    /// whose key Redis removed (expired, or evicted under maxmemory) are taken out of the indexes and reported to the
    /// observer as <c>Expired</c>, each by one store instance only, and the live sessions are counted.
    /// </summary>
    /// <param name="cancellationToken">Cancels the sweep (shards already swept stay swept).</param>
    /// <returns>How many ended sessions this sweep reported.</returns>
    member _.SweepAsync(cancellationToken: CancellationToken) : Task<int> = sweepAll cancellationToken

    /// <summary>True: every app instance on the same Redis serves every session.</summary>
    override _.IsShared = true

    /// <summary>
    /// The number of live sessions the last sweep counted (the sum of the shards' id sets: sessions Redis ended since
    /// then are still in it), or <c>null</c> before the first complete sweep. Reading it sends nothing to Redis.
    /// </summary>
    override _.ActiveSessionCount = activeCount

    /// <inheritdoc />
    override _.LoadAsync(id, idleTimeout, cancellationToken) =
        if namesNoSession id then
            Task.FromResult<StoredSession> null
        else
            task {
                if isNull id then nullArg (nameof id)
                let keys = keysOf id
                let ttl = RedisLayout.ttlMilliseconds idleTimeout
                let window = ExpiryRefresh.loadWindow ttl refreshInterval
                let isWrongType (e: RedisServerException) = e.Message.StartsWith("WRONGTYPE", StringComparison.Ordinal)
                // A key of another type than a session's hash (its HGETALL failed): what it holds, for the error.
                let otherType () = task {
                    let! kind = database.ExecuteAsync("TYPE", [| box keys[0] |], CommandFlags.DemandMaster)
                    return struct ((null: HashEntry[]), [| kind |])
                }
                let! struct (entries: HashEntry[], parts: RedisResult[]) =
                    bounded "load" id cancellationToken (fun token -> task {
                        // The hash by HGETALL; the script (Load.lua), which slides the expiry when due or reports a session that
                        // is gone, only when it may be needed (see ExpiryRefresh): beside the HGETALL, in the same round trip,
                        // when this store guesses so (see LoadHints), or after it, when the hash shows it. A script that returned
                        // the hash would cost Redis several times what HGETALL does. With no connection nothing is sent (the
                        // script's call says so).
                        // Only ever the primary: a replica may be behind (a session signed out there still), and a load with the
                        // primary gone must fail, as the script's call does, rather than serve that.
                        let redisNow = clock.TryNow()
                        let read =
                            if database.IsConnected(keys[0], CommandFlags.DemandMaster) then
                                database.HashGetAllAsync(keys[0], CommandFlags.DemandMaster)
                            else
                                null
                        let guessedDue = isNull read || not (hints.LikelyNotDue(id, ttl, window, redisNow))
                        // Beside the script, the read is observed even when the script's call fails first.
                        if guessedDue && not (isNull read) then
                            read.ContinueWith((fun (t: Task<HashEntry[]>) -> t.Exception |> ignore), TaskContinuationOptions.OnlyOnFaulted) |> ignore
                        let mutable quick = ValueNone
                        if not guessedDue then
                            // The hash alone decides whether the expiry is due, by the deadline it records (see
                            // ExpiryRefresh.dueByDeadline) against Redis's clock read now that it came; when it cannot tell,
                            // the script runs, and decides by the key's TTL.
                            try
                                let! entries = read
                                if entries.Length > 0 then
                                    let fields = ExpiryRefresh.expiryFields entries
                                    match ExpiryRefresh.dueByDeadline fields ttl window (clock.TryNow()) with
                                    | ValueSome false ->
                                        hints.Record(id, fields)
                                        quick <- ValueSome(struct (entries, hashReply))
                                    | _ -> ()
                            with :? RedisServerException as e when isWrongType e ->
                                // The script is not needed to say so.
                                let! reply = otherType ()
                                quick <- ValueSome reply
                        match quick with
                        | ValueSome reply -> return reply
                        | ValueNone ->
                            let arguments = [|
                                prefix
                                RedisValue.op_Implicit id
                                RedisValue.op_Implicit ttl
                                RedisValue.op_Implicit window
                                RedisValue.op_Implicit (if clock.WantsReading then "1" else "0")
                            |]
                            let sentAt = LocalClocks.Now()
                            let! slide = task {
                                try
                                    let! struct (reply, _) = evaluate loadScript keys arguments false token
                                    return ValueSome reply
                                with :? RedisServerException as e when not (isNull read) && isOutOfMemory e ->
                                    // Redis is full, and the script went by EVALSHA (its library gone: Redis refuses to load
                                    // it when full), which Redis refuses at its first write, the slide. The read is the
                                    // session as it is: it is served, and its expiry slides at a later load.
                                    return ValueNone
                            }
                            match slide with
                            | ValueNone ->
                                try
                                    let! entries = read
                                    return struct (entries, hashReply)
                                with :? RedisServerException as e when isWrongType e ->
                                    return! otherType ()
                            | ValueSome reply ->
                                let parts = Reply.array reply
                                if Reply.text parts[0] <> "hash" then
                                    return struct (null, parts)
                                else
                                    let now = Reply.int64 parts[1]
                                    if now > 0L then clock.Observe(now, sentAt)
                                    let slid = Reply.int64 parts[2] = 1L
                                    if slid then hints.Record(id, now, ttl)
                                    if isNull read then
                                        // Connected again by the time the script went: read now.
                                        let! entries = database.HashGetAllAsync(keys[0], CommandFlags.DemandMaster)
                                        return struct (entries, parts)
                                    else
                                        try
                                            let! entries = read
                                            if not slid then hints.Record(id, ExpiryRefresh.expiryFields entries)
                                            return struct (entries, parts)
                                        with :? RedisServerException as e when isWrongType e ->
                                            // Its expiry was not due: the script did not look at it.
                                            return! otherType ()
                    })
                match Reply.text parts[0] with
                | "hash" when entries.Length = 0 ->
                    // Gone between the read and the script's look (deleted, or ended and then reported by the sweep).
                    return null
                | "hash" ->
                    match RedisLayout.rebuildHash entries with
                    | Ok(struct (data, facts, size)) -> return StoredSession(data, facts, size)
                    | Error reason -> return raise (invalid id reason)
                | "none" ->
                    reportFrom id parts 1
                    return null
                | kind -> return raise (invalid id $"the key holds a {kind}, not a hash")
            }

    /// <inheritdoc />
    override _.CommitAsync(id, change, commit, cancellationToken) = task {
        SessionStore.CheckStorableId(id, nameof id)
        if isNull change then nullArg (nameof change)
        if change.BindsUser then invalidArg (nameof change) "A commit cannot bind a session to a user or unbind it; a move does (sign-in rotates the session)."
        let keys = keysOf id
        let arguments = RedisLayout.commitArguments prefix id commit refreshMilliseconds inlineLimit change
        let! struct (parts, acknowledged) =
            bounded "commit" id cancellationToken (fun token -> onSession id (fun () -> evaluate commitScript keys arguments true token) token)
        match Reply.text parts[0] with
        | "ok" ->
            reportFrom id parts 1
            replicated "commit" id acknowledged
            if logger.IsEnabled LogLevel.Debug then RedisLog.committed.Invoke(logger, change.Data.Updates.Length + change.Meta.Updates.Length, redact id, null)
            return CommitResult.Committed
        | "gone" ->
            reportFrom id parts 1
            return CommitResult.SessionGone
        | _ -> return refused id change commit parts
    }

    /// <summary>
    /// Moves a session to a new id in one atomic step (see <see cref="T:Sesame.SessionStore"/>): one script when both
    /// ids share a Redis Cluster slot (always the case for a signed-in session's rotation) or Redis is not a cluster.
    /// </summary>
    /// <remarks>
    /// <para>On a cluster, a move to an id in another slot (a sign-in from an anonymous session, or a rotation of one)
    /// takes three scripts: (1) on the old slot, the old session is marked as moving and copied; (2) on the new slot, the
    /// copy is written with the change under the new id, indexed, and the user's limit enforced (a refusal takes the mark
    /// away: nothing changed); (3) on the old slot, the old session is deleted if it still carries the mark.</para>
    /// <para>What others see meanwhile: a load of the old id reads the old session as it was before the move. A commit,
    /// a delete or another move of the old id waits until the move ends (the store tries it again every few
    /// milliseconds, within <c>OperationTimeout</c>), and then finds the session gone (<c>SessionGone</c>, nothing
    /// stored, as after a move in one step) or, if the move was refused, applies as it would have. So a change committed
    /// under the old id is either carried over (it came before step 1) or refused; it is never half-applied and never
    /// brings the old id back. A mover that dies between the steps leaves a mark that holds for twice
    /// <c>OperationTimeout</c> (at least a second); the first operation on the old id after that undoes the move
    /// (deletes the copy, takes the mark away) and goes on with the old session.</para>
    /// </remarks>
    override _.MoveAsync(fromId, toId, change, commit, cancellationToken) = task {
        SessionStore.CheckStorableId(toId, nameof toId)
        if isNull change then nullArg (nameof change)
        let owner = ownerAfter change
        let toKey = sessionKey toId
        let cluster = isCluster toKey
        if cluster && owner <> "" && owner <> "=" && connection.HashSlot(userKey owner) <> connection.HashSlot toKey then
            invalidArg
                (nameof toId)
                "On Redis Cluster a session bound to a user must have an id that starts with the user's shard character (Sesame's sign-in makes such ids), so that it shares a slot with the user's index."
        let across = cluster && not (isNull fromId) && connection.HashSlot(sessionKey fromId) <> connection.HashSlot toKey
        if namesNoSession fromId then
            return CommitResult.SessionGone
        else
            return!
                bounded "move" (if isNull fromId then toId else fromId) cancellationToken (fun token ->
                    if across then moveAcross fromId toId change commit owner token else moveWithin fromId toId change commit owner cluster token)
    }

    /// <inheritdoc />
    override _.DeleteAsync(id, cancellationToken) =
        if namesNoSession id then
            Task.FromResult false
        else
            task {
                if isNull id then nullArg (nameof id)
                let keys = keysOf id
                let arguments = [| prefix; RedisValue.op_Implicit id |]
                let! struct (parts, acknowledged) =
                    bounded "delete" id cancellationToken (fun token -> onSession id (fun () -> evaluate deleteScript keys arguments true token) token)
                match Reply.text parts[0] with
                | "deleted" ->
                    replicated "delete" id acknowledged
                    return true
                | _ ->
                    reportFrom id parts 1
                    return false
            }

    /// <summary>
    /// Lists live sessions, a page at a time, in id order (byte order of the ids' UTF-8): one user's from the user's
    /// index (one script, which also takes out entries whose session is gone), or all, over the shards' id sets (a
    /// script per shard visited; never KEYS or SCAN). <c>Next</c> is the last id of the page.
    /// </summary>
    override _.ListAsync(query, cancellationToken) = task {
        if query.Limit <= 0 then invalidArg (nameof query) "A listing's Limit must be positive."
        let after = if isNull query.After then "" else query.After
        let found = ResizeArray<SessionSummary>()
        // Lists one sorted set (a user's index, or a shard's id set) from `from` into `found`, until it holds
        // Limit + 1 sessions or the set ends. Its script may stop early, having looked at its most ids (ListUser.lua,
        // ListShard.lua): then again from where it stopped. Gives true when sessions of the set follow those found.
        // `userIndex`: the set is a user's index, whose script takes one more argument (ListUser.lua's state 3).
        let listSet (script: RedisScript) (userIndex: bool) (key: RedisKey) (subject: string) (from: string) = task {
            let mutable from = from
            let mutable unfinished = true
            let mutable more = false
            // A user's index: calls in a row that set fewer entries to 0 than a call's most ids (ListUser.lua's state 3).
            let mutable trickles = 0
            while unfinished && not more && found.Count <= query.Limit do
                let want = int64 query.Limit + 1L - int64 found.Count
                let position = from
                // After three of them, an earlier Sesame is scoring new entries as fast as they are set to 0: the
                // index is read whole, as before.
                let arguments = [| prefix; RedisValue.op_Implicit position; RedisValue.op_Implicit want; listLookLimit |]
                let arguments = if userIndex then Array.append arguments [| (if trickles >= 3 then readWhole else readByLex) |] else arguments
                let! reply =
                    bounded "listing" subject cancellationToken (fun token -> task {
                        let! struct (reply, _) = evaluate script [| key |] arguments false token
                        return reply
                    })
                let items = Reply.items reply
                match Reply.int64 items[0] with
                | 3L -> if Reply.int64 items[1] < listLookLimitCount then trickles <- trickles + 1
                | state ->
                    trickles <- 0
                    summaries items 2 found
                    match state with
                    | 1L -> more <- true
                    | 2L -> from <- Reply.text items[1]
                    | _ -> unfinished <- false
            return more
        }
        let mutable more = false
        if not (isNull query.UserId) then
            let! userMore = listSet listUserScript true (userKey (RedisLayout.ownerOf query.UserId)) query.UserId after
            more <- userMore
        else
            let first = if after = "" then RedisLayout.tags[0] else RedisLayout.tagOf after
            for tag in RedisLayout.tags do
                if not more && tag >= first && found.Count <= query.Limit then
                    let! shardMore = listSet listShardScript false shards[int tag].Ids (string tag) (if tag = first then after else "")
                    more <- shardMore
        let more = more || found.Count > query.Limit
        let shown = if found.Count > query.Limit then found.GetRange(0, query.Limit) else found
        let next = if more && shown.Count > 0 then shown[shown.Count - 1].Id else null
        return SessionPage(shown.ToArray(), next)
    }

    interface IDisposable with
        member _.Dispose() =
            disposed <- true
            if not (isNull sweeper) then sweeper.Dispose()
            connection.remove_ConnectionFailed onFailed
            connection.remove_ConnectionRestored onRestored
            if ownsConnection then connection.Dispose()
