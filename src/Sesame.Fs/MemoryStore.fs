namespace Sesame

open System
open System.Collections.Concurrent
open System.Collections.Generic
open System.Threading
open System.Threading.Tasks

/// <summary>Options of the in-memory store.</summary>
[<AllowNullLiteral>]
type MemoryStoreOptions() =

    /// <summary>The default bound on live sessions: 100,000.</summary>
    static member DefaultMaxSessions = 100_000

    /// <summary>The default bound on the sessions' total JSON size: 256 MiB.</summary>
    static member DefaultMaxTotalBytes = 256L * 1024L * 1024L

    /// <summary>The default interval between sweeps of expired sessions: one minute.</summary>
    static member DefaultSweepInterval = TimeSpan.FromMinutes 1.0

    /// <summary>The most sessions kept; past it the idlest are evicted. Default 100,000.</summary>
    member val MaxSessions = MemoryStoreOptions.DefaultMaxSessions with get, set

    /// <summary>The most bytes of session JSON kept in all; past it the idlest sessions are evicted. Default 256 MiB.</summary>
    member val MaxTotalBytes = MemoryStoreOptions.DefaultMaxTotalBytes with get, set

    /// <summary>How often expired sessions are swept out (they are never served in between). Default one minute.</summary>
    member val SweepInterval = MemoryStoreOptions.DefaultSweepInterval with get, set

    /// <summary>Sessions the store starts with, by id (node-sesame's <c>sessions</c> option). They do not expire until first used.</summary>
    member val InitialSessions = Dictionary<string, Json>() with get

/// One stored session: its compact UTF-8 JSON (a tree of the same session takes several times the
/// memory: UTF-16 strings, an object per node). Compared by reference, so a compare-and-swap compares
/// identities, not contents; a commit replaces the entry, a load only slides its expiry.
[<Sealed; AllowNullLiteral>]
type private MemoryEntry(utf8: byte[], expiresAt: int64) =
    let mutable expires = expiresAt

    /// The session's compact UTF-8 JSON.
    member _.Utf8 = utf8

    member _.Size = int64 utf8.Length

    /// UTC ticks after which the session is dead; Int64.MaxValue for a seed not yet used.
    member _.ExpiresAt
        with get () = Volatile.Read &expires
        and set (value: int64) = Volatile.Write(&expires, value)

/// The parsed tree of one entry.
[<Sealed; AllowNullLiteral>]
type private ParsedEntry(entry: MemoryEntry, tree: Json) =
    member _.Entry = entry
    member _.Tree = tree

/// <summary>
/// The trees of recently used sessions, so that a session in use is not parsed on every load and
/// commit. Bounded twice: one slot per id hash (a newcomer displaces whoever held its slot) and a
/// budget of JSON bytes in all, so it holds a few MiB however many sessions the store keeps.
/// </summary>
[<Sealed>]
type private ParsedCache() =
    /// A power of two.
    static let slots = 4096
    /// Of JSON; the trees take about 8 times as much heap (measured on ~1 KB sessions of strings and numbers).
    static let budgetBytes = 2L * 1024L * 1024L
    /// A larger session would crowd out too many others; it is parsed when used.
    static let maxEntryBytes = 64L * 1024L

    let cache: ParsedEntry[] = Array.zeroCreate slots
    let mutable heldBytes = 0L

    let slotOf (id: string) = id.GetHashCode() &&& (slots - 1)

    let sizeOf (parsed: ParsedEntry) = if isNull parsed then 0L else parsed.Entry.Size

    /// The tree of exactly this entry (not of an older or newer entry of the same id).
    member _.TryGet(id: string, entry: MemoryEntry) : Json voption =
        match Volatile.Read &cache[slotOf id] with
        | parsed when not (isNull parsed) && obj.ReferenceEquals(parsed.Entry, entry) -> ValueSome parsed.Tree
        | _ -> ValueNone

    /// Keeps the entry's tree in its id's slot, if the budget allows; otherwise empties the slot.
    member _.Put(id: string, entry: MemoryEntry, tree: Json) =
        let slot = slotOf id
        let fits =
            entry.Size <= maxEntryBytes
            && Volatile.Read &heldBytes - sizeOf (Volatile.Read &cache[slot]) + entry.Size <= budgetBytes
        let replaced = Interlocked.Exchange(&cache[slot], (if fits then ParsedEntry(entry, tree) else null))
        // The count follows what was really swapped, so racing puts may pass the budget by a few entries, never drift.
        Interlocked.Add(&heldBytes, (if fits then entry.Size else 0L) - sizeOf replaced) |> ignore

    /// Lets go of the entry's tree (the session was deleted, expired or evicted).
    member _.Drop(id: string, entry: MemoryEntry) =
        let slot = slotOf id
        match Volatile.Read &cache[slot] with
        | parsed when not (isNull parsed) && obj.ReferenceEquals(parsed.Entry, entry) ->
            if obj.ReferenceEquals(Interlocked.CompareExchange(&cache[slot], null, parsed), parsed) then
                Interlocked.Add(&heldBytes, -entry.Size) |> ignore
        | _ -> ()

/// <summary>
/// The embedded default store: sessions in this process's memory, lost on restart. Commits are
/// atomic compare-and-swap loops, so concurrent commits never lose each other's changes.
/// </summary>
/// <remarks>
/// <para>Bounded: when the session count passes <c>MaxSessions</c> or the total JSON size passes
/// <c>MaxTotalBytes</c>, the idlest tenth of the sessions (those closest to expiring) is evicted.
/// Expired sessions are never served and are swept out every <c>SweepInterval</c>.</para>
/// <para>Sessions are held as compact UTF-8 JSON, so the store's memory follows <c>MaxTotalBytes</c>
/// closely; the parsed trees of the sessions in use (up to 2 MiB of their JSON) are kept beside them,
/// so a busy session is not parsed again on every request.</para>
/// </remarks>
[<Sealed>]
type MemoryStore(options: MemoryStoreOptions, time: TimeProvider) =
    let options = if isNull options then MemoryStoreOptions() else options
    let sessions = ConcurrentDictionary<string, MemoryEntry>(StringComparer.Ordinal)
    let parsed = ParsedCache()
    let mutable totalBytes = 0L
    let evicting = new SemaphoreSlim(1, 1)

    do
        for KeyValue(id, data) in options.InitialSessions do
            let entry = MemoryEntry(Json.toStoredUtf8 data, Int64.MaxValue)
            sessions[id] <- entry
            totalBytes <- totalBytes + entry.Size

    let now () = time.GetUtcNow().UtcTicks

    let expiresAt (ticks: int64) (idle: TimeSpan) =
        if idle.Ticks >= Int64.MaxValue - ticks then Int64.MaxValue else ticks + idle.Ticks

    let forget (id: string) (entry: MemoryEntry) =
        // Only this exact entry: a concurrent commit may have replaced it.
        if sessions.TryRemove(KeyValuePair(id, entry)) then
            Interlocked.Add(&totalBytes, -entry.Size) |> ignore
            parsed.Drop(id, entry)

    /// The entry's tree: kept from its commit or an earlier load, or parsed now (and kept).
    let treeOf (id: string) (entry: MemoryEntry) =
        match parsed.TryGet(id, entry) with
        | ValueSome tree -> tree
        | ValueNone ->
            let tree = Json.parseStoredUtf8 (ReadOnlySpan entry.Utf8)
            parsed.Put(id, entry, tree)
            tree

    let sweep () =
        let t = now ()
        for KeyValue(id, entry) in sessions do
            if entry.ExpiresAt <= t then forget id entry

    let sweeper = time.CreateTimer((fun _ -> sweep ()), null, options.SweepInterval, options.SweepInterval)

    let evictIfOver () =
        if (sessions.Count > options.MaxSessions || Volatile.Read &totalBytes > options.MaxTotalBytes) && evicting.Wait 0 then
            try
                // Evict the idlest tenth at once, so the O(n log n) scan is paid rarely.
                let excess = max (sessions.Count - options.MaxSessions) 0 + max 1 (options.MaxSessions / 10)
                let byExpiry = sessions.ToArray() |> Array.map (fun (KeyValue(id, e)) -> struct (e.ExpiresAt, id, e))
                Array.sortInPlaceBy (fun (struct (expires, _, _)) -> expires) byExpiry
                for struct (_, id, entry) in Array.truncate excess byExpiry do
                    forget id entry
            finally
                evicting.Release() |> ignore

    /// The answers that are always the same, made once.
    static member val private NotFound: Task<Json option> = Task.FromResult None
    static member val private Committed: Task<CommitResult> = Task.FromResult CommitResult.Committed

    /// <summary>A memory store with default options and the system clock.</summary>
    new() = new MemoryStore(MemoryStoreOptions(), TimeProvider.System)

    /// <summary>A memory store with the given options and the system clock.</summary>
    new(options: MemoryStoreOptions) = new MemoryStore(options, TimeProvider.System)

    /// The number of sessions held, expired ones not yet swept included.
    member _.Count = sessions.Count

    /// The total size of the sessions held, in bytes of compact JSON.
    member _.TotalBytes = Volatile.Read &totalBytes

    /// Removes the expired sessions now.
    member _.Sweep() = sweep ()

    interface ISessionStore with
        member _.LoadAsync(id, idleTimeout, _cancellationToken) =
            let t = now ()
            match sessions.TryGetValue id with
            | false, _ -> MemoryStore.NotFound
            | true, entry when entry.ExpiresAt <= t ->
                forget id entry
                MemoryStore.NotFound
            | true, entry ->
                // Slid in place: the entry stays the one a concurrent commit compares against, and
                // a commit that replaces it meanwhile sets an expiry of its own.
                entry.ExpiresAt <- expiresAt t idleTimeout
                try
                    Task.FromResult(Some(treeOf id entry))
                with e ->
                    Task.FromException<Json option>(SessionStoreException("The memory store holds a session it cannot read.", e))

        member _.CommitAsync(id, patch, commit, _cancellationToken) =
            let rec attempt () =
                let t = now ()
                let current =
                    match sessions.TryGetValue id with
                    | true, entry when entry.ExpiresAt > t -> entry
                    | true, entry ->
                        forget id entry
                        null
                    | _ -> null
                if isNull current && commit.MustExist then
                    CommitResult.SessionGone
                else
                    let before = if isNull current then Json.emptyObject else treeOf id current
                    let after = Patch.apply patch before
                    let utf8 = Json.toStoredUtf8 after
                    if utf8.Length > commit.MaxSizeBytes then
                        raise (SessionTooLargeException(int64 utf8.Length, commit.MaxSizeBytes))
                    let next = MemoryEntry(utf8, expiresAt t commit.IdleTimeout)
                    let swapped =
                        if isNull current then sessions.TryAdd(id, next)
                        else sessions.TryUpdate(id, next, current)
                    if swapped then
                        let previous = if isNull current then 0L else current.Size
                        Interlocked.Add(&totalBytes, next.Size - previous) |> ignore
                        // The request that committed is likely to come back soon: keep the tree it made.
                        parsed.Put(id, next, after)
                        if isNull current then evictIfOver ()
                        CommitResult.Committed
                    else
                        attempt ()
            try
                match attempt () with
                | CommitResult.Committed -> MemoryStore.Committed
                | result -> Task.FromResult result
            with e ->
                Task.FromException<CommitResult> e

        member _.DeleteAsync(id, _cancellationToken) =
            match sessions.TryRemove id with
            | true, entry ->
                Interlocked.Add(&totalBytes, -entry.Size) |> ignore
                parsed.Drop(id, entry)
            | _ -> ()
            Task.CompletedTask

    interface IDisposable with
        member _.Dispose() =
            sweeper.Dispose()
            evicting.Dispose()
