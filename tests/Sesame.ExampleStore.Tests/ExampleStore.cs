namespace Sesame.ExampleStore;

/// <summary>
/// A complete session store written in C#: sessions in a sorted dictionary under one lock, held as the trees
/// <see cref="SessionChange.ApplyTo"/> makes, with an index of sessions by user, expiry read from a
/// <see cref="TimeProvider"/>, and listings. It keeps the whole store contract (see Sesame.Testing), and
/// docs/write-a-store.md walks through it.
/// </summary>
/// <remarks>
/// One lock makes every operation atomic, which is what the contract asks; a store over a database gets the same from a
/// transaction or a script that runs on the server. Sessions live in this process only, so <see cref="SessionStore.IsShared"/>
/// stays <c>false</c>.
/// </remarks>
public sealed class ExampleStore : SessionStore
{
    // One lock guards the sessions and the user index together: a session and its index entry change in one step.
    private readonly Lock gate = new();
    private readonly SortedDictionary<string, Entry> sessions = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SortedSet<string>> sessionsByUser = new(StringComparer.Ordinal);
    private readonly TimeProvider clock;

    /// <summary>A store whose sessions expire by the given clock.</summary>
    /// <param name="clock">Where the store reads the time (the system's in an app; one a test moves in tests).</param>
    public ExampleStore(TimeProvider clock)
    {
        ArgumentNullException.ThrowIfNull(clock);
        this.clock = clock;
    }

    /// <summary>A store on the system clock.</summary>
    public ExampleStore()
        : this(TimeProvider.System)
    {
    }

    /// <summary>One stored session: its tree and facts, when it was last used, and when it expires.</summary>
    private sealed class Entry(StoredSession session, long sizeBytes, DateTimeOffset now, TimeSpan idleTimeout)
    {
        public StoredSession Session { get; } = session;

        public string? User { get; } = UserOf(session);

        public long SizeBytes { get; } = sizeBytes;

        public DateTimeOffset LastSeen { get; private set; } = now;

        public DateTimeOffset ExpiresAt { get; private set; } = Later(now, idleTimeout);

        public bool IsLive(DateTimeOffset now) => now < ExpiresAt;

        /// <summary>Slides the expiry: the session was used now.</summary>
        public void Touch(DateTimeOffset now, TimeSpan idleTimeout)
        {
            LastSeen = now;
            ExpiresAt = Later(now, idleTimeout);
        }

        private static DateTimeOffset Later(DateTimeOffset now, TimeSpan by) =>
            by >= DateTimeOffset.MaxValue - now ? DateTimeOffset.MaxValue : now + by;
    }

    /// <summary>A session the store ended by itself, to report once the lock is released.</summary>
    private readonly record struct Ended(string Id, Json Meta, SessionEndReason Reason);

    /// <summary>The user a session's facts bind it to (the <c>user</c> fact), or null.</summary>
    private static string? UserOf(StoredSession session) =>
        session.Meta is Json.Object { Item: var facts }
        && facts.TryGetValue(SessionMeta.User, out var user)
        && user is Json.String { Item: var userId }
            ? userId
            : null;

    /// <inheritdoc />
    public override long? ActiveSessionCount
    {
        get
        {
            lock (gate)
            {
                return sessions.Count;
            }
        }
    }

    /// <inheritdoc />
    public override Task<StoredSession?> LoadAsync(string id, TimeSpan idleTimeout, CancellationToken cancellationToken) =>
        Answer(() => Load(id, idleTimeout), cancellationToken);

    /// <inheritdoc />
    public override Task<CommitResult> CommitAsync(string id, SessionChange change, CommitOptions options, CancellationToken cancellationToken) =>
        Answer(() => Commit(id, change, options), cancellationToken);

    /// <inheritdoc />
    public override Task<CommitResult> MoveAsync(string? fromId, string toId, SessionChange change, CommitOptions options, CancellationToken cancellationToken) =>
        Answer(() => Move(fromId, toId, change, options), cancellationToken);

    /// <inheritdoc />
    public override Task<bool> DeleteAsync(string id, CancellationToken cancellationToken) =>
        Answer(() => Delete(id), cancellationToken);

    /// <inheritdoc />
    public override Task<SessionPage> ListAsync(SessionQuery query, CancellationToken cancellationToken) =>
        Answer(() => List(query), cancellationToken);

    /// <summary>
    /// Answers at once (the store never waits for anything): a cancelled call is a cancelled task, and a failure is a
    /// faulted task, as callers of a Task-returning method expect.
    /// </summary>
    private static Task<T> Answer<T>(Func<T> work, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<T>(cancellationToken);
        }

        try
        {
            return Task.FromResult(work());
        }
        catch (Exception e)
        {
            return Task.FromException<T>(e);
        }
    }

    private StoredSession? Load(string id, TimeSpan idleTimeout)
    {
        ArgumentNullException.ThrowIfNull(id);
        var ended = new List<Ended>();
        try
        {
            lock (gate)
            {
                var now = clock.GetUtcNow();
                var entry = Live(id, now, ended);
                entry?.Touch(now, idleTimeout);
                return entry?.Session;
            }
        }
        finally
        {
            Report(ended);
        }
    }

    private CommitResult Commit(string id, SessionChange change, CommitOptions options)
    {
        SessionStore.CheckStorableId(id, nameof(id));
        ArgumentNullException.ThrowIfNull(change);
        if (change.BindsUser)
        {
            throw new ArgumentException("A commit cannot bind a session to a user or unbind it; a move does.", nameof(change));
        }

        var ended = new List<Ended>();
        try
        {
            lock (gate)
            {
                var now = clock.GetUtcNow();
                var current = Live(id, now, ended);
                if (current is null && options.MustExist)
                {
                    // Deleted, moved away or expired since the request loaded it: never brought back.
                    return CommitResult.SessionGone;
                }

                // The change applies to the session as stored now, under the lock, so concurrent commits to one
                // session never lose each other's changes. ApplyTo throws PathConflictException before anything is stored.
                var next = change.ApplyTo(current?.Session);
                if (next is null)
                {
                    return CommitResult.ShapeChanged;
                }

                Put(id, NewEntry(next, now, options));
                return CommitResult.Committed;
            }
        }
        finally
        {
            Report(ended);
        }
    }

    private CommitResult Move(string? fromId, string toId, SessionChange change, CommitOptions options)
    {
        SessionStore.CheckStorableId(toId, nameof(toId));
        ArgumentNullException.ThrowIfNull(change);
        var ended = new List<Ended>();
        try
        {
            lock (gate)
            {
                var now = clock.GetUtcNow();
                if (Live(toId, now, ended) is not null)
                {
                    throw new InvalidOperationException("The move's new id is already a session; a new id must be fresh.");
                }

                Entry? current = null;
                if (fromId is not null)
                {
                    current = Live(fromId, now, ended);
                    if (current is null)
                    {
                        // A destroyed or expired session is never brought back, not even under a new id.
                        return CommitResult.SessionGone;
                    }
                }

                var next = change.ApplyTo(current?.Session);
                if (next is null)
                {
                    return CommitResult.ShapeChanged;
                }

                var entry = NewEntry(next, now, options);
                if (entry.User is not null && !MakeRoom(entry.User, fromId, options.UserLimit, now, ended))
                {
                    return CommitResult.UserLimitReached;
                }

                if (fromId is not null)
                {
                    Remove(fromId);
                }

                Put(toId, entry);
                return CommitResult.Committed;
            }
        }
        finally
        {
            Report(ended);
        }
    }

    /// <summary>
    /// Makes room for one more session of <paramref name="user"/> (the one moving from <paramref name="fromId"/> does
    /// not count): false when the limit refuses; otherwise true, having ended the least recently used sessions if the
    /// policy says so.
    /// </summary>
    private bool MakeRoom(string user, string? fromId, UserLimit limit, DateTimeOffset now, List<Ended> ended)
    {
        if (limit.MaxSessions <= 0)
        {
            return true;
        }

        var others = SessionsOf(user, now, ended).Where(session => session.Id != fromId).ToList();
        var excess = others.Count + 1 - limit.MaxSessions;
        if (excess <= 0)
        {
            return true;
        }

        if (limit.Policy == UserLimitPolicy.Refuse)
        {
            return false;
        }

        foreach (var (id, entry) in others.OrderBy(session => session.Entry.LastSeen.ToUnixTimeMilliseconds()).ThenBy(session => session.Id, StringComparer.Ordinal).Take(excess))
        {
            Remove(id);
            ended.Add(new Ended(id, entry.Session.Meta, SessionEndReason.UserLimit));
        }

        return true;
    }

    private bool Delete(string id)
    {
        ArgumentNullException.ThrowIfNull(id);
        var ended = new List<Ended>();
        try
        {
            lock (gate)
            {
                if (Live(id, clock.GetUtcNow(), ended) is null)
                {
                    return false;
                }

                Remove(id);
                return true;
            }
        }
        finally
        {
            Report(ended);
        }
    }

    private SessionPage List(SessionQuery query)
    {
        if (query.Limit <= 0)
        {
            throw new ArgumentException("A listing's Limit must be positive.", nameof(query));
        }

        var ended = new List<Ended>();
        try
        {
            lock (gate)
            {
                var now = clock.GetUtcNow();
                // Both are sorted by id, so a page continues after the last id of the one before.
                IEnumerable<string> ids = query.UserId is null
                    ? sessions.Keys
                    : sessionsByUser.GetValueOrDefault(query.UserId) ?? [];
                var after = ids.Where(id => query.After is null || string.CompareOrdinal(id, query.After) > 0).ToList();
                var page = new List<SessionSummary>();
                foreach (var id in after)
                {
                    if (Live(id, now, ended) is not { } entry)
                    {
                        continue;
                    }

                    if (page.Count == query.Limit)
                    {
                        return new SessionPage(page, page[^1].Id);
                    }

                    page.Add(new SessionSummary(id, entry.Session.Meta, entry.LastSeen, entry.ExpiresAt, entry.SizeBytes));
                }

                return new SessionPage(page, null);
            }
        }
        finally
        {
            Report(ended);
        }
    }

    /// <summary>The entry to store for a session after a change, refused if its tree is over the size limit.</summary>
    private static Entry NewEntry(StoredSession session, DateTimeOffset now, CommitOptions options)
    {
        var size = JsonSize.utf8Length(session.Data);
        if (size > options.MaxSizeBytes)
        {
            throw new SessionTooLargeException(size, options.MaxSizeBytes);
        }

        return new Entry(session, size, now, options.IdleTimeout);
    }

    /// <summary>
    /// The live session under <paramref name="id"/>, or null. An expired one is removed here, index entry and all, and
    /// noted in <paramref name="ended"/>: it is never served again.
    /// </summary>
    private Entry? Live(string id, DateTimeOffset now, List<Ended> ended)
    {
        if (!sessions.TryGetValue(id, out var entry))
        {
            return null;
        }

        if (entry.IsLive(now))
        {
            return entry;
        }

        Remove(id);
        ended.Add(new Ended(id, entry.Session.Meta, SessionEndReason.Expired));
        return null;
    }

    /// <summary>The live sessions of a user, from the index.</summary>
    private List<(string Id, Entry Entry)> SessionsOf(string user, DateTimeOffset now, List<Ended> ended)
    {
        var live = new List<(string Id, Entry Entry)>();
        if (sessionsByUser.TryGetValue(user, out var ids))
        {
            // A copy: Live removes expired sessions from the index as it goes.
            foreach (var id in ids.ToList())
            {
                if (Live(id, now, ended) is { } entry)
                {
                    live.Add((id, entry));
                }
            }
        }

        return live;
    }

    /// <summary>Stores a session and indexes it under its user, in one step (the caller holds the lock).</summary>
    private void Put(string id, Entry entry)
    {
        if (sessions.TryGetValue(id, out var previous) && previous.User is { } previousUser && previousUser != entry.User)
        {
            Unindex(previousUser, id);
        }

        sessions[id] = entry;
        if (entry.User is { } user)
        {
            if (!sessionsByUser.TryGetValue(user, out var ids))
            {
                ids = new SortedSet<string>(StringComparer.Ordinal);
                sessionsByUser[user] = ids;
            }

            ids.Add(id);
        }
    }

    /// <summary>Removes a session and its index entry, in one step (the caller holds the lock).</summary>
    private void Remove(string id)
    {
        if (sessions.Remove(id, out var entry) && entry.User is { } user)
        {
            Unindex(user, id);
        }
    }

    private void Unindex(string user, string id)
    {
        if (sessionsByUser.TryGetValue(user, out var ids) && ids.Remove(id) && ids.Count == 0)
        {
            sessionsByUser.Remove(user);
        }
    }

    /// <summary>Tells the observer about the sessions the store ended by itself: outside the lock, so an observer that
    /// calls back into the store cannot deadlock it.</summary>
    private void Report(List<Ended> ended)
    {
        foreach (var (id, meta, reason) in ended)
        {
            ReportEnded(id, meta, reason);
        }
    }
}
