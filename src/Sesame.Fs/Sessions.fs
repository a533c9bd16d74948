namespace Sesame

open System
open System.Threading
open System.Threading.Tasks
open Microsoft.AspNetCore.Http

/// <summary>
/// A user's sessions across devices, and all live sessions for operators (node-sesame's <c>req.sessions</c>): list them
/// with their device facts, end one, end all but the current ("sign out other devices"), end all ("password changed").
/// </summary>
/// <remarks>
/// The store keeps its index of sessions by user in the same atomic step as the sessions themselves (a sign-in adds, a
/// sign-out, an end, an expiry or an eviction removes), so a listing never shows a session that is gone for good and
/// an ended session is gone at once for every app instance: an in-flight request of it cannot bring it back. Ending
/// sessions is not cancelled by the request's abort (a client that hangs up after "sign out everywhere" is signed out
/// everywhere all the same); the store's own time budget bounds it.
/// </remarks>
[<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module Sessions =

    let private storeOf (ctx: HttpContext) = (SesameRuntime.Of ctx).Store

    /// A user's sessions, least recently used first.
    let private listOfUser (userId: string) (ctx: HttpContext) (cancellationToken: CancellationToken) : Task<SessionSummary list> =
        if String.IsNullOrEmpty userId then invalidArg (nameof userId) "A user id cannot be null or empty."
        task {
            let! sessions = storeOf ctx |> SessionStore.listAllAsync (SessionQuery.OfUser userId) cancellationToken
            return sessions |> List.sortBy _.LastSeen
        }

    /// <summary>The live sessions of a user, least recently used first, with their device facts.</summary>
    let ofUserAsync (userId: string) (ctx: HttpContext) : Task<SessionSummary list> = listOfUser userId ctx ctx.RequestAborted

    /// <summary>Ends one session by its id.</summary>
    /// <returns>Whether there was such a live session.</returns>
    let endAsync (id: string) (ctx: HttpContext) : Task<bool> =
        if String.IsNullOrEmpty id then invalidArg (nameof id) "A session id cannot be null or empty."
        // Not the request's abort: an end the client stopped waiting for still ends the session.
        storeOf ctx |> fun store -> store.DeleteAsync(id, CancellationToken.None)

    /// <summary>Ends the session of <paramref name="userId"/> whose handle is <paramref name="handle"/> (what a "your
    /// devices" page sends back, so the page never holds an id).</summary>
    /// <returns>Whether the user had such a live session.</returns>
    let endByHandleAsync (userId: string) (handle: string) (ctx: HttpContext) : Task<bool> = task {
        let! sessions = listOfUser userId ctx CancellationToken.None
        match sessions |> List.tryFind (fun s -> s.Handle = handle) with
        | Some session -> return! endAsync session.Id ctx
        | None -> return false
    }

    /// <summary>
    /// The most rounds of listing and ending one end of a user's sessions makes: each round after the first ends only
    /// sessions that moved to a new id, or signed in, while the round before ran; a client signing in again and again
    /// cannot hold it longer (what is left then is logged, event 20).
    /// </summary>
    [<Literal>]
    let private MostRounds = 8

    /// Ends the user's sessions that <paramref name="spared"/> does not spare, listing them again until a listing finds
    /// none (at most <paramref name="mostRounds"/> rounds): a session that moved to a new id (a rotation, or its device
    /// signing in again) after a listing named it is gone from under its old id when the round ends it, so the next
    /// listing finds it under its new one. A move the store makes after the end of its old id finds nothing to move.
    /// Gives how many sessions it ended.
    let private endListed (userId: string) (spared: SessionSummary -> bool) (mostRounds: int) (ctx: HttpContext) : Task<int> = task {
        let mutable ended = 0
        let mutable rounds = 0
        let mutable more = true
        while more do
            let! sessions = listOfUser userId ctx CancellationToken.None
            let targets = sessions |> List.filter (fun s -> not (spared s))
            if List.isEmpty targets then
                more <- false
            elif rounds = mostRounds then
                more <- false
                // Sessions keep coming (a client signing in again and again): the caller ends what it found, and says so.
                if mostRounds > 1 then Log.sessionsLeft (SesameRuntime.Of ctx).Logger rounds (List.length targets)
            else
                rounds <- rounds + 1
                for session in targets do
                    let! deleted = endAsync session.Id ctx
                    if deleted then ended <- ended + 1
        return ended
    }

    /// <summary>Ends every session of a user (after a password change, say), including one that moves to a new id
    /// meanwhile (a rotation, or its device signing in again).</summary>
    /// <returns>How many sessions were ended.</returns>
    let endAllAsync (userId: string) (ctx: HttpContext) : Task<int> = endListed userId (fun _ -> false) MostRounds ctx

    /// <summary>Ends every other session of the current session's user ("sign out other devices"), including one that
    /// moves to a new id meanwhile.</summary>
    /// <remarks>The current session is spared under its id, and under a new one if another request of the same browser
    /// moves it meanwhile (a second tab that rotates it): a session created at the same millisecond as the current one is
    /// taken for it. A session without that fact (stored by a Sesame before it) is spared by its id only, in one
    /// listing.</remarks>
    /// <returns>How many sessions were ended (0 when the session is not signed in).</returns>
    let endOthersAsync (session: SessionHandle) (ctx: HttpContext) : Task<int> =
        match session.UserId with
        | None -> Task.FromResult 0
        | Some userId ->
            let current = session.Id
            // When a session was created tells the current session under a new id from another device's session.
            match SessionMeta.createdOf session.Meta with
            | ValueSome created -> endListed userId (fun s -> s.Id = current || SessionMeta.createdOf s.Meta = ValueSome created) MostRounds ctx
            | ValueNone -> endListed userId (fun s -> s.Id = current) 1 ctx

    /// <summary>One page of all live sessions (with size and last use, never their data), for admin pages and tools.</summary>
    /// <param name="after">The previous page's <c>Next</c>, or <c>null</c> to start.</param>
    /// <param name="limit">The most sessions in the page.</param>
    /// <param name="ctx">The request (for the app's store).</param>
    let pageAsync (after: string) (limit: int) (ctx: HttpContext) : Task<SessionPage> =
        (storeOf ctx).ListAsync({ UserId = null; After = after; Limit = limit }, ctx.RequestAborted)
