using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Sesame;

/// <summary>
/// Choosing where sessions live, inside <c>builder.Services.AddSesame(options =&gt; ...)</c>:
/// <c>options.UseMemoryStore()</c>, <c>options.UseFileStore("sessions.db")</c>, or any
/// <see cref="ISessionStore"/> with <c>options.UseStore(store)</c>.
/// </summary>
/// <remarks>
/// Other stores add their own <c>Use...Store</c> extension methods on <see cref="SesameOptions"/> in the
/// same way (the Redis package, for one): each sets <see cref="SesameOptions.Store"/>. The store chosen is
/// registered as the app's <see cref="ISessionStore"/> singleton and disposed with the app.
/// </remarks>
public static class SesameOptionsStoreExtensions
{
    /// <summary>Keeps sessions in <paramref name="store"/>.</summary>
    /// <param name="options">Sesame's options.</param>
    /// <param name="store">The store; the app owns and disposes it.</param>
    /// <returns>The options, for chaining.</returns>
    public static SesameOptions UseStore(this SesameOptions options, ISessionStore store)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(store);
        options.Store = store;
        return options;
    }

    /// <summary>Keeps sessions in this process's memory (the default): fast, and lost when the app stops.</summary>
    /// <param name="options">Sesame's options.</param>
    /// <returns>The options, for chaining.</returns>
    /// <remarks>Defaults: at most 100,000 sessions and 256 MiB of session JSON (the idlest are evicted past either), expired sessions swept every minute.</remarks>
    public static SesameOptions UseMemoryStore(this SesameOptions options) => options.UseMemoryStore(static _ => { });

    /// <summary>Keeps sessions in this process's memory, with the memory store's options set by <paramref name="configure"/>.</summary>
    /// <param name="options">Sesame's options.</param>
    /// <param name="configure">Sets the memory store's options: <c>MaxSessions</c>, <c>MaxTotalBytes</c>, <c>SweepInterval</c>, <c>InitialSessions</c>.</param>
    /// <returns>The options, for chaining.</returns>
    public static SesameOptions UseMemoryStore(this SesameOptions options, Action<MemoryStoreOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(configure);
        var storeOptions = new MemoryStoreOptions();
        configure(storeOptions);
        options.Store = new MemoryStore(storeOptions);
        return options;
    }

    /// <summary>Keeps sessions in a file that survives restarts and crashes (an append-only log of patches, flushed before each commit returns).</summary>
    /// <param name="options">Sesame's options.</param>
    /// <param name="path">The session file; its directory is created if missing. One app owns it at a time.</param>
    /// <returns>The options, for chaining.</returns>
    /// <exception cref="SessionStoreException">The file is in use by another process, cannot be opened, or is not a Sesame session file.</exception>
    /// <remarks>The file is opened when the app starts, and the store logs through the app's logging (category <c>Sesame.FileStore</c>).</remarks>
    public static SesameOptions UseFileStore(this SesameOptions options, string path) => options.UseFileStore(path, static _ => { });

    /// <summary>Keeps sessions in a file that survives restarts and crashes, with the file store's options set by <paramref name="configure"/>.</summary>
    /// <param name="options">Sesame's options.</param>
    /// <param name="path">The session file; its directory is created if missing. One app owns it at a time.</param>
    /// <param name="configure">Sets the file store's options (compaction, sweeping).</param>
    /// <returns>The options, for chaining.</returns>
    /// <exception cref="SessionStoreException">The file is in use by another process, cannot be opened, or is not a Sesame session file.</exception>
    public static SesameOptions UseFileStore(this SesameOptions options, string path, Action<FileStoreOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(configure);
        var storeOptions = new FileStoreOptions();
        configure(storeOptions);
        // A factory, so the store is opened once with the app's logger (a torn tail it cut is then reported).
        options.Store = null;
        options.StoreFactory = services =>
            FileStore.Open(path, storeOptions, services.GetRequiredService<ILoggerFactory>().CreateLogger("Sesame.FileStore"));
        return options;
    }
}
