/// Which store the sample runs on, from its --store option.
module Sesame.Samples.Giraffe.StoreChoice

open System
open System.Threading
open System.Threading.Tasks
open Microsoft.AspNetCore.DataProtection
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Logging
open Sesame
open Sesame.Redis
open Sesame.Postgres

/// A store the sample can run on.
type StoreChoice =
    /// Sessions in memory: lost when the app stops.
    | Memory
    /// Sessions in one durable file: they survive restarts and crashes.
    | File of path: string
    /// Sessions in Redis: shared by every app instance that uses the same server.
    | Redis of configuration: string
    /// Sessions in PostgreSQL: shared by every app instance on the same database.
    | Postgres of connectionString: string

/// Reads --store: `memory` (the default), `file:PATH`, `redis:HOST:PORT` or `postgres:CONNECTION` (an Npgsql connection string).
let parse (text: string) : Result<StoreChoice, string> =
    match text with
    | null
    | ""
    | "memory" -> Ok Memory
    | text when text.StartsWith("file:", StringComparison.Ordinal) && text.Length > 5 -> Ok(File(text.Substring 5))
    | text when text.StartsWith("redis:", StringComparison.Ordinal) && text.Length > 6 -> Ok(Redis(text.Substring 6))
    | text when text.StartsWith("postgres:", StringComparison.Ordinal) && text.Length > 9 -> Ok(Postgres(text.Substring 9))
    | other -> Error $"Unknown store '{other}'. Use: memory, file:PATH, redis:HOST:PORT or postgres:CONNECTION."

/// The sample's session cookie.
[<Literal>]
let CookieName = "sesame-giraffe"

/// The sample's Data Protection application name: every instance on one Redis uses it, so each reads
/// the cookies the others issue; with keys in a folder, it keeps cookies valid when the app starts from
/// another folder (the default name is the app's content root).
[<Literal>]
let ApplicationName = "sesame-giraffe-sample"

/// Where Data Protection keys go for a file store: beside the session file, so cookies stay valid
/// across restarts even on a machine with no user profile. On PostgreSQL, in one folder of this machine's
/// temporary directory, so that instances started here on one database open each other's cookies (on
/// several machines, use a folder they share, or any shared key repository). (Redis keeps them in
/// Redis; memory uses the ASP.NET Core default.)
let keyDirectory (choice: StoreChoice) : string option =
    match choice with
    | File path -> Some(IO.Path.GetFullPath path + ".keys")
    | Postgres _ -> Some(IO.Path.Combine(IO.Path.GetTempPath(), "sesame-giraffe-sample-keys"))
    | Memory
    | Redis _ -> None

/// Opens the chosen store and describes it for the start-up line.
/// A file another process holds is a SessionStoreException saying the file is in use.
let openStore (choice: StoreChoice) (loggers: ILoggerFactory) : Task<SessionStore * string> = task {
    match choice with
    | Memory -> return (new MemoryStore() :> SessionStore), "memory (sessions are lost when the app stops)"
    | File path ->
        let store = FileStore.Open(path, FileStoreOptions(), loggers.CreateLogger "Sesame.FileStore")
        return (store :> SessionStore), $"file {IO.Path.GetFullPath path} (sessions survive restarts)"
    | Redis configuration ->
        let! store = RedisStore.ConnectAsync(configuration, RedisStoreOptions(), loggers.CreateLogger "Sesame.Redis")
        return (store :> SessionStore), $"redis {configuration} (sessions shared by every instance)"
    | Postgres connectionString ->
        let store = new PostgresStore(connectionString, PostgresStoreOptions(), loggers.CreateLogger "Sesame.Postgres")
        // Now rather than at the first request: an unreachable database is said at start-up.
        let! failure = task {
            try
                do! store.EnsureSchemaAsync CancellationToken.None
                return None
            with e ->
                return Some e
        }
        match failure with
        | Some e ->
            store.Dispose()
            return raise e
        | None ->
            // Never the connection string itself: it may hold a password.
            let settings = Npgsql.NpgsqlConnectionStringBuilder connectionString
            return (store :> SessionStore), $"postgres {settings.Host}/{settings.Database} (sessions shared by every instance on the database)"
}

/// Registers Sesame on the opened store, with the Data Protection keys where that store needs them:
/// for Redis, in the same Redis on the store's connection (AddRedisStore), so every instance on that
/// Redis reads the others' cookies with no shared folder; for a file, beside it.
let register (services: IServiceCollection) (choice: StoreChoice) (store: SessionStore) : unit =
    // Its own cookie name, so this sample and the C# one can run side by side in one browser.
    let configure = Action<SesameOptions>(fun options -> options.Cookie.Name <- CookieName)
    match store with
    | :? RedisStore as redis -> services.AddSesame(configure).AddRedisStore(redis, ApplicationName) |> ignore
    | _ ->
        services.AddSesame(configure).AddStore(store) |> ignore
        match keyDirectory choice with
        | Some directory -> services.AddDataProtection().PersistKeysToFileSystem(IO.DirectoryInfo directory).SetApplicationName(ApplicationName) |> ignore
        | None -> ()
