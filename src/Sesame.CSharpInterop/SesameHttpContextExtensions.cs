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
}
