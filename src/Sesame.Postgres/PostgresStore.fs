namespace Sesame.Postgres

open System
open System.Collections.Generic
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging
open Microsoft.Extensions.Logging.Abstractions
open Npgsql
open NpgsqlTypes
open Sesame

/// The store's log messages, each with a stable event id.
module internal PostgresLog =

    let schemaCreated =
        LoggerMessage.Define<string, string, int>(
            LogLevel.Information,
            EventId(1, "PostgresSchemaCreated"),
            "Created the Sesame tables {Schema}.{Table} (schema version {Version})."
        )

    let failed =
        LoggerMessage.Define<string, string>(LogLevel.Warning, EventId(2, "PostgresOperationFailed"), "PostgreSQL {Operation} of session {Session} failed.")

    let timedOut =
        LoggerMessage.Define<string, string, TimeSpan>(
            LogLevel.Warning,
            EventId(3, "PostgresOperationTimedOut"),
            "PostgreSQL {Operation} of session {Session} did not finish within {Timeout}."
        )

    let invalidSession =
        LoggerMessage.Define<string, string>(
            LogLevel.Error,
            EventId(4, "PostgresInvalidSession"),
            "The rows of session {Session} do not hold a valid Sesame session: {Reason}."
        )

    let swept = LoggerMessage.Define<int>(LogLevel.Debug, EventId(5, "PostgresSwept"), "Deleted {Count} expired sessions.")

    let sweepFailed = LoggerMessage.Define(LogLevel.Warning, EventId(6, "PostgresSweepFailed"), "Deleting expired sessions failed; the next sweep tries again.")

    let retrying =
        LoggerMessage.Define<string, string>(
            LogLevel.Information,
            EventId(7, "PostgresRetrying"),
            "PostgreSQL {Operation} of session {Session} could not be sent (no connection, or the server was shutting down); retrying on a new connection."
        )

    let committed = LoggerMessage.Define<int, string>(LogLevel.Debug, EventId(8, "PostgresCommitted"), "Committed {Updates} updates to session {Session}.")

    let resetsOnClose =
        LoggerMessage.Define(
            LogLevel.Warning,
            EventId(9, "PostgresResetsOnClose"),
            "The Npgsql data source given to the Sesame store resets connections when they return to the pool (DISCARD ALL), which makes PostgreSQL plan the store's functions again on every call. Add 'No Reset On Close=true' to its connection string (and 'Max Auto Prepare=20'), or give the store a connection string of its own."
        )

    let functionsKept =
        LoggerMessage.Define<string, string, string>(
            LogLevel.Warning,
            EventId(10, "PostgresFunctionsKept"),
            "The Sesame tables {Schema}.{Table} keep the functions they have: PostgreSQL refused to replace them with this Sesame's ({Reason}). Run the part of PostgresStore.SchemaScript from its '-- Functions.' line as their owner, or set CreateSchema = false."
        )

/// <summary>
/// One gate per session id with writes in flight from this instance: its commits and moves go to the database one
/// at a time. They would wait for each other on the session's row lock anyway; waiting here instead keeps a busy
/// session from holding every pooled connection while it waits.
/// </summary>
[<Sealed>]
type internal SessionGates() =
    let gates = Dictionary<string, struct (SemaphoreSlim * int ref)>(StringComparer.Ordinal)

    let leave (id: string) (gate: SemaphoreSlim) (users: int ref) (entered: bool) =
        if entered then gate.Release() |> ignore
        lock gates (fun () ->
            users.Value <- users.Value - 1
            if users.Value = 0 then
                gates.Remove id |> ignore
                gate.Dispose())

    /// Waits for the session's gate; dispose the result to let the next one through.
    member _.EnterAsync(id: string, cancellationToken: CancellationToken) : Task<IDisposable> =
        let struct (gate, users) =
            lock gates (fun () ->
                match gates.TryGetValue id with
                | true, entry ->
                    let struct (_, users) = entry
                    users.Value <- users.Value + 1
                    entry
                | _ ->
                    let entry = struct (new SemaphoreSlim(1, 1), ref 1)
                    gates[id] <- entry
                    entry)
        let waiting = gate.WaitAsync cancellationToken
        task {
            try
                do! waiting
            finally
                if not waiting.IsCompletedSuccessfully then leave id gate users false
            return {
                new IDisposable with
                    member _.Dispose() = leave id gate users true
            }
        }

/// The operation failed before the database could have acted on it: sending it again is safe.
exception private NotSent of exn

/// <summary>
/// Sessions in PostgreSQL (Npgsql): a row per session and a row per node of its JSON tree, each commit applied inside
/// the database by one call of a function Sesame installs, atomically against the stored session. Many web servers,
/// one database.
/// </summary>
/// <remarks>
/// <para>Layout: jsonb would lose what Sesame promises to keep (it rewrites numbers written with an exponent:
/// <c>1e3</c> becomes <c>1000</c>; and it orders keys by length), and a session kept as one text value would be
/// rewritten whole by every commit.
/// So every node of the tree is a row holding its exact JSON text (a container's row lists its members, in order):
/// a commit that changes one key updates one row, and its WAL grows with what changed, not with the session. The
/// layout is described at the top of the schema script (<see cref="M:Sesame.Postgres.PostgresStore.SchemaScript(Sesame.Postgres.PostgresStoreOptions)"/>).</para>
/// <para>One round trip per load, commit, move and delete: each is one call of a PL/pgSQL function that locks the
/// session's row, applies the change path by path (so concurrent commits to different paths both survive, and
/// increments and appends add up exactly), checks the size limit and the user limit, and raises rather than write
/// anything that breaks them. A commit that may grow a stored session's facts (flash), and a move that may (a sign-in),
/// also sums the facts' rows before and after, in a transaction of their own, and so take one round trip more (the
/// COMMIT): concurrent requests cannot add up flash past the size limit. Moves take the bound user's advisory lock
/// before any session row, so two racing sign-ins of one user keep its limit and never deadlock. Commits and moves of
/// one session from this instance wait for each other in the process (they would on the row lock anyway), so a busy
/// session holds one pooled connection, not all of them.</para>
/// <para>Expiry: a load or commit never serves an expired session (it ends it and reports it as expired); a sweeper
/// deletes expired sessions every <c>SweepInterval</c> in batches of <c>SweepBatchSize</c>, skipping rows that a
/// commit holds (<c>FOR UPDATE SKIP LOCKED</c>), so it never waits for a commit and no commit waits long for it. Every
/// instance may sweep; they share the work. Loads and commits slide the expiry without touching an index (HOT
/// updates): the indexed sweep time is a lower bound of the expiry that only the sweeper moves up.</para>
/// <para>Faults: every operation is bounded by <c>OperationTimeout</c> and fails with a
/// <see cref="T:Sesame.SessionStoreException"/>; an operation that could not be sent (no connection, or a server shutting
/// down) is sent again on a new connection within that time, so a restart of the database is mostly invisible, and
/// Npgsql's pool reconnects by itself afterwards. Nothing is acknowledged before PostgreSQL committed it.</para>
/// <para>It is shared: every app instance on the same database serves every session, so their ASP.NET Core Data
/// Protection keys must be shared too (for example <c>PersistKeysToFileSystem</c> on a shared folder, or any other
/// shared key repository); Sesame warns at startup when they are not.</para>
/// <para>Logs name a session by the first six characters of its id only: ids are secrets.</para>
/// <para>Needs PostgreSQL 12 or later, in a UTF8 database.</para>
/// </remarks>
[<Sealed>]
type PostgresStore private (dataSource: NpgsqlDataSource, options: PostgresStoreOptions, logger: ILogger, ownsDataSource: bool) as this =
    inherit SessionStore()

    do if isNull dataSource then nullArg "dataSource"

    let options =
        let copy = (if isNull options then PostgresStoreOptions() else options).Clone()
        copy.Validate()
        copy

    let logger = if isNull logger then NullLogger.Instance :> ILogger else logger
    let name = PostgresSchema.name options
    let sessionsTable = name ""
    let nodesTable = name "_nodes"
    let clockFunction = name "_clock"
    let loadFunction = name "_load"
    let commitFunction = name "_commit"
    let moveFunction = name "_move"
    let deleteFunction = name "_delete"
    let sweepFunction = name "_sweep"

    let loadSql = $"SELECT status, paths, vals FROM {loadFunction}($1, $2, $3)"

    let commitSql = $"SELECT status, ended_paths, ended_values FROM {commitFunction}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"

    let moveSql =
        $"SELECT status, ended_ids, ended_reasons, ended_counts, ended_paths, ended_values FROM {moveFunction}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"

    let deleteSql = $"SELECT {deleteFunction}($1)"

    /// The facts' size in bytes of compact JSON (the sum of their nodes' bytes; 0 for no session) of the session $1.
    /// No row lock: a move takes its user's lock before any session's row (see the move function).
    let factsSizeSql =
        $"SELECT coalesce(sum(n.bytes), 0)::bigint FROM {nodesTable} n WHERE n.sid = (SELECT s.sid FROM {sessionsTable} s WHERE s.id = $1) AND n.path >= E'\\x04'"

    let sweepSql = $"SELECT id, expired, paths, vals FROM {sweepFunction}($1)"

    /// A page of sessions: $1 the limit, then $2 the user (byUser), then the id to continue after (afterId). One text
    /// per case rather than `($n IS NULL OR s.id > $n)`: a prepared statement's generic plan cannot use such a
    /// condition on the id's index, and would read every session before the cursor, each page.
    let listSql (byUser: bool) (afterId: bool) =
        let user = if byUser then " AND s.user_id = $2" else ""
        let after = if afterId then (if byUser then " AND s.id > $3" else " AND s.id > $2") else ""
        $"SELECT s.id, s.size, s.last_seen, s.expires_at, m.paths, m.vals FROM {sessionsTable} s LEFT JOIN LATERAL (SELECT array_agg(n.path) AS paths, array_agg(n.value) AS vals FROM {nodesTable} n WHERE n.sid = s.sid AND n.path >= E'\\x04') m ON true WHERE s.expires_at > {clockFunction}(){user}{after} ORDER BY s.id LIMIT $1"

    let listSqls = Array2D.init 2 2 (fun byUser afterId -> listSql (byUser = 1) (afterId = 1))

    [<VolatileField>]
    let mutable schemaReady = false

    do
        if not ownsDataSource then
            let settings = NpgsqlConnectionStringBuilder dataSource.ConnectionString
            if not settings.NoResetOnClose then PostgresLog.resetsOnClose.Invoke(logger, null)

    let stopping = new CancellationTokenSource()
    let gates = SessionGates()
    let mutable disposed = 0

    /// Names a session in logs and messages without giving its id away.
    let redact (id: string) =
        if isNull id then "-"
        elif id.Length <= 6 then "…"
        else id.Substring(0, 6) + "…"

    let idleMilliseconds (idle: TimeSpan) =
        // 10^14 ms is over 3,000 years: as good as never, and far from overflowing.
        if idle <= TimeSpan.Zero then 0L
        elif idle.TotalMilliseconds >= 1e14 then 100_000_000_000_000L
        else int64 (Math.Ceiling idle.TotalMilliseconds)

    let refreshMilliseconds (idleMs: int64) =
        let refresh = int64 options.ExpiryRefreshInterval.TotalMilliseconds
        if refresh <= 0L then 0L else min refresh (idleMs / 2L)

    let timeOf (milliseconds: int64) =
        if milliseconds >= DateTimeOffset.MaxValue.ToUnixTimeMilliseconds() then
            DateTimeOffset.MaxValue
        else
            DateTimeOffset.FromUnixTimeMilliseconds milliseconds

    let text (value: string) = NpgsqlParameter(NpgsqlDbType = NpgsqlDbType.Text, Value = (if isNull value then box DBNull.Value else box value))

    let integer (value: Nullable<int>) =
        NpgsqlParameter(NpgsqlDbType = NpgsqlDbType.Integer, Value = (if value.HasValue then box value.Value else box DBNull.Value))

    let texts (values: string[]) = NpgsqlParameter(NpgsqlDbType = (NpgsqlDbType.Array ||| NpgsqlDbType.Text), Value = values)
    let integers (values: int[]) = NpgsqlParameter(NpgsqlDbType = (NpgsqlDbType.Array ||| NpgsqlDbType.Integer), Value = values)
    let bigints (values: int64[]) = NpgsqlParameter(NpgsqlDbType = (NpgsqlDbType.Array ||| NpgsqlDbType.Bigint), Value = values)

    let addChange (p: NpgsqlParameterCollection) (change: ChangeArguments) =
        p.Add(integer change.UpgradeFrom) |> ignore
        p.Add(integer change.UpgradeTo) |> ignore
        p.Add(texts change.Ops) |> ignore
        p.Add(integers change.SegCounts) |> ignore
        p.Add(texts change.Segs) |> ignore
        p.Add(integers change.Costs) |> ignore
        p.Add(integers change.NodeCounts) |> ignore
        p.Add(texts change.Paths) |> ignore
        p.Add(texts change.Values) |> ignore
        p.Add(integers change.Bytes) |> ignore
        p.Add(bigints change.Sizes) |> ignore
        p.Add(texts change.Numbers) |> ignore

    let stringsAt (reader: NpgsqlDataReader) (ordinal: int) : string[] = if reader.IsDBNull ordinal then null else reader.GetFieldValue<string[]> ordinal

    let invalid (id: string) (reason: string) =
        PostgresLog.invalidSession.Invoke(logger, redact id, reason, null)
        SessionStoreException($"The rows of session {redact id} do not hold a valid Sesame session ({reason}). Delete the session to start it afresh.")

    /// Whether the failure came before PostgreSQL acted on the command: the server was shutting down or starting
    /// (its first answer was that), so the command was never run.
    let isShutdown (e: PostgresException) =
        e.SqlState = PostgresErrorCodes.AdminShutdown || e.SqlState = PostgresErrorCodes.CrashShutdown || e.SqlState = PostgresErrorCodes.CannotConnectNow

    /// A connection from the pool; failing to get one is NotSent.
    let openConnection (cancellationToken: CancellationToken) : Task<NpgsqlConnection> = task {
        try
            return! dataSource.OpenConnectionAsync cancellationToken
        with
        | :? OperationCanceledException -> return raise (OperationCanceledException(cancellationToken))
        | e -> return raise (NotSent e)
    }

    /// Sends a command: a server that answers that it is shutting down or starting never ran it (NotSent).
    let sent (send: unit -> Task<NpgsqlDataReader>) : Task<NpgsqlDataReader> = task {
        try
            return! send ()
        with :? PostgresException as e when isShutdown e ->
            return raise (NotSent e)
    }

    /// Opens a connection, sends one command and reads its answer. Failures before the database could have run the
    /// command are NotSent.
    let execute
        (sql: string)
        (parameters: NpgsqlParameterCollection -> unit)
        (read: NpgsqlDataReader -> Task<'result>)
        (cancellationToken: CancellationToken)
        : Task<'result> = task {
        let! connection = openConnection cancellationToken
        use connection = connection
        use command = new NpgsqlCommand(sql, connection)
        parameters command.Parameters
        let! reader = sent (fun () -> command.ExecuteReaderAsync cancellationToken)
        use reader = reader
        let! value = read reader
        // Read to the end: the call's implicit transaction commits after its row is sent, and a failure to
        // commit comes only then.
        let! _ = reader.NextResultAsync cancellationToken
        return value
    }

    /// <summary>
    /// As <c>execute</c>, for a commit or a move (<c>sql</c>) that may grow the facts: in one transaction, it reads the
    /// facts' size of <c>beforeId</c> (null: none), sends the change, reads the facts' size of <c>afterId</c>, and
    /// commits only when the facts did not grow past <c>limit</c>; else it rolls back and raises
    /// <see cref="T:Sesame.SessionTooLargeException"/>. Flash values are the app's data, often its client's input, and
    /// are bounded as the tree is: each request checks the facts it saw, and this checks what concurrent requests add
    /// up to. The change's function locks the session's row until the COMMIT, so the second reading is what the
    /// session holds; the first, taken just before the change, only tells growth from shrinking. One round trip more
    /// than <c>execute</c> (the COMMIT), and two sums over the facts' rows.
    /// </summary>
    let executeFactsBounded
        (sql: string)
        (parameters: NpgsqlParameterCollection -> unit)
        (read: NpgsqlDataReader -> Task<'result>)
        (beforeId: string)
        (afterId: string)
        (limit: int)
        (cancellationToken: CancellationToken)
        : Task<'result> = task {
        let! connection = openConnection cancellationToken
        use connection = connection
        use! transaction = connection.BeginTransactionAsync cancellationToken
        use batch = new NpgsqlBatch(connection, transaction)
        let measureFacts (id: string) =
            let command = NpgsqlBatchCommand factsSizeSql
            command.Parameters.Add(text id) |> ignore
            batch.BatchCommands.Add command
        if not (isNull beforeId) then measureFacts beforeId
        let change = NpgsqlBatchCommand sql
        parameters change.Parameters
        batch.BatchCommands.Add change
        measureFacts afterId
        let! reader = sent (fun () -> batch.ExecuteReaderAsync cancellationToken)
        let! struct (value, before, after) = task {
            use reader = reader
            let size () = task {
                let! _ = reader.ReadAsync cancellationToken
                let bytes = reader.GetInt64 0
                let! _ = reader.NextResultAsync cancellationToken
                return bytes
            }
            let! before = if isNull beforeId then Task.FromResult 0L else size ()
            let! value = read reader
            let! _ = reader.NextResultAsync cancellationToken
            let! after = size ()
            return struct (value, before, after)
        }
        if after > int64 limit && after > before then
            do! transaction.RollbackAsync cancellationToken
            return raise (SessionTooLargeException(after, limit))
        else
            do! transaction.CommitAsync cancellationToken
            return value
    }

    let schemaLock = obj ()
    let mutable schemaCheck: Task = null

    /// Creates or checks the schema once: concurrent first operations share one check (one connection), and a
    /// failed check is made again by the next operation.
    let ensureSchema (cancellationToken: CancellationToken) : Task =
        if schemaReady then
            Task.CompletedTask
        else
            let check =
                lock schemaLock (fun () ->
                    if isNull schemaCheck || schemaCheck.IsFaulted || schemaCheck.IsCanceled then
                        schemaCheck <- task {
                            use bounded = CancellationTokenSource.CreateLinkedTokenSource stopping.Token
                            if options.OperationTimeout <> Timeout.InfiniteTimeSpan then bounded.CancelAfter options.OperationTimeout
                            let! outcome = task {
                                try
                                    return! PostgresSchema.ensureAsync dataSource options options.CreateSchema bounded.Token
                                with
                                | :? NpgsqlException as e when
                                    (match e with
                                     | :? PostgresException -> false
                                     | _ -> true)
                                    ->
                                    return raise (NotSent e)
                                | :? PostgresException as e when isShutdown e || e.SqlState = PostgresErrorCodes.TooManyConnections -> return raise (NotSent e)
                            }
                            match outcome with
                            | SchemaOutcome.Created ->
                                PostgresLog.schemaCreated.Invoke(logger, options.Schema, options.TableName, PostgresSchema.Version, null)
                            | SchemaOutcome.FunctionsKept reason -> PostgresLog.functionsKept.Invoke(logger, options.Schema, options.TableName, reason, null)
                            | SchemaOutcome.Found -> ()
                            schemaReady <- true
                        }
                    schemaCheck)
            check.WaitAsync cancellationToken

    /// Runs one operation within OperationTimeout: sends it again while it could not be sent, and turns failures
    /// into the exceptions the store contract names. `idempotent` operations are also sent again after a failure
    /// on the way back (a load or a listing: doing it twice does no harm).
    let run
        (operation: string)
        (id: string)
        (idempotent: bool)
        (cancellationToken: CancellationToken)
        (work: CancellationToken -> Task<'result>)
        : Task<'result> = task {
        cancellationToken.ThrowIfCancellationRequested()
        // What messages call the operation: a session's, or the store's own (a sweep, the schema check).
        let subject = if isNull id then operation else $"{operation} of session {redact id}"
        use timeout = CancellationTokenSource.CreateLinkedTokenSource cancellationToken
        if options.OperationTimeout <> Timeout.InfiniteTimeSpan then timeout.CancelAfter options.OperationTimeout
        let token = timeout.Token
        let lastFailure = ref (null: exn)
        let attempt () = task {
            let mutable result = Unchecked.defaultof<'result>
            let mutable finished = false
            let mutable delay = 25
            while not finished do
                try
                    do! ensureSchema token
                    let! value = work token
                    result <- value
                    finished <- true
                with
                | NotSent e ->
                    lastFailure.Value <- e
                    PostgresLog.retrying.Invoke(logger, operation, redact id, e)
                    // The pool may hold more connections the server closed: let them go.
                    dataSource.Clear()
                    do! Task.Delay(delay, token)
                    delay <- min 1000 (delay * 2)
                | :? NpgsqlException as e when idempotent && e.IsTransient && not token.IsCancellationRequested ->
                    lastFailure.Value <- e
                    PostgresLog.retrying.Invoke(logger, operation, redact id, e)
                    dataSource.Clear()
                    do! Task.Delay(delay, token)
                    delay <- min 1000 (delay * 2)
            return result
        }
        let work = attempt ()
        let mayHaveApplied = if idempotent || operation = "delete" then "" else " It may or may not have been applied."
        let timedOut (inner: exn) =
            work.ContinueWith((fun (t: Task<'result>) -> t.Exception |> ignore), TaskContinuationOptions.OnlyOnFaulted) |> ignore
            PostgresLog.timedOut.Invoke(logger, operation, redact id, options.OperationTimeout, null)
            let why = if isNull lastFailure.Value then "" else $" Last failure: {lastFailure.Value.Message}"
            SessionStoreException(
                $"PostgreSQL did not finish the {subject} within {options.OperationTimeout}.{mayHaveApplied}{why}",
                (if isNull lastFailure.Value then inner else lastFailure.Value)
            )
        try
            return! work.WaitAsync(options.OperationTimeout, cancellationToken)
        with
        | :? TimeoutException as e -> return raise (timedOut e)
        | :? OperationCanceledException when cancellationToken.IsCancellationRequested ->
            work.ContinueWith((fun (t: Task<'result>) -> t.Exception |> ignore), TaskContinuationOptions.OnlyOnFaulted) |> ignore
            return raise (OperationCanceledException(cancellationToken))
        | :? OperationCanceledException as e -> return raise (timedOut e)
        | :? PostgresException as e when e.SqlState = "SE001" ->
            // Raised by the database functions; the caller maps it (it needs the change's updates).
            return raise e
        | :? PostgresException as e when e.SqlState = "SE002" || e.SqlState = "SE004" || e.SqlState = "SE005" -> return raise e
        | :? PostgresException as e when e.SqlState = "SE003" -> return raise (invalid id e.MessageText)
        | :? PostgresException as e when e.SqlState = PostgresErrorCodes.UniqueViolation && e.ConstraintName = options.TableName + "_id" ->
            return raise (InvalidOperationException("The move's new id is already a session; a new id must be fresh.", e))
        | :? PostgresException as e when e.SqlState = PostgresErrorCodes.UndefinedFunction || e.SqlState = PostgresErrorCodes.UndefinedTable ->
            // Dropped, or never made while CreateSchema was off: check (or create) it again on the next call.
            schemaReady <- false
            PostgresLog.failed.Invoke(logger, operation, redact id, e)
            return
                raise (
                    SessionStoreException(
                        $"PostgreSQL {subject} failed: the Sesame tables or functions in schema \"{options.Schema}\" are missing ({e.MessageText}).",
                        e
                    )
                )
        | :? PostgresException as e ->
            PostgresLog.failed.Invoke(logger, operation, redact id, e)
            return raise (SessionStoreException($"PostgreSQL {subject} failed: {e.MessageText}", e))
        | :? NpgsqlException as e ->
            PostgresLog.failed.Invoke(logger, operation, redact id, e)
            dataSource.Clear()
            return raise (SessionStoreException($"PostgreSQL {subject} failed: {e.Message}.{mayHaveApplied}", e))
    }

    /// Maps the errors the commit and move functions raise on purpose.
    let changeFailed (arguments: ChangeArguments) (maxSize: int) (e: exn) : exn =
        match e with
        | :? PostgresException as e when e.SqlState = "SE001" ->
            // sesame:update:code:depth:info (info last: it may hold a colon).
            match e.MessageText.Split(':', 5) with
            | [| _; update; code; depth; info |] -> PostgresLayout.conflict arguments.Updates (int update) code (int depth) info :> exn
            | _ -> SessionStoreException($"The commit function raised an unexpected conflict report '{e.MessageText}'.", e) :> exn
        | :? PostgresException as e when e.SqlState = "SE002" ->
            SessionTooLargeException(int64 (e.MessageText.Substring(e.MessageText.IndexOf ':' + 1)), maxSize) :> exn
        | :? PostgresException as e when e.SqlState = "SE005" ->
            // As StoredSession refuses it.
            ArgumentException("A stored session's tree and facts are JSON objects.", "data") :> exn
        | other -> other

    /// Reports the sessions the database ended on the way (flattened as the move function gives them).
    let reportEnded (ids: string[]) (reasons: string[]) (counts: int[]) (paths: string[]) (values: string[]) =
        if not (isNull ids) then
            let mutable at = 0
            for i in 0 .. ids.Length - 1 do
                let count = counts[i]
                let meta = PostgresLayout.rebuildMeta (Array.sub paths at count) (Array.sub values at count)
                at <- at + count
                this.ReportEnded(ids[i], meta, (if reasons[i] = "u" then SessionEndReason.UserLimit else SessionEndReason.Expired))

    /// One batch of the sweep: gives how many sessions were due (deleted or moved on) and how many were deleted.
    let sweepOnce (cancellationToken: CancellationToken) : Task<struct (int * int)> =
        run "sweep" null false cancellationToken (fun token ->
            execute
                sweepSql
                (fun p -> p.Add(NpgsqlParameter<int>(TypedValue = options.SweepBatchSize)) |> ignore)
                (fun reader -> task {
                    let ended = ResizeArray<struct (string * Json)>()
                    let mutable due = 0
                    let mutable more = true
                    while more do
                        let! read = reader.ReadAsync token
                        if read then
                            due <- due + 1
                            if reader.GetBoolean 1 then
                                ended.Add(struct (reader.GetString 0, PostgresLayout.rebuildMeta (stringsAt reader 2) (stringsAt reader 3)))
                        else
                            more <- false
                    return struct (due, ended)
                })
                token)
        |> fun batch -> task {
            // Reported once the deletes are committed.
            let! struct (due, ended) = batch
            for struct (id, meta) in ended do
                this.ReportEnded(id, meta, SessionEndReason.Expired)
            return struct (due, ended.Count)
        }

    let sweepAll (cancellationToken: CancellationToken) : Task<int> = task {
        let mutable total = 0
        let mutable more = true
        while more do
            let! struct (due, deleted) = sweepOnce cancellationToken
            total <- total + deleted
            more <- due >= options.SweepBatchSize && not cancellationToken.IsCancellationRequested
        if total > 0 then PostgresLog.swept.Invoke(logger, total, null)
        return total
    }

    let sweeper =
        if options.SweepInterval = Timeout.InfiniteTimeSpan then
            Task.CompletedTask
        else
            Task.Run(fun () ->
                task {
                    use timer = new PeriodicTimer(options.SweepInterval)
                    let mutable running = true
                    while running do
                        let! tick = task {
                            try
                                return! timer.WaitForNextTickAsync stopping.Token
                            with :? OperationCanceledException ->
                                return false
                        }
                        if not tick then
                            running <- false
                        else
                            try
                                let! _ = sweepAll stopping.Token
                                ()
                            with e ->
                                if not stopping.IsCancellationRequested then PostgresLog.sweepFailed.Invoke(logger, e)
                }
                :> Task)

    /// An id no session is stored under (one that UTF-8 cannot carry): loads, deletes and moves from it find nothing
    /// without asking the server. (A null id is refused further on.)
    let namesNoSession (id: string) = not (isNull id) && not (SessionStore.IsStorableId id)

    let checkOpen () = if Volatile.Read &disposed <> 0 then raise (ObjectDisposedException(nameof PostgresStore))

    /// <summary>A store on an existing data source, with default options and no logging. The caller keeps owning the data source.</summary>
    /// <param name="dataSource">An Npgsql data source (its pool is shared with whatever else uses it).</param>
    new(dataSource: NpgsqlDataSource) = new PostgresStore(dataSource, PostgresStoreOptions(), NullLogger.Instance, false)

    /// <summary>A store on an existing data source. The caller keeps owning the data source.</summary>
    /// <param name="dataSource">An Npgsql data source (its pool is shared with whatever else uses it).</param>
    /// <param name="options">The store's options (<c>null</c> for the defaults); the store keeps a copy.</param>
    /// <param name="logger">Where the store logs (<c>null</c> for nowhere).</param>
    /// <exception cref="System.ArgumentException">The options are out of range.</exception>
    new(dataSource: NpgsqlDataSource, options: PostgresStoreOptions, logger: ILogger) = new PostgresStore(dataSource, options, logger, false)

    /// <summary>A store on its own data source made from a connection string (disposing the store closes its connections).</summary>
    /// <param name="connectionString">An Npgsql connection string, e.g. <c>"Host=db;Database=app;Username=app;Password=..."</c>.</param>
    /// <param name="options">The store's options (<c>null</c> for the defaults); the store keeps a copy.</param>
    /// <param name="logger">Where the store logs (<c>null</c> for nowhere).</param>
    /// <exception cref="System.ArgumentException">The connection string or the options are invalid.</exception>
    new(connectionString: string, options: PostgresStoreOptions, logger: ILogger) =
        new PostgresStore(PostgresStore.CreateDataSource connectionString, options, logger, true)

    /// <summary>A store on its own data source made from a connection string, with default options and no logging.</summary>
    /// <param name="connectionString">An Npgsql connection string.</param>
    new(connectionString: string) = new PostgresStore(connectionString, PostgresStoreOptions(), NullLogger.Instance)

    /// <summary>
    /// A data source for a store of its own, from a connection string: with <c>No Reset On Close</c> (nothing but
    /// the store uses its connections, and the <c>DISCARD ALL</c> Npgsql otherwise sends would drop the plans
    /// PostgreSQL keeps for the store's functions, so that every call planned them again) and, unless the connection
    /// string sets it, <c>Max Auto Prepare=20</c> (the store's few statements are prepared once per connection).
    /// </summary>
    /// <param name="connectionString">An Npgsql connection string.</param>
    /// <returns>The data source; the caller disposes it.</returns>
    /// <exception cref="System.ArgumentException">The connection string is empty or invalid.</exception>
    static member CreateDataSource(connectionString: string) : NpgsqlDataSource =
        if String.IsNullOrWhiteSpace connectionString then invalidArg (nameof connectionString) "The connection string is empty."
        let builder = NpgsqlDataSourceBuilder connectionString
        builder.ConnectionStringBuilder.NoResetOnClose <- true
        if builder.ConnectionStringBuilder.MaxAutoPrepare = 0 then builder.ConnectionStringBuilder.MaxAutoPrepare <- 20
        builder.Build()

    /// <summary>
    /// The SQL that creates the store's tables and functions for these options (schema version 1), for teams that
    /// run their own migrations (set <c>CreateSchema</c> to false then). Run it in one transaction, in an existing
    /// schema; it records its version in <c>TableName_version</c>. Its part from the <c>-- Functions.</c> line is all
    /// <c>CREATE OR REPLACE</c>: run that part again after upgrading Sesame, so the tables get the new functions.
    /// </summary>
    /// <param name="options">The schema and table names to use (<c>null</c> for the defaults).</param>
    /// <returns>The script.</returns>
    static member SchemaScript(options: PostgresStoreOptions) : string =
        let options = if isNull options then PostgresStoreOptions() else options
        options.Validate()
        PostgresSchema.script options

    /// <summary>The version of the schema this Sesame creates and uses.</summary>
    static member SchemaVersion = PostgresSchema.Version

    /// <summary>
    /// Creates the store's schema, tables and functions if they are missing, and otherwise replaces the functions with
    /// this Sesame's (or, with <c>CreateSchema</c> off, checks that they are there at the right version). The store
    /// does this by itself on first use; call it at startup to fail early. Several instances may call it at once.
    /// </summary>
    /// <param name="cancellationToken">Cancels the check.</param>
    /// <returns>A task that completes when the schema is ready.</returns>
    /// <exception cref="T:Sesame.SessionStoreException">The database is unreachable, not UTF8, or holds the tables at another version.</exception>
    member _.EnsureSchemaAsync(cancellationToken: CancellationToken) : Task =
        checkOpen ()
        run "schema check" null true cancellationToken (fun _ -> Task.FromResult true) :> Task

    /// <summary>Deletes every expired session now, in batches of <c>SweepBatchSize</c>, reporting each to the store's observer.</summary>
    /// <param name="cancellationToken">Cancels the sweep (between batches).</param>
    /// <returns>How many sessions were deleted.</returns>
    /// <exception cref="T:Sesame.SessionStoreException">The database failed.</exception>
    member _.SweepAsync(cancellationToken: CancellationToken) : Task<int> =
        checkOpen ()
        sweepAll cancellationToken

    /// The store's options (a copy of those it was given).
    member _.Options = options

    /// The Npgsql data source the store uses.
    member _.DataSource = dataSource

    /// <inheritdoc />
    override _.IsShared = true

    /// <inheritdoc />
    override _.LoadAsync(id, idleTimeout, cancellationToken) =
        try
            if isNull id then nullArg (nameof id)
            if namesNoSession id then
                Task.FromResult<StoredSession> null
            else
                checkOpen ()
                let idle = idleMilliseconds idleTimeout
                let load (token: CancellationToken) =
                    execute
                        loadSql
                        (fun p ->
                            p.Add(text id) |> ignore
                            p.Add(NpgsqlParameter<int64>(TypedValue = idle)) |> ignore
                            p.Add(NpgsqlParameter<int64>(TypedValue = refreshMilliseconds idle)) |> ignore)
                        (fun reader -> task {
                            let! _ = reader.ReadAsync token
                            return struct (reader.GetString 0, stringsAt reader 1, stringsAt reader 2)
                        })
                        token
                task {
                    let! struct (status, paths, values) = run "load" id true cancellationToken load
                    match status with
                    | "ok" ->
                        match PostgresLayout.rebuild paths values with
                        | Ok session -> return session
                        | Error reason -> return raise (invalid id reason)
                    | "expired" ->
                        this.ReportEnded(id, PostgresLayout.rebuildMeta paths values, SessionEndReason.Expired)
                        return null
                    | _ -> return null
                }
        with e ->
            Task.FromException<StoredSession> e

    /// <inheritdoc />
    override _.CommitAsync(id, change, commit, cancellationToken) =
        try
            SessionStore.CheckStorableId(id, nameof id)
            if isNull change then nullArg (nameof change)
            if change.BindsUser then
                invalidArg (nameof change) "A commit cannot bind a session to a user or unbind it; a move does (sign-in rotates the session)."
            checkOpen ()
            let arguments = PostgresLayout.argumentsOf change
            let idle = idleMilliseconds commit.IdleTimeout
            let parameters (p: NpgsqlParameterCollection) =
                p.Add(text id) |> ignore
                p.Add(NpgsqlParameter<bool>(TypedValue = commit.MustExist)) |> ignore
                p.Add(NpgsqlParameter<int64>(TypedValue = idle)) |> ignore
                p.Add(NpgsqlParameter<int64>(TypedValue = int64 commit.MaxSizeBytes)) |> ignore
                addChange p arguments
            let send (token: CancellationToken) = task {
                use! _ = gates.EnterAsync(id, token)
                let read (reader: NpgsqlDataReader) = task {
                    let! _ = reader.ReadAsync token
                    return struct (reader.GetString 0, stringsAt reader 1, stringsAt reader 2)
                }
                // Only requests that share a stored session can add up their facts: a new session's first commit (a
                // fresh id no other request has) is checked by its request alone, in one statement.
                if commit.MustExist && change.MayGrowFacts then
                    return! executeFactsBounded commitSql parameters read id id commit.MaxSizeBytes token
                else
                    return! execute commitSql parameters read token
            }
            task {
                try
                    let! struct (status, paths, values) = run "commit" id false cancellationToken send
                    if not (isNull paths) then this.ReportEnded(id, PostgresLayout.rebuildMeta paths values, SessionEndReason.Expired)
                    match status with
                    | "ok" ->
                        if logger.IsEnabled LogLevel.Debug then PostgresLog.committed.Invoke(logger, arguments.Updates.Length, redact id, null)
                        return CommitResult.Committed
                    | "gone" -> return CommitResult.SessionGone
                    | "shape" -> return CommitResult.ShapeChanged
                    | other -> return raise (SessionStoreException($"The commit function gave an unexpected status '{other}'."))
                with :? PostgresException as e ->
                    return raise (changeFailed arguments commit.MaxSizeBytes e)
            }
        with e ->
            Task.FromException<CommitResult> e

    /// <inheritdoc />
    override _.MoveAsync(fromId, toId, change, commit, cancellationToken) =
        try
            SessionStore.CheckStorableId(toId, nameof toId)
            if isNull change then nullArg (nameof change)
            if namesNoSession fromId then
                Task.FromResult CommitResult.SessionGone
            else
                checkOpen ()
                let arguments = PostgresLayout.argumentsOf change
                let mode, user =
                    match PostgresLayout.bindingOf change with
                    | PostgresLayout.UserBinding.Keep -> 0, null
                    | PostgresLayout.UserBinding.Bind user -> 1, user
                    | PostgresLayout.UserBinding.Unbind -> 2, null
                let idle = idleMilliseconds commit.IdleTimeout
                let session = if isNull fromId then toId else fromId
                let parameters (p: NpgsqlParameterCollection) =
                    p.Add(text fromId) |> ignore
                    p.Add(text toId) |> ignore
                    p.Add(NpgsqlParameter<int>(TypedValue = mode)) |> ignore
                    p.Add(text user) |> ignore
                    p.Add(NpgsqlParameter<int64>(TypedValue = idle)) |> ignore
                    p.Add(NpgsqlParameter<int64>(TypedValue = int64 commit.MaxSizeBytes)) |> ignore
                    p.Add(NpgsqlParameter<int>(TypedValue = max 0 commit.UserLimit.MaxSessions)) |> ignore
                    p.Add(NpgsqlParameter<bool>(TypedValue = (commit.UserLimit.Policy = UserLimitPolicy.Refuse))) |> ignore
                    addChange p arguments
                let send (token: CancellationToken) = task {
                    use! _ = gates.EnterAsync(session, token)
                    let read (reader: NpgsqlDataReader) = task {
                        let! _ = reader.ReadAsync token
                        let counts = if reader.IsDBNull 3 then null else reader.GetFieldValue<int[]> 3
                        return struct (reader.GetString 0, stringsAt reader 1, stringsAt reader 2, counts, stringsAt reader 4, stringsAt reader 5)
                    }
                    // A move carries what other requests committed to the old id since this one loaded it (their flash):
                    // a sign-in, which binds the user and the device, is a transaction of its own.
                    if change.MayGrowFacts then
                        return! executeFactsBounded moveSql parameters read fromId toId commit.MaxSizeBytes token
                    else
                        return! execute moveSql parameters read token
                }
                task {
                    try
                        let! struct (status, ids, reasons, counts, paths, values) = run "move" session false cancellationToken send
                        reportEnded ids reasons counts paths values
                        match status with
                        | "ok" -> return CommitResult.Committed
                        | "gone" -> return CommitResult.SessionGone
                        | "shape" -> return CommitResult.ShapeChanged
                        | other -> return raise (SessionStoreException($"The move function gave an unexpected status '{other}'."))
                    with
                    | :? PostgresException as e when e.SqlState = "SE004" -> return CommitResult.UserLimitReached
                    | :? PostgresException as e -> return raise (changeFailed arguments commit.MaxSizeBytes e)
                }
        with e ->
            Task.FromException<CommitResult> e

    /// <inheritdoc />
    override _.DeleteAsync(id, cancellationToken) =
        try
            if isNull id then nullArg (nameof id)
            if namesNoSession id then
                Task.FromResult false
            else
                checkOpen ()
                run "delete" id false cancellationToken (fun token ->
                    execute
                        deleteSql
                        (fun p -> p.Add(text id) |> ignore)
                        (fun reader -> task {
                            let! _ = reader.ReadAsync token
                            return reader.GetBoolean 0
                        })
                        token)
        with e ->
            Task.FromException<bool> e

    /// <inheritdoc />
    override _.ListAsync(query, cancellationToken) =
        try
            if query.Limit <= 0 then invalidArg (nameof query) "A listing's Limit must be positive."
            checkOpen ()
            // One more than asked: whether there is a next page.
            let limit = int64 query.Limit + 1L
            run "listing" query.UserId true cancellationToken (fun token ->
                execute
                    listSqls[(if isNull query.UserId then 0 else 1), (if isNull query.After then 0 else 1)]
                    (fun p ->
                        p.Add(NpgsqlParameter<int64>(TypedValue = limit)) |> ignore
                        if not (isNull query.UserId) then p.Add(text query.UserId) |> ignore
                        if not (isNull query.After) then p.Add(text query.After) |> ignore)
                    (fun reader -> task {
                        let sessions = List<SessionSummary>()
                        let mutable more = true
                        while more do
                            let! read = reader.ReadAsync token
                            if read then
                                let id = reader.GetString 0
                                let meta = PostgresLayout.rebuildMeta (stringsAt reader 4) (stringsAt reader 5)
                                sessions.Add(SessionSummary(id, meta, timeOf (reader.GetInt64 2), timeOf (reader.GetInt64 3), reader.GetInt64 1))
                            else
                                more <- false
                        if sessions.Count > query.Limit then
                            sessions.RemoveAt(sessions.Count - 1)
                            return SessionPage(sessions, sessions[sessions.Count - 1].Id)
                        else
                            return SessionPage(sessions, null)
                    })
                    token)
        with e ->
            Task.FromException<SessionPage> e

    /// <summary>Stops the sweeper and, when the store made its own data source, closes its connections.</summary>
    member _.DisposeAsync() : ValueTask =
        if Interlocked.Exchange(&disposed, 1) <> 0 then
            ValueTask.CompletedTask
        else
            ValueTask(
                task {
                    stopping.Cancel()
                    try
                        do! sweeper
                    with _ ->
                        ()
                    stopping.Dispose()
                    if ownsDataSource then do! dataSource.DisposeAsync()
                }
            )

    /// <summary>Stops the sweeper and, when the store made its own data source, closes its connections.</summary>
    member _.Dispose() =
        if Interlocked.Exchange(&disposed, 1) = 0 then
            // The sweeper stops at its next await; a sweep in flight fails quietly once the data source is gone.
            stopping.Cancel()
            if ownsDataSource then dataSource.Dispose()

    interface IDisposable with
        member this.Dispose() = this.Dispose()

    interface IAsyncDisposable with
        member this.DisposeAsync() = this.DisposeAsync()
