using Microsoft.AspNetCore.DataProtection;

namespace Sesame.Samples.CSharp;

/// <summary>
/// Which store the sample runs on, from its <c>--store</c> option: <c>memory</c> (the default), <c>file:PATH</c>,
/// <c>redis:CONFIGURATION</c> (a StackExchange.Redis configuration string such as <c>localhost:6379</c>) or
/// <c>postgres:CONNECTION</c> (an Npgsql connection string such as <c>Host=localhost;Username=app;Database=app</c>).
/// </summary>
public sealed record StoreChoice(string? FilePath, string? RedisConfiguration = null, string? PostgresConnection = null)
{
    /// <summary>
    /// The sample's Data Protection application name on Redis: every instance on one Redis uses it, so each
    /// reads the cookies the others issue.
    /// </summary>
    public const string ApplicationName = "sesame-csharp-sample";

    /// <summary>What the start-up line says about the store.</summary>
    public string Description =>
        RedisConfiguration is not null ? $"redis {RedisConfiguration} (sessions and Data Protection keys shared by every instance)"
        : PostgresConnection is not null ? $"postgres {PostgresServer} (sessions shared by every instance on the database)"
        : FilePath is null ? "memory (sessions are lost when the app stops)"
        : $"file {FilePath} (sessions survive restarts)";

    /// <summary>
    /// Where Data Protection keys go: beside a session file, so cookies stay valid across restarts even on a
    /// machine with no user profile; <c>null</c> for the memory store (the ASP.NET Core default) and for Redis
    /// (the keys live in Redis).
    /// </summary>
    public string? KeyDirectory =>
        PostgresConnection is not null ? System.IO.Path.Combine(System.IO.Path.GetTempPath(), "sesame-csharp-sample-keys")
        : FilePath is null ? null : System.IO.Path.GetFullPath(FilePath) + ".keys";

    /// <summary>
    /// The PostgreSQL host and database, for the start-up line: never the connection string, which may hold a password.
    /// </summary>
    private string PostgresServer
    {
        get
        {
            var settings = new Npgsql.NpgsqlConnectionStringBuilder(PostgresConnection);
            return $"{settings.Host}/{settings.Database}";
        }
    }

    /// <summary>Reads the <c>--store</c> option.</summary>
    public static bool TryParse(string? text, out StoreChoice choice, out string error)
    {
        error = "";
        switch (text)
        {
            case null or "" or "memory":
                choice = new StoreChoice((string?)null);
                return true;
            case not null when text.StartsWith("file:", StringComparison.Ordinal) && text.Length > "file:".Length:
                choice = new StoreChoice(text["file:".Length..]);
                return true;
            case not null when text.StartsWith("redis:", StringComparison.Ordinal) && text.Length > "redis:".Length:
                choice = new StoreChoice(null, text["redis:".Length..]);
                return true;
            case not null when text.StartsWith("postgres:", StringComparison.Ordinal) && text.Length > "postgres:".Length:
                choice = new StoreChoice(null, null, text["postgres:".Length..]);
                return true;
            default:
                choice = new StoreChoice((string?)null);
                error = $"Unknown store '{text}'. Use: memory, file:PATH, redis:HOST:PORT or postgres:CONNECTION.";
                return false;
        }
    }

    /// <summary>The sample's session cookie: its own name, so this sample and the F# one can run side by side in one browser.</summary>
    public const string CookieName = "sesame-csharp";

    /// <summary>Sesame's options for the sample.</summary>
    public static void Configure(SesameOptions options) => options.Cookie.Name = CookieName;

    /// <summary>
    /// Registers Sesame on the chosen store. On Redis, one connection carries both the sessions and the Data
    /// Protection key ring (<c>AddRedisStore</c>), so instances on one Redis need no shared folder; a file
    /// store keeps its keys beside the file.
    /// </summary>
    public async Task RegisterAsync(IServiceCollection services)
    {
        if (RedisConfiguration is not null)
        {
            // abortConnect=false: start even while Redis is down, and reconnect after an outage.
            var connection = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(RedisConfiguration + ",abortConnect=false");
            services.AddSesame(Configure).AddRedisStore(connection, ApplicationName);
            return;
        }
        var sesame = services.AddSesame(Configure);
        if (PostgresConnection is not null)
        {
            // The store creates its tables on first use; instances on one database serve the same sessions, and
            // share the Data Protection keys through KeyDirectory (one folder on this machine).
            sesame.AddPostgresStore(PostgresConnection);
        }
        else if (FilePath is null)
        {
            sesame.AddMemoryStore();
        }
        else
        {
            sesame.AddFileStore(FilePath);
        }
        if (KeyDirectory is { } keys)
        {
            services.AddDataProtection().PersistKeysToFileSystem(new DirectoryInfo(keys));
        }
    }
}
