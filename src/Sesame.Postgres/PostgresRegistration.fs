// Registration lives in the namespace ASP.NET Core apps already open, beside AddSesame.
namespace Microsoft.Extensions.DependencyInjection

open System
open System.Runtime.CompilerServices
open Microsoft.Extensions.Logging
open Npgsql
open Sesame
open Sesame.Postgres

/// <summary>Keeping Sesame's sessions in PostgreSQL: <c>services.AddSesame(...).AddPostgresStore(...)</c>.</summary>
[<Extension; AbstractClass; Sealed>]
type SesamePostgresBuilderExtensions =

    static member private Options(configure: Action<PostgresStoreOptions>) =
        let options = PostgresStoreOptions()
        if not (isNull configure) then configure.Invoke options
        // Wrong options fail at registration, not at the first request.
        options.Validate()
        options

    static member private LoggerOf(provider: IServiceProvider) : ILogger =
        match provider.GetService<ILoggerFactory>() with
        | null -> null
        | loggers -> loggers.CreateLogger "Sesame.Postgres"

    /// <summary>
    /// Keeps sessions in PostgreSQL, on a connection pool of the store's own made from
    /// <paramref name="connectionString"/> (closed when the app stops). The store creates its schema on first use
    /// (see <see cref="P:Sesame.Postgres.PostgresStoreOptions.CreateSchema"/>) and sweeps expired sessions in the background.
    /// </summary>
    /// <remarks>
    /// Every app instance on the same database serves every session, so the instances must share their ASP.NET Core
    /// Data Protection keys too (for example <c>services.AddDataProtection().PersistKeysToFileSystem(sharedFolder)
    /// .SetApplicationName("my-app")</c>); Sesame warns at startup when they are not persisted anywhere.
    /// </remarks>
    /// <param name="builder">Sesame's registration.</param>
    /// <param name="connectionString">An Npgsql connection string, e.g. <c>"Host=db;Database=app;Username=app;Password=..."</c>.</param>
    /// <param name="configure">Sets the store's options (schema, table name, timeouts, sweeper); may be <c>null</c>.</param>
    /// <returns>The builder, for chaining.</returns>
    /// <exception cref="System.ArgumentException">The connection string is empty or the options are out of range.</exception>
    [<Extension>]
    static member AddPostgresStore(builder: SesameBuilder, connectionString: string, configure: Action<PostgresStoreOptions>) : SesameBuilder =
        if isNull (box builder) then nullArg (nameof builder)
        if String.IsNullOrWhiteSpace connectionString then invalidArg (nameof connectionString) "The connection string is empty."
        // Parsed now, so that a malformed one fails at registration.
        NpgsqlConnectionStringBuilder connectionString |> ignore
        let options = SesamePostgresBuilderExtensions.Options configure
        builder.AddStore(fun provider -> new PostgresStore(connectionString, options, SesamePostgresBuilderExtensions.LoggerOf provider) :> SessionStore)

    /// <summary>Keeps sessions in PostgreSQL with the store's default options (see the overload that takes <c>configure</c>).</summary>
    /// <param name="builder">Sesame's registration.</param>
    /// <param name="connectionString">An Npgsql connection string.</param>
    /// <returns>The builder, for chaining.</returns>
    [<Extension>]
    static member AddPostgresStore(builder: SesameBuilder, connectionString: string) : SesameBuilder =
        SesamePostgresBuilderExtensions.AddPostgresStore(builder, connectionString, (null: Action<PostgresStoreOptions>))

    /// <summary>
    /// Keeps sessions in PostgreSQL on an existing Npgsql data source, which the caller keeps owning (the app stopping
    /// does not close it). Build it with <c>No Reset On Close=true</c> and <c>Max Auto Prepare=20</c> in its connection
    /// string: otherwise every pooled connection is reset with <c>DISCARD ALL</c>, which makes PostgreSQL plan the
    /// store's functions again on every call (the store logs a warning).
    /// </summary>
    /// <param name="builder">Sesame's registration.</param>
    /// <param name="dataSource">The data source the store takes its connections from.</param>
    /// <param name="configure">Sets the store's options; may be <c>null</c>.</param>
    /// <returns>The builder, for chaining.</returns>
    [<Extension>]
    static member AddPostgresStore(builder: SesameBuilder, dataSource: NpgsqlDataSource, configure: Action<PostgresStoreOptions>) : SesameBuilder =
        if isNull (box builder) then nullArg (nameof builder)
        if isNull dataSource then nullArg (nameof dataSource)
        let options = SesamePostgresBuilderExtensions.Options configure
        builder.AddStore(fun provider -> new PostgresStore(dataSource, options, SesamePostgresBuilderExtensions.LoggerOf provider) :> SessionStore)

    /// <summary>Keeps sessions in PostgreSQL on an existing Npgsql data source, with the store's default options.</summary>
    /// <param name="builder">Sesame's registration.</param>
    /// <param name="dataSource">The data source the store takes its connections from (the caller keeps owning it).</param>
    /// <returns>The builder, for chaining.</returns>
    [<Extension>]
    static member AddPostgresStore(builder: SesameBuilder, dataSource: NpgsqlDataSource) : SesameBuilder =
        SesamePostgresBuilderExtensions.AddPostgresStore(builder, dataSource, (null: Action<PostgresStoreOptions>))
