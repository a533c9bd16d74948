namespace Sesame

open System
open System.Collections.Generic
open System.Threading
open System.Threading.Tasks

/// <summary>What a store holds for one session: its tree, and the facts Sesame keeps beside it.</summary>
/// <remarks>
/// The facts (<see cref="P:Sesame.StoredSession.Meta"/>) are a small JSON object that is never user data: the user the
/// session is bound to, device facts, the shape version, flash values (<see cref="T:Sesame.SessionMeta"/> names them).
/// A store keeps them exactly as it keeps the tree, and changes both in one atomic commit.
/// </remarks>
[<Sealed; AllowNullLiteral>]
type StoredSession(data: Json, meta: Json, sizeBytes: int64) =
    do
        match data, meta with
        | Json.Object _, Json.Object _ -> ()
        | _ -> invalidArg "data" "A stored session's tree and facts are JSON objects."

    // Counted at most once, and only when someone asks (telemetry, listings): a store that read the session's text
    // knows it already and passes it in.
    let mutable size = if sizeBytes >= 0L then sizeBytes else -1L

    /// The session's tree (a JSON object): what handlers read and change.
    member _.Data = data

    /// The facts Sesame keeps beside the tree (a JSON object, empty for a session that has none).
    member _.Meta = meta

    /// <summary>The tree's size as compact UTF-8 JSON (what <c>MaxSessionBytes</c> bounds).</summary>
    /// <remarks>Given by the store when it knows it (it read or wrote the text); otherwise counted on first use.</remarks>
    member _.SizeBytes =
        if size < 0L then size <- JsonSize.utf8Length data
        size

    /// <summary>A session with a tree and facts, its size to be counted when asked.</summary>
    new(data: Json, meta: Json) = StoredSession(data, meta, -1L)

    /// <summary>A session with a tree and no facts.</summary>
    new(data: Json) = StoredSession(data, Json.emptyObject, -1L)

/// <summary>The facts Sesame keeps beside a session's tree: their keys in <see cref="P:Sesame.StoredSession.Meta"/>.</summary>
[<RequireQualifiedAccess>]
module SessionMeta =

    /// <summary>The id of the user the session is bound to (a JSON string). Stores keep an index of sessions by it.</summary>
    [<Literal>]
    let User = "user"

    /// <summary>When the session was created, in Unix milliseconds.</summary>
    [<Literal>]
    let Created = "created"

    /// <summary>Facts about the device the session was signed in from (an object: user agent, address, when).</summary>
    [<Literal>]
    let Device = "device"

    /// <summary>The version of the tree's shape the app declared when it last wrote the session (a number; missing is 0).</summary>
    [<Literal>]
    let Shape = "shape"

    /// <summary>Values kept for the next request only (an object).</summary>
    [<Literal>]
    let Flash = "flash"

    // The paths of the facts Sesame sets, made once: a path checks its keys as it is made, and every new session's
    // commit sets the creation time (and the shape, when the app declares one), every sign-in the user and the device.
    let internal CreatedPath = SessionPath.ofKeys [ Created ]
    let internal ShapePath = SessionPath.ofKeys [ Shape ]
    let internal UserPath = SessionPath.ofKeys [ User ]
    let internal DevicePath = SessionPath.ofKeys [ Device ]

    /// <summary>The user a session's facts bind it to, or <c>None</c>.</summary>
    let userOf (meta: Json) : string option =
        match meta with
        | Json.Object o ->
            match o.Find User with
            | ValueSome(Json.String user) -> Some user
            | _ -> None
        | _ -> None

    /// When a session was created, as its facts hold it (a move keeps it); none when missing.
    let internal createdOf (meta: Json) : Json voption =
        match meta with
        | Json.Object o -> o.Find Created
        | _ -> ValueNone

    /// <summary>The shape version in a session's facts (0 when missing).</summary>
    let shapeOf (meta: Json) : int =
        match meta with
        | Json.Object o ->
            match o.Find Shape with
            | ValueSome(Json.Number n) ->
                match n.Int64Value with
                | ValueSome v when v >= 0L && v <= int64 Int32.MaxValue -> int v
                | _ -> 0
            | _ -> 0
        | _ -> 0

/// <summary>
/// A change of the tree's shape from one version to the next, committed once whichever request makes it first
/// (see <see cref="P:Sesame.SessionChange.Upgrade"/>).
/// </summary>
[<NoComparison>]
type ShapeUpgrade = {
    /// The shape version the stored session must have for <c>Data</c> to apply.
    From: int
    /// The shape version the session has afterwards.
    To: int
    /// The change of the tree from the old shape to the new.
    Data: Patch
}

/// <summary>What one request changes in a session: its tree and the facts beside it, committed in one atomic write.</summary>
[<Sealed; AllowNullLiteral>]
type SessionChange(data: Patch, meta: Patch, upgrade: ShapeUpgrade voption) =
    static let empty = SessionChange(Patch.empty, Patch.empty, ValueNone)

    /// <summary>The change to the tree.</summary>
    member _.Data = data

    /// <summary>The change to the facts beside the tree (top-level keys of <see cref="P:Sesame.StoredSession.Meta"/>).</summary>
    member _.Meta = meta

    /// <summary>
    /// A change of shape applied before <c>Data</c>: when the stored facts' <c>shape</c> is <c>Upgrade.From</c> (missing
    /// counts as 0), <c>Upgrade.Data</c> is applied to the tree and <c>shape</c> becomes <c>Upgrade.To</c>; when it
    /// already is <c>Upgrade.To</c> (another request upgraded it first) the upgrade is skipped; any other shape means the
    /// session changed under this request in a way its changes were not made for: the commit stores nothing and reports
    /// <see cref="F:Sesame.CommitResult.ShapeChanged"/>.
    /// </summary>
    member _.Upgrade = upgrade

    /// Whether the change changes nothing.
    member _.IsEmpty = data.IsEmpty && meta.IsEmpty && upgrade.IsNone

    /// <summary>Whether the change to the facts touches the user binding (only a move may).</summary>
    member _.BindsUser = Patch.touchesKey SessionMeta.User meta

    /// <summary>
    /// Whether the change to the facts does anything but remove (a set, an append, an increment: a sum may be longer than
    /// the number it adds to), so may grow them: the facts are bounded by the tree's size limit too (flash values are
    /// often a client's input), and a store need measure them only then.
    /// </summary>
    member _.MayGrowFacts = meta.Updates |> List.exists Update.mayGrow

    /// <summary>
    /// Applies the change to a stored session as every store must (for stores that hold sessions as trees): the upgrade
    /// (if the shape allows), then the tree's change, then the facts' change.
    /// </summary>
    /// <param name="current">The session as stored now, or <c>null</c> for a session being created (the empty one).</param>
    /// <returns>The session afterwards, or <c>null</c> when the stored shape rules the change out
    /// (<see cref="F:Sesame.CommitResult.ShapeChanged"/>).</returns>
    /// <exception cref="T:Sesame.PathConflictException">The change does not fit the session.</exception>
    member _.ApplyTo(current: StoredSession) : StoredSession =
        let tree, facts = if isNull current then Json.emptyObject, Json.emptyObject else current.Data, current.Meta
        let upgraded =
            match upgrade with
            | ValueNone -> ValueSome struct (tree, facts)
            | ValueSome u ->
                match SessionMeta.shapeOf facts with
                | shape when shape = u.From -> ValueSome struct (Patch.apply u.Data tree, SessionPath.set SessionMeta.ShapePath (Json.int64 (int64 u.To)) facts)
                | shape when shape = u.To -> ValueSome struct (tree, facts)
                | _ -> ValueNone
        match upgraded with
        | ValueNone -> null
        | ValueSome(struct (tree, facts)) -> StoredSession(Patch.apply data tree, Patch.apply meta facts)

    /// <summary>A change of the tree only.</summary>
    new(data: Patch) = SessionChange(data, Patch.empty, ValueNone)

    /// <summary>A change of the tree and of the facts beside it.</summary>
    new(data: Patch, meta: Patch) = SessionChange(data, meta, ValueNone)

    /// The change that changes nothing.
    static member Empty = empty

    override _.ToString() =
        let parts = [
            match upgrade with
            | ValueSome u -> $"upgrade {u.From}->{u.To}: {u.Data}"
            | ValueNone -> ()
            if not data.IsEmpty then $"data: {data}"
            if not meta.IsEmpty then $"meta: {meta}"
        ]
        if parts.IsEmpty then "(no change)" else String.concat "; " parts

/// <summary>What a store does when binding a session to a user would pass <see cref="P:Sesame.UserLimit.MaxSessions"/>.</summary>
type UserLimitPolicy =
    /// <summary>
    /// End the user's least recently used sessions to make room (the new sign-in always gets in): the least recently
    /// seen first, to the millisecond, ties broken by the ids' ordinal order, so that every store ends the same
    /// sessions and reports them in that order.
    /// </summary>
    | EndLeastRecent = 0
    /// Refuse the new binding (<see cref="F:Sesame.CommitResult.UserLimitReached"/>); the user's sessions stay as they are.
    | Refuse = 1

/// <summary>How many sessions one user may have at once, and what happens past it.</summary>
[<Struct; NoComparison>]
type UserLimit = {
    /// The most sessions bound to one user; 0 for no limit.
    MaxSessions: int
    /// What happens when a new binding would pass the limit.
    Policy: UserLimitPolicy
} with

    /// No limit.
    static member None = { MaxSessions = 0; Policy = UserLimitPolicy.EndLeastRecent }

/// The order in which <see cref="F:Sesame.UserLimitPolicy.EndLeastRecent"/> ends sessions, for the stores in this process.
module internal LeastRecentFirst =
    /// Compares two sessions by last-seen time in whole milliseconds (as Redis and PostgreSQL keep it), then by id.
    let compare (idA: string) (seenTicksA: int64) (idB: string) (seenTicksB: int64) : int =
        let byTime = compare (seenTicksA / TimeSpan.TicksPerMillisecond) (seenTicksB / TimeSpan.TicksPerMillisecond)
        if byTime <> 0 then byTime else String.CompareOrdinal(idA, idB)

/// <summary>How one commit treats the stored session.</summary>
[<Struct; NoComparison>]
type CommitOptions = {
    /// The session expires after this long without a load or commit (sliding expiry).
    IdleTimeout: TimeSpan
    /// When true, the commit applies only to a session that exists now; a session deleted
    /// or expired since it was loaded is not brought back (the commit reports <see cref="F:Sesame.CommitResult.SessionGone"/>).
    /// When false, a missing session is created from the empty object.
    MustExist: bool
    /// The largest session, in bytes of its tree's compact UTF-8 JSON, that the commit may leave stored;
    /// a commit that would exceed it stores nothing and raises <see cref="T:Sesame.SessionTooLargeException"/>.
    MaxSizeBytes: int
    /// The limit on a user's sessions, enforced when a move binds a session to a user.
    UserLimit: UserLimit
}

/// <summary>What a commit or a move did.</summary>
type CommitResult =
    /// The change was applied atomically to the stored session.
    | Committed = 0
    /// The session no longer exists (deleted, moved away or expired) and the commit required it; nothing was stored.
    | SessionGone = 1
    /// Binding the session to its user would pass the user's limit, whose policy refuses it; nothing was stored.
    | UserLimitReached = 2
    /// The stored session's shape is neither the one the change's upgrade starts from nor the one it ends at; nothing was stored.
    | ShapeChanged = 3

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

    /// <summary>A store failure with a message only.</summary>
    new(message: string) = SessionStoreException(message, null)

/// <summary>One live session, as a listing shows it (never its tree).</summary>
[<Sealed>]
type SessionSummary(id: string, meta: Json, lastSeen: DateTimeOffset, expiresAt: DateTimeOffset, sizeBytes: int64) =
    /// The session id. It is a secret: show users <see cref="P:Sesame.SessionSummary.Handle"/> instead.
    member _.Id = id
    /// The facts beside the session's tree: its user, device facts, shape version.
    member _.Meta = meta
    /// The user the session is bound to, or <c>null</c>.
    member _.UserId =
        match SessionMeta.userOf meta with
        | Some user -> user
        | None -> null
    /// When the session was last loaded or changed, as precisely as the store slides its expiry.
    member _.LastSeen = lastSeen
    /// When the session expires unless it is used again.
    member _.ExpiresAt = expiresAt
    /// The size of the session's tree, in bytes of compact JSON.
    member _.SizeBytes = sizeBytes
    /// A name for the session that can be shown and sent to a browser without giving the id away: the first 16
    /// characters of the base64url SHA-256 of the id.
    member _.Handle = SessionSummary.HandleOf id

    /// <summary>The handle of a session id (see <see cref="P:Sesame.SessionSummary.Handle"/>).</summary>
    static member HandleOf(id: string) : string =
        if isNull id then nullArg "id"
        let hash = Security.Cryptography.SHA256.HashData(Text.Encoding.UTF8.GetBytes id)
        Buffers.Text.Base64Url.EncodeToString(ReadOnlySpan(hash, 0, 12))

/// <summary>Which sessions a listing asks for, and where it continues.</summary>
[<Struct; NoComparison>]
type SessionQuery = {
    /// Only the sessions bound to this user; <c>null</c> for every live session.
    UserId: string
    /// Where to continue: the <see cref="P:Sesame.SessionPage.Next"/> of the previous page; <c>null</c> to start.
    After: string
    /// The most sessions in one page (a store may return fewer, even with more to come).
    Limit: int
} with

    /// <summary>All sessions, a page of <paramref name="limit"/> at a time.</summary>
    static member All(limit: int) = { UserId = null; After = null; Limit = limit }

    /// <summary>The sessions of one user (a user has few: one page of up to 1,000).</summary>
    static member OfUser(userId: string) = { UserId = userId; After = null; Limit = 1000 }

/// <summary>One page of a listing.</summary>
[<Sealed>]
type SessionPage(sessions: IReadOnlyList<SessionSummary>, next: string) =
    /// The sessions of this page.
    member _.Sessions = sessions
    /// Where the next page starts (pass it as <see cref="F:Sesame.SessionQuery.After"/>), or <c>null</c> at the end.
    member _.Next = next
    /// The empty last page.
    static member Empty = SessionPage(Array.empty, null)

/// <summary>Why a store ended a session by itself.</summary>
type SessionEndReason =
    /// Its idle (or absolute) timeout passed.
    | Expired = 0
    /// The store evicted it to stay within its bounds.
    | Evicted = 1
    /// It was ended to keep its user within the user's session limit.
    | UserLimit = 2

/// <summary>Where a store reports the sessions it ends by itself (Sesame sets it; see <see cref="P:Sesame.SessionStore.Observer"/>).</summary>
[<AllowNullLiteral>]
type ISessionStoreObserver =
    /// <summary>A session ended without a request asking: expired, evicted, or over its user's limit. The file store
    /// calls it for an eviction once the delete record is on disk, on its writer thread: keep it short and hand slow
    /// work elsewhere, as Sesame's own observer does with the app's event handlers.</summary>
    /// <param name="id">The session id.</param>
    /// <param name="meta">The facts the session had (its user among them).</param>
    /// <param name="reason">Why it ended.</param>
    abstract SessionEnded: id: string * meta: Json * reason: SessionEndReason -> unit

/// An observer that says whether it reads the facts of the sessions reported to it: Sesame's reads them only for the
/// app's <c>Expired</c> and <c>Evicted</c> handlers, and a store that would parse each evicted session's facts only to
/// report them (a flood of new sessions evicts one a request) then skips it.
type internal IObserverOfFacts =
    /// Whether the facts passed to SessionEnded are read.
    abstract ReadsFacts: bool

/// <summary>
/// Where sessions live. Every store keeps the same contract, proven by one shared test suite (the
/// <c>Sesame.Testing</c> package): a commit applies a change <em>atomically against the value stored at that
/// moment</em> (never a whole-session overwrite), so concurrent commits to different paths all survive and increments
/// and appends add up exactly; a move (rotation, sign-in) is one atomic step; the index of sessions by user changes in
/// the same step as the sessions it indexes; idle sessions expire and an expired session is never served.
/// </summary>
/// <remarks>
/// Write a store by deriving from this class (C#: <c>class MyStore : SessionStore</c>; F#: <c>inherit SessionStore()</c>).
/// Loads return <c>null</c> for "no such live session". Stores report what they end by themselves to
/// <see cref="P:Sesame.SessionStore.Observer"/>.
/// </remarks>
[<AbstractClass; AllowNullLiteral>]
type SessionStore() =
    [<VolatileField>]
    let mutable observer: ISessionStoreObserver = null

    /// <summary>Loads a session and slides its idle expiry.</summary>
    /// <param name="id">The session id.</param>
    /// <param name="idleTimeout">The new idle timeout, counted from now.</param>
    /// <param name="cancellationToken">Cancels the load.</param>
    /// <returns>The session, or <c>null</c> when there is no such live session.</returns>
    /// <exception cref="T:Sesame.SessionStoreException">The store failed, or the stored value is not a valid session.</exception>
    abstract LoadAsync: id: string * idleTimeout: TimeSpan * cancellationToken: CancellationToken -> Task<StoredSession>

    /// <summary>Applies a change atomically to the stored session and slides its idle expiry.</summary>
    /// <param name="id">The session id.</param>
    /// <param name="change">The folded changes of one request. Its facts' change never touches <c>user</c>: a session is
    /// bound to a user only by <see cref="M:Sesame.SessionStore.MoveAsync(System.String,System.String,Sesame.SessionChange,Sesame.CommitOptions,System.Threading.CancellationToken)"/>.</param>
    /// <param name="options">Expiry, existence and size rules for this commit.</param>
    /// <param name="cancellationToken">Cancels the commit (it may still have been applied).</param>
    /// <returns>Whether the change was applied, the session was gone, or its shape changed under the change.</returns>
    /// <exception cref="T:Sesame.SessionTooLargeException">The tree would exceed <c>options.MaxSizeBytes</c>, or the change
    /// would grow the facts past it (Sesame's stores check the facts when <c>options.MustExist</c>, as concurrent requests
    /// commit, at least: see <see cref="P:Sesame.SessionChange.MayGrowFacts"/>); nothing was stored.</exception>
    /// <exception cref="T:Sesame.PathConflictException">The change does not fit the stored session (a concurrent change made a container a leaf); nothing was stored.</exception>
    /// <exception cref="T:Sesame.SessionStoreException">The store failed.</exception>
    abstract CommitAsync: id: string * change: SessionChange * options: CommitOptions * cancellationToken: CancellationToken -> Task<CommitResult>

    /// <summary>
    /// Moves a session to a new id in one atomic step (rotation; sign-in, which also binds it to a user): the session
    /// as stored now, with <paramref name="change"/> applied, is stored under <paramref name="toId"/> and
    /// <paramref name="fromId"/> is gone, so a late commit under the old id finds nothing, and a change committed under
    /// the old id before the move is carried over.
    /// </summary>
    /// <param name="fromId">The session's current id, or <c>null</c> to create the session at <paramref name="toId"/> from the empty object.</param>
    /// <param name="toId">The new id (a fresh one no session has).</param>
    /// <param name="change">Applied during the move. When its facts' change sets <c>user</c>, the session is bound to that
    /// user (and unbound from any user it had): the index of sessions by user changes in the same step, and
    /// <c>options.UserLimit</c> applies.</param>
    /// <param name="options">Expiry, size and user-limit rules; <c>MustExist</c> is ignored (a move needs its session,
    /// unless <paramref name="fromId"/> is <c>null</c>).</param>
    /// <param name="cancellationToken">Cancels the move (it may still have happened).</param>
    /// <returns><c>Committed</c>; <c>SessionGone</c> when <paramref name="fromId"/> names no live session (nothing is
    /// created: a destroyed or expired session is never brought back); <c>UserLimitReached</c> when the user's limit
    /// refuses the binding (the session stays where it was).</returns>
    /// <exception cref="T:Sesame.SessionTooLargeException">The tree would exceed <c>options.MaxSizeBytes</c>; nothing changed.</exception>
    /// <exception cref="T:Sesame.PathConflictException">The change does not fit the stored session; nothing changed.</exception>
    /// <exception cref="T:Sesame.SessionStoreException">The store failed.</exception>
    abstract MoveAsync:
        fromId: string * toId: string * change: SessionChange * options: CommitOptions * cancellationToken: CancellationToken -> Task<CommitResult>

    /// <summary>Deletes a session (and its entry in its user's index); a later commit that requires it finds it gone.</summary>
    /// <param name="id">The session id.</param>
    /// <param name="cancellationToken">Cancels the delete.</param>
    /// <returns>Whether there was a live session to delete.</returns>
    /// <exception cref="T:Sesame.SessionStoreException">The store failed.</exception>
    abstract DeleteAsync: id: string * cancellationToken: CancellationToken -> Task<bool>

    /// <summary>Lists live sessions, a page at a time: all of them, or one user's (from the user index, never a scan of all).</summary>
    /// <param name="query">Which sessions, and where to continue.</param>
    /// <param name="cancellationToken">Cancels the listing.</param>
    /// <returns>One page; sessions that expire or are deleted while a listing goes on may or may not appear.</returns>
    /// <exception cref="T:Sesame.SessionStoreException">The store failed.</exception>
    abstract ListAsync: query: SessionQuery * cancellationToken: CancellationToken -> Task<SessionPage>

    /// <summary>
    /// Whether several app instances share this store (Redis, a database). A cookie issued by one instance must then open
    /// on the others, so their Data Protection keys must be shared too; Sesame warns at startup when they are not.
    /// Default <c>false</c>.
    /// </summary>
    abstract IsShared: bool
    default _.IsShared = false

    /// <summary>The number of live sessions, when the store can tell cheaply (for the <c>sesame.sessions.active</c>
    /// gauge); <c>null</c> when it cannot. Default <c>null</c>.</summary>
    abstract ActiveSessionCount: Nullable<int64>
    default _.ActiveSessionCount = Nullable()

    /// <summary>
    /// Whether a session can be stored under this id: it is not <c>null</c> and holds no lone UTF-16 surrogate. Files,
    /// Redis and PostgreSQL keep ids as UTF-8, whose encoders write every lone surrogate as U+FFFD, so two such ids
    /// would name one session (at once, or after a restart). Sesame's own ids are ASCII.
    /// </summary>
    /// <param name="id">The id.</param>
    /// <returns><c>false</c> for an id no store keeps a session under: a load finds nothing, a delete deletes nothing.</returns>
    static member IsStorableId(id: string) : bool = not (isNull id) && not (LoneSurrogates.has id)

    /// <summary>Refuses an id a commit or a move would store a session under when it is not
    /// <see cref="M:Sesame.SessionStore.IsStorableId(System.String)"/>. A store of your own calls it where it takes such an id.</summary>
    /// <param name="id">The id.</param>
    /// <param name="paramName">The parameter the id came in, named in the exception.</param>
    /// <exception cref="System.ArgumentNullException">The id is <c>null</c>.</exception>
    /// <exception cref="System.ArgumentException">The id holds a lone UTF-16 surrogate.</exception>
    static member CheckStorableId(id: string, paramName: string) : unit =
        if isNull id then
            raise (ArgumentNullException paramName)
        elif LoneSurrogates.has id then
            raise (
                ArgumentException(
                    "A session id cannot hold a lone UTF-16 surrogate: stores keep ids as UTF-8, which cannot carry one, so two such ids would name one session.",
                    paramName
                )
            )

    /// <summary>Where the store reports sessions it ends by itself; set by Sesame when the app starts (<c>null</c> for nobody).</summary>
    member _.Observer
        with get () = observer
        and set (value: ISessionStoreObserver) = observer <- value

    /// Whether the observer reads the facts reported with an ended session (any observer does, but Sesame's own when the
    /// app has no handler for them).
    member internal _.ObserverReadsFacts =
        match observer with
        | null -> false
        | :? IObserverOfFacts as o -> o.ReadsFacts
        | _ -> true

    /// <summary>Reports a session the store ended by itself to the <see cref="P:Sesame.SessionStore.Observer"/>, if any.
    /// An observer that throws does not disturb the store.</summary>
    /// <param name="id">The session id.</param>
    /// <param name="meta">The facts the session had.</param>
    /// <param name="reason">Why it ended.</param>
    member _.ReportEnded(id: string, meta: Json, reason: SessionEndReason) =
        match observer with
        | null -> ()
        | o ->
            try
                o.SessionEnded(id, meta, reason)
            with _ ->
                ()

/// <summary>F# functions over <see cref="T:Sesame.SessionStore"/>.</summary>
[<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module SessionStore =

    /// <summary>Loads a session: <c>Some</c> with it, or <c>None</c> when there is no such live session.</summary>
    let tryLoadAsync (id: string) (idleTimeout: TimeSpan) (cancellationToken: CancellationToken) (store: SessionStore) : Task<StoredSession option> = task {
        let! loaded = store.LoadAsync(id, idleTimeout, cancellationToken)
        return Option.ofObj loaded
    }

    /// <summary>Every page of a listing, one after another.</summary>
    let listAllAsync (query: SessionQuery) (cancellationToken: CancellationToken) (store: SessionStore) : Task<SessionSummary list> = task {
        let all = ResizeArray<SessionSummary>()
        let mutable after = query.After
        let mutable more = true
        while more do
            let! page = store.ListAsync({ query with After = after }, cancellationToken)
            all.AddRange page.Sessions
            after <- page.Next
            more <- not (isNull after)
        return List.ofSeq all
    }
