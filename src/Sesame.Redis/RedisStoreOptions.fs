namespace Sesame.Redis

open System

/// <summary>Options of the Redis store.</summary>
/// <remarks>
/// Defaults: <c>KeyPrefix</c> <c>"sesame:"</c>, <c>Database</c> -1 (the connection's default),
/// <c>OperationTimeout</c> 5 seconds, <c>ExpiryRefreshInterval</c> 1 second.
/// </remarks>
[<AllowNullLiteral>]
type RedisStoreOptions() =

    /// <summary>The default key prefix: <c>"sesame:"</c>.</summary>
    static member DefaultKeyPrefix = "sesame:"

    /// <summary>The default Redis database: -1, the connection's default database.</summary>
    static member DefaultDatabase = -1

    /// <summary>The default bound on one load, commit or delete: 5 seconds.</summary>
    static member DefaultOperationTimeout = TimeSpan.FromSeconds 5.0

    /// <summary>The default refresh interval of the idle expiry on load: 1 second.</summary>
    static member DefaultExpiryRefreshInterval = TimeSpan.FromSeconds 1.0

    /// <summary>
    /// Put before every session id to make its Redis key (the key is the prefix followed by the
    /// id). Lets several apps share one Redis. Default <c>"sesame:"</c>.
    /// </summary>
    member val KeyPrefix = RedisStoreOptions.DefaultKeyPrefix with get, set

    /// <summary>The Redis database number; -1 (the default) uses the connection's default database.</summary>
    member val Database = RedisStoreOptions.DefaultDatabase with get, set

    /// <summary>
    /// The longest a load, commit or delete may wait for Redis. Past it the operation fails with a
    /// <see cref="T:Sesame.SessionStoreException"/> (a commit may still have been applied).
    /// Default 5 seconds.
    /// </summary>
    member val OperationTimeout = RedisStoreOptions.DefaultOperationTimeout with get, set

    /// <summary>
    /// How stale the idle expiry may get before a load refreshes it. Every load slides the
    /// session's TTL, except that a load finding the TTL refreshed less than this long ago leaves
    /// it alone, so a burst of requests makes one write to Redis (and to its replicas and AOF)
    /// rather than one per request. A session may therefore expire up to this much earlier than
    /// the idle timeout after its last load. <c>TimeSpan.Zero</c> refreshes on every load.
    /// Commits always refresh it. Default 1 second.
    /// </summary>
    member val ExpiryRefreshInterval = RedisStoreOptions.DefaultExpiryRefreshInterval with get, set

    /// <summary>
    /// The Redis key of the ASP.NET Core Data Protection key ring that <c>AddSesameRedis</c> keeps
    /// beside the sessions: <c>KeyPrefix</c> followed by <c>DataProtection-Keys</c> (so
    /// <c>"sesame:DataProtection-Keys"</c> by default), a Redis list of the keys' XML. No session
    /// can have this key: session ids are 32 characters long.
    /// </summary>
    member this.DataProtectionKey = this.KeyPrefix + "DataProtection-Keys"
