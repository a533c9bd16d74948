// Registration lives in the namespace ASP.NET Core apps already open, beside AddSesame.
namespace Microsoft.Extensions.DependencyInjection

open System
open System.Runtime.CompilerServices
open Microsoft.AspNetCore.DataProtection
open Microsoft.Extensions.Logging
open Sesame
open Sesame.Redis
open StackExchange.Redis

/// <summary>
/// Keeping Sesame's sessions in Redis, with the app's Data Protection key ring in the same Redis, so that every
/// instance on that Redis opens the cookies the others issue with nothing else shared.
/// </summary>
[<Extension; AbstractClass; Sealed>]
type SesameRedisBuilderExtensions =

    static member private AddKeyRing(services: IServiceCollection, connection: IConnectionMultiplexer, options: RedisStoreOptions, applicationName: string) =
        // Through a factory so the key ring lives in the store's database, not the connection's default.
        let database = options.Database
        services
            .AddDataProtection()
            .PersistKeysToStackExchangeRedis(Func<IDatabase>(fun () -> connection.GetDatabase(database, null)), RedisKey.op_Implicit options.DataProtectionKey)
            .SetApplicationName(applicationName)
        |> ignore

    static member private Check(builder: SesameBuilder, applicationName: string) =
        if isNull (box builder) then nullArg "builder"
        if String.IsNullOrWhiteSpace applicationName then
            invalidArg
                "applicationName"
                "Name the application (the same on every instance): Data Protection isolates key use by it, and by default it is the content root path, which differs between machines."

    /// <summary>
    /// Keeps sessions in Redis, and the app's ASP.NET Core Data Protection key ring in the same Redis, both on
    /// <paramref name="connection"/>. Every instance that makes this call against the same Redis with the same
    /// <c>KeyPrefix</c> and <paramref name="applicationName"/> reads the cookies the others issue: no shared folder is needed.
    /// </summary>
    /// <remarks>
    /// <para>It does what these calls would: <c>AddStore</c> with a <see cref="T:Sesame.Redis.RedisStore"/> on the connection
    /// (made when the app starts, logging to the category <c>Sesame.Redis</c>, disposed with the app: its sweep stops), and
    /// <c>AddDataProtection().PersistKeysToStackExchangeRedis(...)</c> with the key
    /// <see cref="P:Sesame.Redis.RedisStoreOptions.DataProtectionKey"/> (<c>KeyPrefix</c> + <c>DataProtection-Keys</c>, in the
    /// store's <c>Database</c>) and <c>SetApplicationName(applicationName)</c>. The key ring protects everything Data
    /// Protection protects in the app (authentication and antiforgery cookies too), so protect Redis as you would those
    /// keys: whoever can read the key ring can forge the app's cookies.</para>
    /// <para>The connection stays the caller's: disposing the app does not close it. Configure it with
    /// <c>abortConnect=false</c> so it reconnects after an outage. Data Protection keeps the last key repository set:
    /// call this after any other <c>PersistKeysTo...</c>.</para>
    /// </remarks>
    /// <param name="builder">What <c>services.AddSesame(...)</c> returned.</param>
    /// <param name="connection">The Redis connection the store and the key ring share.</param>
    /// <param name="applicationName">The Data Protection application name; the same on every instance.</param>
    /// <param name="configure">Sets the store's options (<c>KeyPrefix</c>, <c>Database</c>, timeouts, sweep, replicas); may be <c>null</c>.</param>
    /// <returns>The builder, for chaining.</returns>
    [<Extension>]
    static member AddRedisStore
        (builder: SesameBuilder, connection: IConnectionMultiplexer, applicationName: string, configure: Action<RedisStoreOptions>)
        : SesameBuilder =
        SesameRedisBuilderExtensions.Check(builder, applicationName)
        if isNull connection then nullArg "connection"
        let options = RedisStoreOptions()
        if not (isNull configure) then configure.Invoke options
        // Refused here, at startup, rather than when the first request asks for the store.
        options.Validate()
        builder.AddStore(fun provider ->
            let logger =
                match provider.GetService<ILoggerFactory>() with
                | null -> null
                | loggers -> loggers.CreateLogger "Sesame.Redis"
            new RedisStore(connection, options, logger) :> SessionStore)
        |> ignore
        SesameRedisBuilderExtensions.AddKeyRing(builder.Services, connection, options, applicationName)
        builder

    /// <summary>
    /// Keeps sessions in Redis with the store's default options, and the Data Protection key ring in the same Redis
    /// (see the overload that takes <c>configure</c>).
    /// </summary>
    /// <param name="builder">What <c>services.AddSesame(...)</c> returned.</param>
    /// <param name="connection">The Redis connection the store and the key ring share.</param>
    /// <param name="applicationName">The Data Protection application name; the same on every instance.</param>
    /// <returns>The builder, for chaining.</returns>
    [<Extension>]
    static member AddRedisStore(builder: SesameBuilder, connection: IConnectionMultiplexer, applicationName: string) : SesameBuilder =
        SesameRedisBuilderExtensions.AddRedisStore(builder, connection, applicationName, null)

    /// <summary>
    /// Keeps sessions in <paramref name="store"/>, and the app's Data Protection key ring in the same Redis, on the
    /// store's connection, under the store's <see cref="P:Sesame.Redis.RedisStoreOptions.DataProtectionKey"/> (see the
    /// overload that takes a connection). For a store made by
    /// <see cref="M:Sesame.Redis.RedisStore.ConnectAsync(System.String,Sesame.Redis.RedisStoreOptions,Microsoft.Extensions.Logging.ILogger)"/>:
    /// the caller owns it and disposes it.
    /// </summary>
    /// <param name="builder">What <c>services.AddSesame(...)</c> returned.</param>
    /// <param name="store">The Redis store.</param>
    /// <param name="applicationName">The Data Protection application name; the same on every instance.</param>
    /// <returns>The builder, for chaining.</returns>
    [<Extension>]
    static member AddRedisStore(builder: SesameBuilder, store: RedisStore, applicationName: string) : SesameBuilder =
        SesameRedisBuilderExtensions.Check(builder, applicationName)
        if isNull (box store) then nullArg "store"
        builder.AddStore(store) |> ignore
        SesameRedisBuilderExtensions.AddKeyRing(builder.Services, store.Connection, store.Options, applicationName)
        builder

/// <summary>
/// Registering Sesame on Redis in one call on the services (the same as <c>services.AddSesame().AddRedisStore(...)</c>).
/// </summary>
[<Extension; AbstractClass; Sealed>]
type SesameRedisServiceCollectionExtensions =

    /// <summary>
    /// Adds Sesame with its sessions in Redis and the app's Data Protection key ring in the same Redis, both on
    /// <paramref name="connection"/>: <c>services.AddSesame().AddRedisStore(connection, applicationName, configure)</c>
    /// (see <see cref="T:Microsoft.Extensions.DependencyInjection.SesameRedisBuilderExtensions"/>). Call
    /// <c>AddSesame(options => ...)</c> as well, before or after, to set the cookie and timeouts.
    /// </summary>
    /// <param name="services">The app's services.</param>
    /// <param name="connection">The Redis connection the store and the key ring share.</param>
    /// <param name="applicationName">The Data Protection application name; the same on every instance.</param>
    /// <param name="configure">Sets the store's options; may be <c>null</c>.</param>
    /// <returns>The services, for chaining.</returns>
    [<Extension>]
    static member AddSesameRedis
        (services: IServiceCollection, connection: IConnectionMultiplexer, applicationName: string, configure: Action<RedisStoreOptions>)
        : IServiceCollection =
        if isNull services then nullArg "services"
        services.AddSesame().AddRedisStore(connection, applicationName, configure) |> ignore
        services

    /// <summary>Adds Sesame with its sessions in Redis and the key ring in the same Redis, with the store's default options.</summary>
    /// <param name="services">The app's services.</param>
    /// <param name="connection">The Redis connection the store and the key ring share.</param>
    /// <param name="applicationName">The Data Protection application name; the same on every instance.</param>
    /// <returns>The services, for chaining.</returns>
    [<Extension>]
    static member AddSesameRedis(services: IServiceCollection, connection: IConnectionMultiplexer, applicationName: string) : IServiceCollection =
        SesameRedisServiceCollectionExtensions.AddSesameRedis(services, connection, applicationName, null)

    /// <summary>Adds Sesame with its sessions in <paramref name="store"/> and the key ring in the same Redis (the caller owns the store).</summary>
    /// <param name="services">The app's services.</param>
    /// <param name="store">The Redis store.</param>
    /// <param name="applicationName">The Data Protection application name; the same on every instance.</param>
    /// <returns>The services, for chaining.</returns>
    [<Extension>]
    static member AddSesameRedis(services: IServiceCollection, store: RedisStore, applicationName: string) : IServiceCollection =
        if isNull services then nullArg "services"
        services.AddSesame().AddRedisStore(store, applicationName) |> ignore
        services
