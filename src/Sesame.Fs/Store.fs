namespace Sesame

open System
open System.Threading
open System.Threading.Tasks

/// <summary>How one commit treats the stored session.</summary>
[<Struct; NoComparison>]
type CommitOptions =
    {
        /// The session expires after this long without a load or commit (sliding expiry).
        IdleTimeout: TimeSpan
        /// When true, the commit applies only to a session that exists now; a session deleted
        /// or expired since it was loaded is not brought back (the commit reports <see cref="F:Sesame.CommitResult.SessionGone"/>).
        /// When false, a missing session is created from the empty object.
        MustExist: bool
        /// The largest session, in bytes of its compact UTF-8 JSON, that the commit may leave stored;
        /// a commit that would exceed it stores nothing and raises <see cref="T:Sesame.SessionTooLargeException"/>.
        MaxSizeBytes: int
    }

/// <summary>What a commit did.</summary>
type CommitResult =
    /// The patch was applied atomically to the stored session.
    | Committed = 0
    /// The session no longer exists (deleted, rotated away or expired) and the commit required it; nothing was stored.
    | SessionGone = 1

/// <summary>A commit was refused because the session would exceed its size limit. Nothing was stored.</summary>
type SessionTooLargeException(size: int64, limit: int) =
    inherit InvalidOperationException($"The session would be {size} bytes, over the limit of {limit} bytes; nothing was stored.")

    /// The size the session would have had, in bytes of compact UTF-8 JSON.
    member _.Size = size

    /// The limit, in bytes.
    member _.Limit = limit

/// <summary>A store could not do what was asked (unreachable, timed out, or holding data it cannot read).</summary>
type SessionStoreException(message: string, inner: exn) =
    inherit Exception(message, inner)

    new(message: string) = SessionStoreException(message, null)

/// <summary>
/// Where sessions live. Every store keeps the same contract, proven by one shared test suite:
/// a commit applies a patch <em>atomically against the value stored at that moment</em> (never a
/// whole-session overwrite), so concurrent commits to different paths all survive and increments
/// add up exactly; idle sessions expire and an expired session is never served.
/// </summary>
[<AllowNullLiteral>]
type ISessionStore =
    /// <summary>Loads a session and slides its idle expiry.</summary>
    /// <param name="id">The session id.</param>
    /// <param name="idleTimeout">The new idle timeout, counted from now.</param>
    /// <param name="cancellationToken">Cancels the load.</param>
    /// <returns>The session's tree, or <c>None</c> when there is no such live session.</returns>
    /// <exception cref="T:Sesame.SessionStoreException">The store failed, or the stored value is not a valid session.</exception>
    abstract LoadAsync: id: string * idleTimeout: TimeSpan * cancellationToken: CancellationToken -> Task<Json option>

    /// <summary>Applies a patch atomically to the stored session and slides its idle expiry.</summary>
    /// <param name="id">The session id.</param>
    /// <param name="patch">The folded changes of one request.</param>
    /// <param name="options">Expiry, existence and size rules for this commit.</param>
    /// <param name="cancellationToken">Cancels the commit (it may still have been applied).</param>
    /// <returns>Whether the commit was applied, or the session was gone.</returns>
    /// <exception cref="T:Sesame.SessionTooLargeException">The session would exceed <c>options.MaxSizeBytes</c>.</exception>
    /// <exception cref="T:Sesame.PathConflictException">The patch does not fit the stored session (a concurrent change made a container a leaf).</exception>
    /// <exception cref="T:Sesame.SessionStoreException">The store failed.</exception>
    abstract CommitAsync: id: string * patch: Patch * options: CommitOptions * cancellationToken: CancellationToken -> Task<CommitResult>

    /// <summary>Deletes a session; a later commit that requires it finds it gone.</summary>
    /// <param name="id">The session id.</param>
    /// <param name="cancellationToken">Cancels the delete.</param>
    abstract DeleteAsync: id: string * cancellationToken: CancellationToken -> Task

/// <summary>
/// Marks a store that several app instances share (Redis, say). A cookie issued by one instance
/// must be readable by the others, so their Data Protection keys must be shared too; Sesame warns
/// at startup when they are not configured to be.
/// </summary>
type ISharedSessionStore =
    inherit ISessionStore
