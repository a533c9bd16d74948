namespace Sesame.Postgres

open System
open System.Text.RegularExpressions
open System.Threading

/// <summary>Options of the PostgreSQL store.</summary>
/// <remarks>
/// Defaults: <c>Schema</c> <c>"sesame"</c>, <c>TableName</c> <c>"sessions"</c>, <c>CreateSchema</c> true,
/// <c>OperationTimeout</c> 5 seconds, <c>SweepInterval</c> 1 minute, <c>SweepBatchSize</c> 500,
/// <c>ExpiryRefreshInterval</c> zero (every load slides the expiry).
/// </remarks>
[<AllowNullLiteral>]
type PostgresStoreOptions() =

    static let identifier = Regex("^[a-z_][a-z0-9_]*$", RegexOptions.CultureInvariant)

    /// <summary>The default schema: <c>"sesame"</c>.</summary>
    static member DefaultSchema = "sesame"

    /// <summary>The default table name: <c>"sessions"</c>.</summary>
    static member DefaultTableName = "sessions"

    /// <summary>The default bound on one load, commit, move, delete or listing: 5 seconds.</summary>
    static member DefaultOperationTimeout = TimeSpan.FromSeconds 5.0

    /// <summary>The default interval between sweeps of expired sessions: 1 minute.</summary>
    static member DefaultSweepInterval = TimeSpan.FromMinutes 1.0

    /// The longest period a .NET timer takes (about 49.7 days): the most SweepInterval and OperationTimeout may be.
    static member internal MaxTimerSpan = TimeSpan.FromMilliseconds 4294967294.0

    /// The shortest: a timer given less than a millisecond fires at once (a time budget) or refuses it (the sweeper's).
    static member internal MinTimerSpan = TimeSpan.FromMilliseconds 1.0

    /// <summary>The default number of sessions one sweep statement ends: 500.</summary>
    static member DefaultSweepBatchSize = 500

    /// <summary>
    /// The schema that holds the store's tables and functions (created if missing, when <c>CreateSchema</c> is on).
    /// Lower-case letters, digits and underscores. Default <c>"sesame"</c>.
    /// </summary>
    member val Schema = PostgresStoreOptions.DefaultSchema with get, set

    /// <summary>
    /// The name of the sessions table; the store's other tables and functions are named after it
    /// (<c>TableName_nodes</c>, <c>TableName_version</c>, <c>TableName_commit</c>, ...), so several stores can share one
    /// schema. Lower-case letters, digits and underscores, at most 40 characters. Default <c>"sessions"</c>.
    /// </summary>
    member val TableName = PostgresStoreOptions.DefaultTableName with get, set

    /// <summary>
    /// Whether the store creates (or upgrades) its schema on first use, and otherwise replaces its functions with this
    /// Sesame's (they are <c>CREATE OR REPLACE</c>). Turn it off when the database
    /// user may not create tables: run <see cref="M:Sesame.Postgres.PostgresStore.SchemaScript(Sesame.Postgres.PostgresStoreOptions)"/>'s
    /// SQL in your own migrations instead, and its part from the <c>-- Functions.</c> line again after upgrading
    /// Sesame; the store then only checks the schema's version. Default true.
    /// </summary>
    member val CreateSchema = true with get, set

    /// <summary>
    /// The longest a load, commit, move, delete or listing may take, waiting for a pooled connection
    /// included. Past it the operation fails with a <see cref="T:Sesame.SessionStoreException"/> (a commit may or
    /// may not have been applied). Default 5 seconds; at least 1 millisecond and at most about 49.7 days.
    /// </summary>
    member val OperationTimeout = PostgresStoreOptions.DefaultOperationTimeout with get, set

    /// <summary>
    /// How often the store deletes expired sessions (reporting each to the store's observer). Expired sessions are
    /// never served in between. <see cref="F:System.Threading.Timeout.InfiniteTimeSpan"/> turns the sweeper off (for
    /// apps that call <c>SweepAsync</c> themselves). Default 1 minute; at least 1 millisecond and at most about 49.7 days.
    /// </summary>
    member val SweepInterval = PostgresStoreOptions.DefaultSweepInterval with get, set

    /// <summary>
    /// The most sessions one sweep statement visits (deleting the expired ones). Small batches keep each sweep
    /// transaction short: it skips the rows a commit holds and holds its own for milliseconds. Default 500.
    /// </summary>
    member val SweepBatchSize = PostgresStoreOptions.DefaultSweepBatchSize with get, set

    /// <summary>
    /// How stale a session's expiry and last-seen time may get before a load writes them again. Zero (the default)
    /// writes on every load, so <c>LastSeen</c> (listings, and the order in which a user's least recently used
    /// sessions are ended) is exact. A positive value (capped at half the idle timeout) saves the write for loads
    /// that come sooner, at the cost of that precision. A load's write is committed without waiting for the WAL
    /// flush: a crash can lose the slide of an expiry, never a commit.
    /// </summary>
    member val ExpiryRefreshInterval = TimeSpan.Zero with get, set

    /// <summary>Checks the options; throws <see cref="T:System.ArgumentException"/> naming what is wrong.</summary>
    member this.Validate() =
        if isNull this.Schema || not (identifier.IsMatch this.Schema) || this.Schema.Length > 63 then
            invalidArg "Schema" $"Schema must be 1 to 63 lower-case letters, digits and underscores, not starting with a digit; it is '{this.Schema}'."
        if isNull this.TableName || not (identifier.IsMatch this.TableName) || this.TableName.Length > 40 then
            invalidArg "TableName" $"TableName must be 1 to 40 lower-case letters, digits and underscores, not starting with a digit; it is '{this.TableName}'."
        let timerTakes (span: TimeSpan) =
            span = Timeout.InfiniteTimeSpan || span >= PostgresStoreOptions.MinTimerSpan && span <= PostgresStoreOptions.MaxTimerSpan
        if not (timerTakes this.OperationTimeout) then
            invalidArg
                "OperationTimeout"
                $"OperationTimeout must be at least 1 millisecond and at most about 49.7 days (or Timeout.InfiniteTimeSpan); it is {this.OperationTimeout}."
        if not (timerTakes this.SweepInterval) then
            invalidArg
                "SweepInterval"
                $"SweepInterval must be at least 1 millisecond and at most about 49.7 days (or Timeout.InfiniteTimeSpan for no sweeper); it is {this.SweepInterval}."
        if this.SweepBatchSize < 1 then invalidArg "SweepBatchSize" $"SweepBatchSize must be at least 1; it is {this.SweepBatchSize}."
        if this.ExpiryRefreshInterval < TimeSpan.Zero then
            invalidArg "ExpiryRefreshInterval" $"ExpiryRefreshInterval cannot be negative; it is {this.ExpiryRefreshInterval}."

    /// <summary>A copy of these options (the store keeps its own, so later changes do not reach it).</summary>
    member this.Clone() =
        PostgresStoreOptions(
            Schema = this.Schema,
            TableName = this.TableName,
            CreateSchema = this.CreateSchema,
            OperationTimeout = this.OperationTimeout,
            SweepInterval = this.SweepInterval,
            SweepBatchSize = this.SweepBatchSize,
            ExpiryRefreshInterval = this.ExpiryRefreshInterval
        )
