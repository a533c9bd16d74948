namespace Sesame.Redis

open System
open System.Globalization
open StackExchange.Redis

/// A reading of Redis's clock: its Unix ms minus the local monotonic clock's ms, and when (local monotonic ms) it was taken.
[<Sealed; AllowNullLiteral>]
type internal ClockReading(offset: int64, takenAt: int64) =
    member _.Offset = offset
    member _.TakenAt = takenAt

/// <summary>
/// The store's reading of Redis's clock (Unix ms, as the scripts' TIME gives it): the last time a script told it, kept
/// as an offset from this process's monotonic clock, so that a jump of the local wall clock does not move it.
/// </summary>
/// <remarks>A reading older than <c>MaxAge</c> counts as none: the two clocks may drift apart, and the next load that
/// needs a reading runs its script, which gives a fresh one. On Redis Cluster the reading may come from any primary:
/// their clocks agree within what NTP keeps them to, which the load's window leaves room for.</remarks>
[<Sealed>]
type internal RedisClock() =
    // One object swapped whole, so that a reader never pairs one reading's offset with another's time.
    [<VolatileField>]
    let mutable reading: ClockReading = null

    /// How long a reading is trusted: at a drift of 100 ppm, a minute moves the clocks 6 ms apart.
    static member MaxAge = 60_000L

    /// Whether a load that runs its script should ask it for Redis's clock: no reading, or one past half its age.
    member _.WantsReading =
        let current = reading
        isNull current || Environment.TickCount64 - current.TakenAt > RedisClock.MaxAge / 2L

    /// <summary>Records Redis's clock as a script reported it, against the local time the script was sent
    /// (<paramref name="sentAt"/>, <c>Environment.TickCount64</c>).</summary>
    /// <remarks>The script read the clock after it was sent, so the reading can only make Redis's clock seem ahead of
    /// where it is: by the trip, and by whatever held this process up before it read the reply (a collection, a starved
    /// thread pool). Ahead is the safe side: a load then thinks more time has passed since a session was last seen, and
    /// runs its script sooner, never later. (Stamped when the reply was read, a reply read late would put Redis's clock
    /// behind, and a load would skip a slide it needed.)</remarks>
    member _.Observe(redisNowMs: int64, sentAt: int64) = reading <- ClockReading(redisNowMs - sentAt, sentAt)

    /// Redis's clock now, as far as a recent reading tells (ahead of it by the trip of the script that gave the
    /// reading at most, see Observe); ValueNone without one.
    member _.TryNow() : int64 voption =
        let current = reading
        let local = Environment.TickCount64
        if isNull current || local - current.TakenAt > RedisClock.MaxAge then ValueNone else ValueSome(local + current.Offset)

/// <summary>
/// Whether a load must run its script (Load.lua), from the hash it has just read: most loads need not, and are then one
/// HGETALL. The script slides the session's idle expiry when that is due, and tells the store Redis's clock.
/// </summary>
/// <remarks>
/// <para>A load slides at most once per <c>window</c>: the refresh interval, capped at a quarter of the idle timeout
/// (a commit caps it at half). The store compares the window with the time since the session was last seen
/// (<c>#t</c>), which every commit sets and every slide sets, in Redis's clock as its last reading gives it. A commit
/// slides once its own window (the interval, capped at half the timeout) has run down since the last slide, and at once
/// under another timeout than the last slide's, so the last slide is at most half the timeout before <c>#t</c>; a load that skips its script therefore finds at least a quarter
/// of the timeout left, less the reading's error (the trip of the reply it came in, and a minute's drift at most).</para>
/// <para>The script runs whenever the idle timeout differs from the one the last slide set (<c>#x</c>; a hash written
/// before Sesame kept it has none), so that a shorter timeout (an absolute timeout closing in), a longer one, or none,
/// is applied at once; when <c>#t</c> is missing or not a number; when the store has no recent reading of the clock;
/// and when <c>#t</c> is further ahead of the reading than the window (a clock that jumped).</para>
/// </remarks>
module internal ExpiryRefresh =

    /// The field that holds the idle timeout (ms; -1 for none) a session's expiry last slid to.
    [<Literal>]
    let TimeoutField = "#x"

    /// The field that holds when a session was last seen (Redis's Unix ms).
    [<Literal>]
    let SeenField = "#t"

    /// A load's refresh window (ms) for an idle timeout of <paramref name="ttl"/> ms (-1 for none) and the store's
    /// refresh interval: the interval, capped at a quarter of the timeout.
    let loadWindow (ttl: int64) (interval: int64) = if ttl < 0L then interval else min interval (ttl / 4L)

    let private parse (value: RedisValue) =
        match Int64.TryParse(string value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture) with
        | true, n -> ValueSome n
        | _ -> ValueNone

    /// When the session whose hash is <paramref name="entries"/> was last seen (<c>#t</c>), and the idle timeout its
    /// expiry last slid to (<c>#x</c>), where the hash has them as numbers.
    let expiryFields (entries: HashEntry[]) : struct (int64 voption * int64 voption) =
        let mutable seen = ValueNone
        let mutable timeout = ValueNone
        for entry in entries do
            // Both names are two bytes long; a node's name seldom is, and is decoded only then.
            if entry.Name.Length() = 2L then
                match string entry.Name with
                | SeenField -> seen <- parse entry.Value
                | TimeoutField -> timeout <- parse entry.Value
                | _ -> ()
        struct (seen, timeout)

    /// Whether a load must run its script, for a session last seen at <paramref name="seen"/> whose expiry last slid to
    /// the timeout <paramref name="timeout"/>, an idle timeout of <paramref name="ttl"/> ms, a window of
    /// <paramref name="window"/> ms, and Redis's clock as the store reads it (ValueNone: no recent reading).
    let due (seen: int64 voption) (timeout: int64 voption) (ttl: int64) (window: int64) (redisNow: int64 voption) : bool =
        match redisNow, seen, timeout with
        | ValueSome now, ValueSome seen, ValueSome timeout when timeout = ttl ->
            let elapsed = now - seen
            not (elapsed >= -window && elapsed < window)
        | _ -> true
