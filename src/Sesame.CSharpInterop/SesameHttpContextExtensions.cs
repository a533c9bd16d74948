using Sesame;

namespace Microsoft.AspNetCore.Http;

/// <summary>Getting the request's Sesame session from C#.</summary>
public static class SesameHttpContextExtensions
{
    /// <summary>
    /// The request's session, loaded from the store on first use (one store round trip at most per
    /// request; none for a request that never asks). Every call in one request gives the same object.
    /// </summary>
    /// <param name="context">The request.</param>
    /// <returns>The session, with typed members and a <see cref="SesameSession.Dynamic"/> view.</returns>
    /// <exception cref="InvalidOperationException">Sesame is not set up for this request: add <c>app.UseSesame()</c> to the pipeline (and <c>builder.Services.AddSesame()</c>).</exception>
    /// <exception cref="SessionStoreException">The store failed.</exception>
    public static Task<SesameSession> GetSesameAsync(this HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var handle = global::Sesame.SessionModule.ofContext(context);
        var session = context.Features.Get<SesameSession>();
        if (session is null || !ReferenceEquals(session.Handle, handle))
        {
            session = new SesameSession(handle);
            context.Features.Set(session);
        }

        var loading = handle.LoadAsync();
        return loading.IsCompletedSuccessfully ? session.Completed : Loaded(loading, session);

        static async Task<SesameSession> Loaded(Task loading, SesameSession session)
        {
            await loading.ConfigureAwait(false);
            return session;
        }
    }

    /// <summary>
    /// The request's session as a <c>dynamic</c> object you just change: <c>s.times = (s.times ?? 0) + 1</c>,
    /// <c>s.foo.bar.baz *= 2</c>. See <see cref="SessionProxy"/> for the rules.
    /// </summary>
    /// <param name="context">The request.</param>
    /// <returns>The session's root <see cref="SessionProxy"/>, typed <c>dynamic</c>.</returns>
    /// <exception cref="InvalidOperationException">Sesame is not set up for this request: add <c>app.UseSesame()</c> to the pipeline.</exception>
    /// <exception cref="SessionStoreException">The store failed.</exception>
    public static async Task<dynamic> GetDynamicSesameAsync(this HttpContext context)
    {
        var session = await context.GetSesameAsync().ConfigureAwait(false);
        return session.Dynamic;
    }

    /// <summary>The live sessions of a user (one per device they signed in from), least recently used first, with their device facts.</summary>
    /// <param name="context">The request (for the app's store).</param>
    /// <param name="userId">The user.</param>
    /// <returns>The sessions; show <see cref="SessionSummary.Handle"/>, never <see cref="SessionSummary.Id"/>, in a page.</returns>
    /// <exception cref="SessionStoreException">The store failed.</exception>
    public static async Task<IReadOnlyList<SessionSummary>> GetUserSessionsAsync(this HttpContext context, string userId)
    {
        ArgumentNullException.ThrowIfNull(context);
        var sessions = await global::Sesame.SessionsModule.ofUserAsync(userId, context).ConfigureAwait(false);
        return sessions.ToArray();
    }

    /// <summary>Ends the session of <paramref name="userId"/> whose <see cref="SessionSummary.Handle"/> is <paramref name="handle"/>: at once, for every app instance.</summary>
    /// <param name="context">The request.</param>
    /// <param name="userId">The user whose session it must be.</param>
    /// <param name="handle">The session's handle, as a "your devices" page sent it back.</param>
    /// <returns>Whether the user had such a live session.</returns>
    public static Task<bool> EndUserSessionAsync(this HttpContext context, string userId, string handle) =>
        global::Sesame.SessionsModule.endByHandleAsync(userId, handle, context);

    /// <summary>Ends every other session of the current session's user ("sign out other devices").</summary>
    /// <param name="context">The request.</param>
    /// <returns>How many sessions were ended (0 when the session is not signed in).</returns>
    public static async Task<int> EndOtherSessionsAsync(this HttpContext context)
    {
        var session = await context.GetSesameAsync().ConfigureAwait(false);
        return await global::Sesame.SessionsModule.endOthersAsync(session.Handle, context).ConfigureAwait(false);
    }

    /// <summary>Ends every session of a user (after a password change, say).</summary>
    /// <param name="context">The request.</param>
    /// <param name="userId">The user.</param>
    /// <returns>How many sessions were ended.</returns>
    public static Task<int> EndAllUserSessionsAsync(this HttpContext context, string userId) =>
        global::Sesame.SessionsModule.endAllAsync(userId, context);
}
