namespace Sesame.Postgres

open System
open System.IO
open System.Threading
open System.Threading.Tasks
open Npgsql
open Sesame

/// What making sure of the schema found.
[<RequireQualifiedAccess>]
type internal SchemaOutcome =
    /// The tables were missing, and are made.
    | Created
    /// The tables are there at this version (and, when the store may create them, have this Sesame's functions).
    | Found
    /// The tables are there, but PostgreSQL refused to replace their functions (the database user does not own them):
    /// they keep the ones they have.
    | FunctionsKept of reason: string

/// <summary>The store's tables and functions: the SQL that makes them, their names, and creating or checking them.</summary>
[<RequireQualifiedAccess>]
module internal PostgresSchema =

    /// The schema version this Sesame creates and uses (recorded in TableName_version).
    [<Literal>]
    let Version = 1

    let private template =
        lazy
            (use stream = typeof<PostgresStoreOptions>.Assembly.GetManifestResourceStream "Sesame.Postgres.Schema.sql"
             use reader = new StreamReader(stream)
             reader.ReadToEnd())

    /// The schema script with the options' names in it.
    let script (options: PostgresStoreOptions) : string = template.Value.Replace("__schema__", options.Schema).Replace("__table__", options.TableName)

    /// The schema script's functions (from its "-- Functions." line on): every statement is CREATE OR REPLACE, so that
    /// running them again on tables an earlier Sesame made gives those tables this Sesame's functions.
    let functionsScript (options: PostgresStoreOptions) : string =
        let all = script options
        all.Substring(all.IndexOf("\n-- Functions.", StringComparison.Ordinal) + 1)

    /// A name in the store's schema, quoted: the table name followed by <c>suffix</c>.
    let name (options: PostgresStoreOptions) (suffix: string) = $"\"{options.Schema}\".\"{options.TableName}{suffix}\""

    /// The version recorded in the database, or 0 when the version table is missing.
    let private installedVersion (connection: NpgsqlConnection) (options: PostgresStoreOptions) (cancellationToken: CancellationToken) = task {
        use exists = new NpgsqlCommand("SELECT to_regclass($1) IS NOT NULL", connection)
        exists.Parameters.Add(NpgsqlParameter<string>(TypedValue = name options "_version")) |> ignore
        let! found = exists.ExecuteScalarAsync cancellationToken
        if not (unbox<bool> found) then
            return 0
        else
            let versionTable = name options "_version"
            use read = new NpgsqlCommand($"SELECT coalesce(max(version), 0) FROM {versionTable}", connection)
            let! version = read.ExecuteScalarAsync cancellationToken
            return unbox<int> version
    }

    let private wrongVersion (options: PostgresStoreOptions) (version: int) =
        SessionStoreException(
            $"The Sesame tables \"{options.Schema}\".\"{options.TableName}\" are at schema version {version}, made by a newer Sesame; this one uses version {Version}. Upgrade Sesame.Postgres, or point this app at another TableName."
        )

    /// <summary>
    /// Creates the schema when it is missing (or checks it, when <paramref name="create"/> is false); when it is there,
    /// replaces its functions with this Sesame's (see functionsScript). Instances that start together serialize on an
    /// advisory lock, so one creates and the others find it made.
    /// </summary>
    /// <returns>What it found, and whether it made the tables.</returns>
    let ensureAsync (dataSource: NpgsqlDataSource) (options: PostgresStoreOptions) (create: bool) (cancellationToken: CancellationToken) : Task<SchemaOutcome> =
        task {
            use! connection = dataSource.OpenConnectionAsync cancellationToken
            use encoding = new NpgsqlCommand("SELECT current_setting('server_encoding')", connection)
            let! serverEncoding = encoding.ExecuteScalarAsync cancellationToken
            if string serverEncoding <> "UTF8" then
                raise (
                    SessionStoreException(
                        $"The database's encoding is {serverEncoding}; Sesame's PostgreSQL store needs a UTF8 database (keys and strings may hold any Unicode text)."
                    )
                )
            if not create then
                match! installedVersion connection options cancellationToken with
                | Version -> return SchemaOutcome.Found
                | 0 ->
                    return
                        raise (
                            SessionStoreException(
                                $"The Sesame tables \"{options.Schema}\".\"{options.TableName}\" do not exist. Run the SQL of PostgresStore.SchemaScript(options) in your migrations, or let the store create them (CreateSchema = true)."
                            )
                        )
                | version -> return raise (wrongVersion options version)
            else
                use! transaction = connection.BeginTransactionAsync cancellationToken
                use serialize = new NpgsqlCommand("SELECT pg_advisory_xact_lock(hashtext('sesame.schema'), hashtext($1))", connection, transaction)
                // Per schema: stores of several tables in one schema may all be creating it.
                serialize.Parameters.Add(NpgsqlParameter<string>(TypedValue = options.Schema)) |> ignore
                let! _ = serialize.ExecuteNonQueryAsync cancellationToken
                match! installedVersion connection options cancellationToken with
                | Version ->
                    // Made before (perhaps by an earlier Sesame of this schema version): its functions become this Sesame's,
                    // so that a fix to one reaches tables that exist. The tables are left as they are.
                    // A user that may use the tables but does not own them keeps the functions they have, as before.
                    use replaceFunctions = new NpgsqlCommand(functionsScript options, connection, transaction)
                    let! replaced = task {
                        try
                            let! _ = replaceFunctions.ExecuteNonQueryAsync cancellationToken
                            return None
                        with :? PostgresException as e when e.SqlState = PostgresErrorCodes.InsufficientPrivilege ->
                            return Some e.MessageText
                    }
                    match replaced with
                    | None ->
                        do! transaction.CommitAsync cancellationToken
                        return SchemaOutcome.Found
                    | Some reason ->
                        do! transaction.RollbackAsync cancellationToken
                        return SchemaOutcome.FunctionsKept reason
                | 0 ->
                    // CREATE SCHEMA IF NOT EXISTS still needs the right to create schemas: ask only when it is missing.
                    use schemaExists = new NpgsqlCommand("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", connection, transaction)
                    schemaExists.Parameters.Add(NpgsqlParameter<string>(TypedValue = options.Schema)) |> ignore
                    let! exists = schemaExists.ExecuteScalarAsync cancellationToken
                    if not (unbox<bool> exists) then
                        use createSchema = new NpgsqlCommand($"CREATE SCHEMA \"{options.Schema}\"", connection, transaction)
                        let! _ = createSchema.ExecuteNonQueryAsync cancellationToken
                        ()
                    use createTables = new NpgsqlCommand(script options, connection, transaction)
                    let! _ = createTables.ExecuteNonQueryAsync cancellationToken
                    do! transaction.CommitAsync cancellationToken
                    return SchemaOutcome.Created
                | version -> return raise (wrongVersion options version)
        }
