namespace Sesame.Redis

/// <summary>
/// What this store last read of sessions' expiry fields (<c>#t</c> and <c>#x</c>, see ExpiryRefresh), by id, so that a
/// load can guess before it sends anything whether its script will be due. When it will not, the load sends
/// <c>HGETALL</c> alone; when it may (or nothing is known of the session), it sends the script beside it, in the same
/// round trip. So a load takes a second round trip only where a guess was wrong, and a session whose user comes back
/// after its refresh window costs one round trip, as a burst of requests does.
/// </summary>
/// <remarks>
/// A table of fixed size indexed by the id's hash code: nothing grows with the ids clients send, and a session whose slot
/// another took is guessed due. Slots are read and written without a lock; a read that mixes two writes gives a wrong
/// guess, which costs a round trip or a script call and nothing else: the load decides from the hash it reads.
/// </remarks>
[<Sealed>]
type internal LoadHints(slots: int) =
    let hashes = Array.zeroCreate<int> slots
    let seen = Array.zeroCreate<int64> slots
    let timeouts = Array.zeroCreate<int64> slots

    let slotOf (hash: int) = int (uint32 hash % uint32 slots)

    /// A table of 32,768 slots (640 KiB): most of the sessions in use at a time, for an instance that serves tens of
    /// thousands. Past that, more loads send the script beside their HGETALL, as every load did before the table.
    new() = LoadHints 32768

    /// Records that the session <paramref name="id"/> was last seen at <paramref name="lastSeen"/> (Redis's Unix ms),
    /// its expiry having last slid to <paramref name="timeout"/> ms.
    member _.Record(id: string, lastSeen: int64, timeout: int64) =
        let hash = id.GetHashCode()
        let slot = slotOf hash
        seen[slot] <- lastSeen
        timeouts[slot] <- timeout
        hashes[slot] <- hash

    /// Records what a load read: the expiry fields of the session's hash, when it has both.
    member this.Record(id: string, fields: struct (int64 voption * int64 voption * int64 voption)) =
        match fields with
        | struct (ValueSome lastSeen, ValueSome timeout, _) -> this.Record(id, lastSeen, timeout)
        | _ -> ()

    /// Whether a load of <paramref name="id"/> will likely find its script not due (see ExpiryRefresh.dueBySeen), from
    /// what was last recorded of it; false when nothing is. The hash it then reads decides.
    member _.LikelyNotDue(id: string, ttl: int64, window: int64, redisNow: int64 voption) =
        let hash = id.GetHashCode()
        let slot = slotOf hash
        hashes[slot] = hash && not (ExpiryRefresh.dueBySeen (ValueSome seen[slot]) (ValueSome timeouts[slot]) ttl window redisNow)
