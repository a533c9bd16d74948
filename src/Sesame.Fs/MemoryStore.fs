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

/// One stored session. Reference equality, so a compare-and-swap compares identities, not trees.
[<ReferenceEquality; NoComparison>]
type private MemoryEntry =
    { Data: Json
      Size: int64
      /// UTC ticks after which the session is dead; Int64.MaxValue for a seed not yet used.
      ExpiresAt: int64 }

/// <summary>
/// The embedded default store: sessions in this process's memory, lost on restart. Commits are
/// atomic compare-and-swap loops, so concurrent commits never lose each other's changes.
/// </summary>
/// <remarks>
/// Bounded: when the session count passes <c>MaxSessions</c> or the total JSON size passes
/// <c>MaxTotalBytes</c>, the idlest tenth of the sessions (those closest to expiring) is evicted.
/// Expired sessions are never served and are swept out every <c>SweepInterval</c>.
/// </remarks>
[<Sealed>]
type MemoryStore(options: MemoryStoreOptions, time: TimeProvider) =
    let options = if isNull options then MemoryStoreOptions() else options
    let sessions = ConcurrentDictionary<string, MemoryEntry>(StringComparer.Ordinal)
    let mutable totalBytes = 0L
    let evicting = new SemaphoreSlim(1, 1)

    do
        for KeyValue(id, data) in options.InitialSessions do
            let size = JsonSize.utf8Length data
            sessions[id] <- { Data = data; Size = size; ExpiresAt = Int64.MaxValue }
            totalBytes <- totalBytes + size

    let now () = time.GetUtcNow().UtcTicks

    let expiresAt (idle: TimeSpan) =
        let ticks = now ()
        if idle.Ticks >= Int64.MaxValue - ticks then Int64.MaxValue else ticks + idle.Ticks

    let forget (id: string) (entry: MemoryEntry) =
        // Only this exact entry: a concurrent commit may have replaced it.
        if sessions.TryRemove(KeyValuePair(id, entry)) then
            Interlocked.Add(&totalBytes, -entry.Size) |> ignore

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
                for KeyValue(id, entry) in sessions.ToArray() |> Array.sortBy (fun (KeyValue(_, e)) -> e.ExpiresAt) |> Array.truncate excess do
                    forget id entry
            finally
                evicting.Release() |> ignore

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
            let rec load () =
                match sessions.TryGetValue id with
                | false, _ -> None
                | true, entry when entry.ExpiresAt <= now () ->
                    forget id entry
                    None
                | true, entry ->
                    let slid = { entry with ExpiresAt = expiresAt idleTimeout }
                    if sessions.TryUpdate(id, slid, entry) then Some entry.Data else load ()
            Task.FromResult(load ())

        member _.CommitAsync(id, patch, commit, _cancellationToken) =
            let rec attempt () =
                let current =
                    match sessions.TryGetValue id with
                    | true, entry when entry.ExpiresAt > now () -> Some entry
                    | true, entry ->
                        forget id entry
                        None
                    | _ -> None
                match current with
                | None when commit.MustExist -> CommitResult.SessionGone
                | _ ->
                    let before = match current with Some e -> e.Data | None -> Json.emptyObject
                    let after = Patch.apply patch before
                    let size = JsonSize.utf8Length after
                    if size > int64 commit.MaxSizeBytes then
                        raise (SessionTooLargeException(size, commit.MaxSizeBytes))
                    let next = { Data = after; Size = size; ExpiresAt = expiresAt commit.IdleTimeout }
                    let swapped =
                        match current with
                        | Some entry -> sessions.TryUpdate(id, next, entry)
                        | None -> sessions.TryAdd(id, next)
                    if swapped then
                        let previous = match current with Some e -> e.Size | None -> 0L
                        Interlocked.Add(&totalBytes, size - previous) |> ignore
                        if current.IsNone then evictIfOver ()
                        CommitResult.Committed
                    else
                        attempt ()
            try
                Task.FromResult(attempt ())
            with e ->
                Task.FromException<CommitResult> e

        member _.DeleteAsync(id, _cancellationToken) =
            match sessions.TryRemove id with
            | true, entry -> Interlocked.Add(&totalBytes, -entry.Size) |> ignore
            | _ -> ()
            Task.CompletedTask

    interface IDisposable with
        member _.Dispose() =
            sweeper.Dispose()
            evicting.Dispose()
