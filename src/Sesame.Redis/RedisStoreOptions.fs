namespace Sesame.Redis

open System
open System.Threading

/// <summary>Options of the Redis store.</summary>
/// <remarks>
/// Defaults: <c>KeyPrefix</c> <c>"sesame:"</c>, <c>Database</c> -1 (the connection's default),
/// <c>OperationTimeout</c> 5 seconds, <c>ExpiryRefreshInterval</c> 1 second, <c>SweepInterval</c> 1 minute,
/// <c>WaitForReplicas</c> 0 (no wait), <c>WaitForReplicasTimeout</c> 1 second, <c>InlineLimit</c> 64 bytes.
/// </remarks>
[<AllowNullLiteral>]
type RedisStoreOptions() =

    /// <summary>The default key prefix: <c>"sesame:"</c>.</summary>
    static member DefaultKeyPrefix = "sesame:"

    /// <summary>The default Redis database: -1, the connection's default database.</summary>
    static member DefaultDatabase = -1

    /// <summary>The default bound on one load, commit, move or delete: 5 seconds.</summary>
    static member DefaultOperationTimeout = TimeSpan.FromSeconds 5.0

    /// <summary>The default refresh interval of the idle expiry on load: 1 second.</summary>
    static member DefaultExpiryRefreshInterval = TimeSpan.FromSeconds 1.0

    /// <summary>The default interval between two sweeps of the expiry sets: 1 minute.</summary>
    static member DefaultSweepInterval = TimeSpan.FromMinutes 1.0

    /// The longest period a .NET timer takes (about 49.7 days): the most SweepInterval and OperationTimeout may be.
    static member internal MaxTimerSpan = TimeSpan.FromMilliseconds 4294967294.0

    /// The shortest: a timer given less than a millisecond fires at once (a time budget) or only once (the sweeper's).
    static member internal MinTimerSpan = TimeSpan.FromMilliseconds 1.0

    /// <summary>The default time a commit waits for its replicas when <c>WaitForReplicas</c> is set: 1 second.</summary>
    static member DefaultWaitForReplicasTimeout = TimeSpan.FromSeconds 1.0

    /// <summary>The default inline limit: 64 bytes, Redis's own default <c>hash-max-listpack-value</c>.</summary>
    static member DefaultInlineLimit = 64

    /// The most InlineLimit may be: a node is rewritten whole for a change to any leaf it holds inline, so one far longer
    /// would cost each such change more than the fields it saves.
    static member internal MaxInlineLimit = 65536

    /// <summary>
    /// Put before every key the store makes (sessions <c>KeyPrefix{c}:id</c>, and the indexes beside them, where
    /// <c>c</c> is the id's first character: see the README's key layout). Lets several apps share one Redis. It cannot
    /// contain <c>{</c> or <c>}</c>, which would change the keys' Redis Cluster hash tags. Default <c>"sesame:"</c>.
    /// </summary>
    member val KeyPrefix = RedisStoreOptions.DefaultKeyPrefix with get, set

    /// <summary>The Redis database number; -1 (the default) uses the connection's default database. Redis Cluster has database 0 only.</summary>
    member val Database = RedisStoreOptions.DefaultDatabase with get, set

    /// <summary>
    /// The longest a load, commit, move, delete or listing may wait for Redis. Past it the operation fails with a
    /// <see cref="T:Sesame.SessionStoreException"/> (a commit may still have been applied). Within it, conditions Redis
    /// reports before running anything (a Redis Cluster slot being migrated, a session in the middle of a move to
    /// another slot) are retried. Default 5 seconds; at least 1 millisecond and at most about 49.7 days.
    /// </summary>
    member val OperationTimeout = RedisStoreOptions.DefaultOperationTimeout with get, set

    /// <summary>
    /// How stale the idle expiry may get before a load or a commit refreshes it. Every load and commit slides the
    /// session's TTL, except that one finding the TTL refreshed less than this long ago leaves
    /// it alone, so a burst of requests makes one expiry write to Redis (and to its replicas and AOF)
    /// rather than one per request. A session may therefore expire up to this much earlier than
    /// the idle timeout after its last request. A commit always sets the last-seen time; a load sets it only when it
    /// slides the expiry, so it is as precise as this for sessions that are only read. Another idle timeout than the
    /// one the expiry last slid to (shorter, longer, or none) is applied at once. <c>TimeSpan.Zero</c> refreshes on
    /// every load and commit. Capped at half the idle timeout for a commit and a quarter for a load (a longer interval
    /// would let a session in use expire). A load within it is one <c>HGETALL</c>, with no script: the deadline the last
    /// slide set, which the hash records, tells it. Default 1 second.
    /// </summary>
    member val ExpiryRefreshInterval = RedisStoreOptions.DefaultExpiryRefreshInterval with get, set

    /// <summary>
    /// How often this store instance sweeps the expiry sets for sessions Redis has expired (or evicted), to remove
    /// them from the indexes and report them to the store's observer (<c>SessionEndReason.Expired</c>). Every app
    /// instance sweeps; each ended session is reported once, by whichever instance removes it first. An expiry is
    /// therefore reported at most this long after it happened (plus the sweep's own time), or earlier, when a request
    /// asks for the expired session. <c>TimeSpan.Zero</c> or <c>Timeout.InfiniteTimeSpan</c>: this instance does not
    /// sweep (<see cref="M:Sesame.Redis.RedisStore.SweepAsync(System.Threading.CancellationToken)"/> still does). Default 1 minute; otherwise at least 1 millisecond and at most about 49.7 days.
    /// </summary>
    member val SweepInterval = RedisStoreOptions.DefaultSweepInterval with get, set

    /// <summary>
    /// The number of replicas that must have a commit (and a move or a delete) before the store acknowledges it: after
    /// its script, the store sends Redis <c>WAIT</c> on the same connection, and a commit that fewer replicas
    /// acknowledged within <c>WaitForReplicasTimeout</c> fails with a <see cref="T:Sesame.SessionStoreException"/>
    /// (it was applied on the primary, and may be lost if the primary fails before its replicas have it). With it, a
    /// primary's failure loses no acknowledged commit as long as the replica that takes over is one that acknowledged.
    /// 0 (the default) does not wait: replication is asynchronous, and a failover may lose the last commits.
    /// </summary>
    member val WaitForReplicas = 0 with get, set

    /// <summary>How long a commit waits for <c>WaitForReplicas</c> replicas to acknowledge it. Default 1 second.</summary>
    member val WaitForReplicasTimeout = RedisStoreOptions.DefaultWaitForReplicasTimeout with get, set

    /// <summary>
    /// <para>The longest node, in bytes, that holds leaves inline. A session is a hash with a field per object, array and
    /// leaf, named by its full path; a leaf that is a member of an object is instead written into its object's field
    /// while that field stays within this many bytes, and has no field of its own. Fewer fields, without repeating the
    /// path in each, make a session smaller in Redis (the load test's 1 KB session's hash is 0.6x the size, under
    /// Redis's default limits and under the suggested ones; see docs/performance.md), and a commit and a load have
    /// fewer fields to read and write.</para>
    /// <para>Set it to Redis's <c>hash-max-listpack-value</c> (64 by default; we suggest 256 for both, with
    /// <c>hash-max-listpack-entries 1024</c>): a hash stays a compact listpack only while every field is within that
    /// limit, so a longer inline limit than Redis's turns hashes into hash tables, several times larger.</para>
    /// <para>0 writes no leaf inline and leaves sessions in the format Sesame wrote before (format 2), which this version
    /// reads too. Use it for a rolling upgrade from a version before this option: an earlier version refuses a session
    /// that may hold inline leaves (format 3) as invalid, so set 0 until every instance runs this version. Default 64;
    /// at most 65,536.</para>
    /// </summary>
    member val InlineLimit = RedisStoreOptions.DefaultInlineLimit with get, set

    /// <summary>
    /// The Redis key of the ASP.NET Core Data Protection key ring that <c>AddRedisStore</c> keeps
    /// beside the sessions: <c>KeyPrefix</c> followed by <c>DataProtection-Keys</c> (so
    /// <c>"sesame:DataProtection-Keys"</c> by default), a Redis list of the keys' XML. No session
    /// key has this name: every session key has a <c>{</c> after the prefix.
    /// </summary>
    member this.DataProtectionKey = this.KeyPrefix + "DataProtection-Keys"

    /// <summary>Checks the options; throws <see cref="T:System.ArgumentException"/> naming what is wrong.</summary>
    member this.Validate() =
        let timerTakes (span: TimeSpan) = span = Timeout.InfiniteTimeSpan || span >= RedisStoreOptions.MinTimerSpan && span <= RedisStoreOptions.MaxTimerSpan
        if isNull this.KeyPrefix then invalidArg "KeyPrefix" "KeyPrefix cannot be null (use the empty string for no prefix)."
        if this.KeyPrefix.IndexOfAny([| '{'; '}' |]) >= 0 then
            invalidArg "KeyPrefix" $"KeyPrefix cannot contain '{{' or '}}' (they would change the keys' Redis Cluster hash tags); it is \"{this.KeyPrefix}\"."
        if not (timerTakes this.OperationTimeout) then
            invalidArg
                "OperationTimeout"
                $"OperationTimeout must be at least 1 millisecond and at most about 49.7 days (or Timeout.InfiniteTimeSpan); it is {this.OperationTimeout}."
        if this.ExpiryRefreshInterval < TimeSpan.Zero then
            invalidArg "ExpiryRefreshInterval" $"ExpiryRefreshInterval cannot be negative; it is {this.ExpiryRefreshInterval}."
        if this.SweepInterval <> TimeSpan.Zero && not (timerTakes this.SweepInterval) then
            invalidArg
                "SweepInterval"
                $"SweepInterval must be at least 1 millisecond and at most about 49.7 days (or TimeSpan.Zero or Timeout.InfiniteTimeSpan for no sweeper); it is {this.SweepInterval}."
        if this.WaitForReplicas < 0 then invalidArg "WaitForReplicas" $"WaitForReplicas cannot be negative; it is {this.WaitForReplicas}."
        if this.WaitForReplicas > 0 && this.WaitForReplicasTimeout <= TimeSpan.Zero then
            invalidArg "WaitForReplicasTimeout" $"WaitForReplicasTimeout must be positive; it is {this.WaitForReplicasTimeout}."
        if this.InlineLimit < 0 || this.InlineLimit > RedisStoreOptions.MaxInlineLimit then
            invalidArg "InlineLimit" $"InlineLimit must be from 0 (no leaf inline) to {RedisStoreOptions.MaxInlineLimit} bytes; it is {this.InlineLimit}."

    /// <summary>A copy of these options (the store keeps its own, so later changes do not reach it).</summary>
    member this.Clone() =
        RedisStoreOptions(
            KeyPrefix = this.KeyPrefix,
            Database = this.Database,
            OperationTimeout = this.OperationTimeout,
            ExpiryRefreshInterval = this.ExpiryRefreshInterval,
            SweepInterval = this.SweepInterval,
            WaitForReplicas = this.WaitForReplicas,
            WaitForReplicasTimeout = this.WaitForReplicasTimeout,
            InlineLimit = this.InlineLimit
        )
