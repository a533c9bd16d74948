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
/// Registering Sesame on Redis with the app's Data Protection key ring in the same Redis, so that
/// every instance on that Redis opens the cookies the others issue with nothing else shared.
/// </summary>
[<Extension; AbstractClass; Sealed>]
type SesameRedisServiceCollectionExtensions =

    static member private AddKeyRing(services: IServiceCollection, connection: IConnectionMultiplexer, options: RedisStoreOptions, applicationName: string) =
        // Through a factory so the key ring lives in the store's database, not the connection's default.
        let database = options.Database
        services
            .AddDataProtection()
            .PersistKeysToStackExchangeRedis(Func<IDatabase>(fun () -> connection.GetDatabase(database, null)), RedisKey.op_Implicit options.DataProtectionKey)
            .SetApplicationName(applicationName)
        |> ignore

    static member private Check(services: IServiceCollection, applicationName: string) =
        if isNull services then nullArg "services"
        if String.IsNullOrWhiteSpace applicationName then
            invalidArg "applicationName" "Name the application (the same on every instance): Data Protection isolates key use by it, and by default it is the content root path, which differs between machines."

    /// <summary>
    /// Adds Sesame with its sessions in Redis, and the app's ASP.NET Core Data Protection key ring in
    /// the same Redis, both on <paramref name="connection"/>. Every instance that makes this call
    /// against the same Redis with the same <c>KeyPrefix</c> and <paramref name="applicationName"/>
    /// reads the cookies the others issue: no shared folder is needed.
    /// </summary>
    /// <remarks>
    /// <para>It does what these calls would: <c>AddSesame</c> with a <see cref="T:Sesame.Redis.RedisStore"/>
    /// on the connection (made when the app first needs it, logging to the category <c>Sesame.Redis</c>,
    /// disposed with the app), and <c>AddDataProtection().PersistKeysToStackExchangeRedis(...)</c> with
    /// the key <see cref="P:Sesame.Redis.RedisStoreOptions.DataProtectionKey"/> (<c>KeyPrefix</c> +
    /// <c>DataProtection-Keys</c>, in the store's <c>Database</c>) and
    /// <c>SetApplicationName(applicationName)</c>. The key ring protects everything Data Protection
    /// protects in the app (authentication and antiforgery cookies too), so protect Redis as you would
    /// those keys: whoever can read the key ring can forge the app's cookies.</para>
    /// <para>The connection stays the caller's: disposing the app does not close it. Configure it with
    /// <c>abortConnect=false</c> so it reconnects after an outage. Call <c>AddSesame(options => ...)</c>
    /// as well, before or after, to set the cookie and timeouts; leave its <c>Store</c> unset. Data
    /// Protection keeps the last key repository set: call this after any other <c>PersistKeysTo...</c>.</para>
    /// </remarks>
    /// <param name="services">The app's services.</param>
    /// <param name="connection">The Redis connection the store and the key ring share.</param>
    /// <param name="applicationName">The Data Protection application name; the same on every instance.</param>
    /// <param name="configure">Sets the store's options (<c>KeyPrefix</c>, <c>Database</c>, timeouts); may be <c>null</c>.</param>
    /// <returns>The services, for chaining.</returns>
    [<Extension>]
    static member AddSesameRedis(services: IServiceCollection, connection: IConnectionMultiplexer, applicationName: string, configure: Action<RedisStoreOptions>) : IServiceCollection =
        SesameRedisServiceCollectionExtensions.Check(services, applicationName)
        if isNull connection then nullArg "connection"
        let options = RedisStoreOptions()
        if not (isNull configure) then configure.Invoke options
        if isNull options.KeyPrefix then invalidArg "configure" "KeyPrefix cannot be null (use the empty string for no prefix)."
        services.AddSesame(fun sesame ->
            sesame.StoreFactory <-
                Func<IServiceProvider, ISessionStore>(fun provider ->
                    let logger =
                        match provider.GetService<ILoggerFactory>() with
                        | null -> null
                        | loggers -> loggers.CreateLogger "Sesame.Redis"
                    new RedisStore(connection, options, logger)))
        |> ignore
        SesameRedisServiceCollectionExtensions.AddKeyRing(services, connection, options, applicationName)
        services

    /// <summary>
    /// Adds Sesame with its sessions in Redis and the Data Protection key ring in the same Redis, with
    /// the store's default options (see the overload that takes <c>configure</c>).
    /// </summary>
    /// <param name="services">The app's services.</param>
    /// <param name="connection">The Redis connection the store and the key ring share.</param>
    /// <param name="applicationName">The Data Protection application name; the same on every instance.</param>
    /// <returns>The services, for chaining.</returns>
    [<Extension>]
    static member AddSesameRedis(services: IServiceCollection, connection: IConnectionMultiplexer, applicationName: string) : IServiceCollection =
        SesameRedisServiceCollectionExtensions.AddSesameRedis(services, connection, applicationName, null)

    /// <summary>
    /// Adds Sesame with its sessions in <paramref name="store"/>, and the app's Data Protection key
    /// ring in the same Redis, on the store's connection, under the store's
    /// <see cref="P:Sesame.Redis.RedisStoreOptions.DataProtectionKey"/> (see the overload that takes a
    /// connection). For a store made by <see cref="M:Sesame.Redis.RedisStore.ConnectAsync(System.String,Sesame.Redis.RedisStoreOptions,Microsoft.Extensions.Logging.ILogger)"/>:
    /// the app then owns the store, and disposing the app closes its connection.
    /// </summary>
    /// <param name="services">The app's services.</param>
    /// <param name="store">The Redis store.</param>
    /// <param name="applicationName">The Data Protection application name; the same on every instance.</param>
    /// <returns>The services, for chaining.</returns>
    [<Extension>]
    static member AddSesameRedis(services: IServiceCollection, store: RedisStore, applicationName: string) : IServiceCollection =
        SesameRedisServiceCollectionExtensions.Check(services, applicationName)
        if isNull (box store) then nullArg "store"
        services.AddSesame(fun sesame -> sesame.Store <- store) |> ignore
        SesameRedisServiceCollectionExtensions.AddKeyRing(services, store.Connection, store.Options, applicationName)
        services
