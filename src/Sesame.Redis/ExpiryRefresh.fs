namespace Sesame.Redis

open System
open System.Globalization
open StackExchange.Redis

/// A moment on this process's two clocks, in ms: the monotonic one (<c>Stopwatch</c>), which no step of the wall clock
/// moves, and the wall clock (Unix ms), which goes on while the host is suspended, when the monotonic one stops.
[<Struct>]
type internal LocalClocks = {
    Monotonic: int64
    Wall: int64
} with

    static member private TicksPerMs = Diagnostics.Stopwatch.Frequency / 1000L

    /// The monotonic clock now, alone: all that a reading's age needs.
    static member MonotonicNow() = Diagnostics.Stopwatch.GetTimestamp() / LocalClocks.TicksPerMs

    /// Both clocks now.
    static member Now() = { Monotonic = LocalClocks.MonotonicNow(); Wall = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() }

/// A reading of Redis's clock: its Unix ms minus each of the local clocks' ms, and when (local monotonic ms) it was taken.
[<Sealed; AllowNullLiteral>]
type internal ClockReading(monotonicOffset: int64, wallOffset: int64, takenAt: int64) =
    member _.MonotonicOffset = monotonicOffset
    member _.WallOffset = wallOffset
    member _.TakenAt = takenAt

/// <summary>
/// The store's reading of Redis's clock (Unix ms, as the scripts' TIME gives it): the last time a script told it, kept
/// as an offset from each of this process's clocks (see LocalClocks), so that neither a step of the local wall clock nor
/// a suspended host holds it back.
/// </summary>
/// <remarks>A reading older than <c>MaxAge</c> counts as none: the clocks may drift apart, and the next load that
/// needs a reading runs its script, which gives a fresh one. A load decides by the reading whether its expiry is due
/// (ExpiryRefresh.dueByDeadline), so the reading must never be behind Redis's clock: it is the later of the two clocks'
/// estimates, plus <c>Margin</c>.</remarks>
[<Sealed>]
type internal RedisClock() =
    // One object swapped whole, so that a reader never pairs one reading's offset with another's time.
    [<VolatileField>]
    let mutable reading: ClockReading = null

    /// How long a reading is trusted: at a drift of 100 ppm, a minute moves the clocks 6 ms apart.
    static member MaxAge = 60_000L

    /// <summary>What a reading adds, in ms, to be ahead of Redis's clock rather than behind: Redis's clock is read to the
    /// ms rounded down, and this process's too (up to 1 ms each), and on Redis Cluster the reading may come from any
    /// primary, whose clocks NTP keeps within a few ms of each other.</summary>
    static member Margin = 5L

    /// Whether a load that runs its script should ask it for Redis's clock: no reading, or one past half its age.
    member _.WantsReading =
        let current = reading
        isNull current || LocalClocks.MonotonicNow() - current.TakenAt > RedisClock.MaxAge / 2L

    /// <summary>Records Redis's clock as a script reported it, against the local clocks when the script was sent
    /// (<paramref name="sentAt"/>).</summary>
    /// <remarks>The script read the clock after it was sent, so the reading can only make Redis's clock seem ahead of
    /// where it is: by the trip, and by whatever held this process up before it read the reply (a collection, a starved
    /// thread pool). Ahead is the safe side: a load then thinks more time has passed, and runs its script sooner, never
    /// later. (Stamped when the reply was read, a reply read late would put Redis's clock behind, and a load would skip
    /// a slide it needed.)</remarks>
    member _.Observe(redisNowMs: int64, sentAt: LocalClocks) =
        reading <- ClockReading(redisNowMs - sentAt.Monotonic, redisNowMs - sentAt.Wall, sentAt.Monotonic)

    /// Redis's clock now, as far as a recent reading tells: never behind it, and ahead of it by the trip of the script
    /// that gave the reading, by Margin, and by any step forward of the wall clock since, at most (see Observe);
    /// ValueNone without a reading.
    member _.TryNow() : int64 voption =
        let current = reading
        let local = LocalClocks.Now()
        if isNull current || local.Monotonic - current.TakenAt > RedisClock.MaxAge then
            ValueNone
        else
            ValueSome(max (local.Monotonic + current.MonotonicOffset) (local.Wall + current.WallOffset) + RedisClock.Margin)

/// <summary>
/// Whether a load must run its script (Load.lua), from the hash it has just read: most loads need not, and are then one
/// HGETALL. The script slides the session's idle expiry when that is due, and tells the store Redis's clock.
/// </summary>
/// <remarks>
/// <para>A load slides at most once per <c>window</c>: the refresh interval, capped at a quarter of the idle timeout
/// (a commit caps it at half). It is due when more than the window has run down from the timeout, so that the session
/// keeps at least the timeout less the window (and so less the refresh interval) after the load, as the option
/// promises. What is left is the deadline the last slide set, which the hash records with the timeout of that slide
/// (<c>#x</c>: the script that sets the key's TTL writes both), less Redis's clock as the store reads it once the reply
/// is in: that reading is ahead of Redis's clock, never behind (see RedisClock), so a reply held up on its way can only
/// make a slide look due sooner. (The time since the session was last seen, <c>#t</c>, would not do: a commit sets it
/// every time but slides only once its own window has run down, so a load judged by it could leave a quarter of the
/// timeout.) A deadline further off than the timeout (a shorter timeout than the last slide's, an absolute timeout
/// closing in) is due at once. A hash whose <c>#x</c> holds no deadline (an earlier Sesame wrote the timeout alone)
/// runs the script, which decides by the key's TTL.</para>
/// <para>For a session that never expires the script runs when the key has a TTL (an earlier timeout gave it one), when
/// the timeout its expiry last slid to (<c>#x</c>) is another, and once the window has run down since it was last seen,
/// so that <c>#t</c> moves on: in Redis's clock as the store's last reading gives it, and whenever there is no recent
/// reading, or <c>#t</c> is missing or further ahead of the reading than the window (a clock that jumped).</para>
/// <para>Before it sends anything, a load guesses whether its script will be due from what it last read of the session
/// (LoadHints, by <c>#t</c> and <c>#x</c>, see <c>dueBySeen</c>), to send the script in the same round trip: a wrong
/// guess costs a second round trip or a script call, never a slide.</para>
/// </remarks>
module internal ExpiryRefresh =

    /// The field that holds the idle timeout (ms; -1 for none) a session's expiry last slid to, then the deadline (Redis's
    /// Unix ms; -1 for none) that slide set: <c>'&lt;timeout&gt; &lt;deadline&gt;'</c> (the timeout alone when an earlier
    /// Sesame slid it).
    [<Literal>]
    let TimeoutField = "#x"

    /// The field that holds when a session was last seen (Redis's Unix ms).
    [<Literal>]
    let SeenField = "#t"

    /// A load's refresh window (ms) for an idle timeout of <paramref name="ttl"/> ms (-1 for none) and the store's
    /// refresh interval: the interval, capped at a quarter of the timeout.
    let loadWindow (ttl: int64) (interval: int64) = if ttl < 0L then interval else min interval (ttl / 4L)

    /// An integer as the scripts write one: digits, after a minus sign or none (as Layout.lua's patterns read it).
    let private parseText (text: string) =
        match Int64.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture) with
        | true, n when not (text.StartsWith '+') -> ValueSome n
        | _ -> ValueNone

    let private parse (value: RedisValue) = parseText (string value)

    /// A <c>#x</c> field's timeout and deadline (as the scripts write it: two integers and one space; the timeout alone as
    /// an earlier Sesame wrote it, with no deadline), or ValueNone for no timeout.
    let private parseTimeout (value: RedisValue) : struct (int64 voption * int64 voption) =
        let text = string value
        match text.IndexOf ' ' with
        | -1 -> struct (parseText text, ValueNone)
        | space ->
            match parseText (text.Substring(0, space)), parseText (text.Substring(space + 1)) with
            | ValueSome timeout, ValueSome deadline -> struct (ValueSome timeout, ValueSome deadline)
            | _ -> struct (ValueNone, ValueNone)

    /// When the session whose hash is <paramref name="entries"/> was last seen (<c>#t</c>), and the idle timeout its
    /// expiry last slid to and the deadline that set (<c>#x</c>), where the hash has them as numbers.
    let expiryFields (entries: HashEntry[]) : struct (int64 voption * int64 voption * int64 voption) =
        let mutable seen = ValueNone
        let mutable timeout = ValueNone
        let mutable deadline = ValueNone
        for entry in entries do
            // Both names are two bytes long; a node's name seldom is, and is decoded only then.
            if entry.Name.Length() = 2L then
                match string entry.Name with
                | SeenField -> seen <- parse entry.Value
                | TimeoutField ->
                    let struct (slidTo, until) = parseTimeout entry.Value
                    timeout <- slidTo
                    deadline <- until
                | _ -> ()
        struct (seen, timeout, deadline)

    /// Whether the window has run down since a session was last seen at <paramref name="seen"/>, its expiry having last
    /// slid to the timeout <paramref name="timeout"/>, for an idle timeout of <paramref name="ttl"/> ms, a window of
    /// <paramref name="window"/> ms, and Redis's clock as the store reads it (ValueNone: no recent reading). A guess of a
    /// load's script being due (LoadHints), and for a session that never expires, whether its last-seen time is due.
    let dueBySeen (seen: int64 voption) (timeout: int64 voption) (ttl: int64) (window: int64) (redisNow: int64 voption) : bool =
        match redisNow, seen, timeout with
        | ValueSome now, ValueSome seen, ValueSome timeout when timeout = ttl ->
            let elapsed = now - seen
            not (elapsed >= -window && elapsed < window)
        | _ -> true

    /// Whether a load must run its script, for a session whose key had <paramref name="left"/> ms to live when its hash
    /// was read (ValueNone: no TTL) and the hash's <paramref name="seen"/> and <paramref name="timeout"/> (see
    /// dueBySeen), an idle timeout of <paramref name="ttl"/> ms (-1 for none) and a window of <paramref name="window"/> ms.
    let due (left: int64 voption) (seen: int64 voption) (timeout: int64 voption) (ttl: int64) (window: int64) (redisNow: int64 voption) : bool =
        if ttl >= 0L then
            match left with
            | ValueSome left -> left > ttl || ttl - left >= window
            | ValueNone -> true
        else
            left.IsSome || dueBySeen seen timeout ttl window redisNow

    /// <summary>Whether a load must run its script (see <c>due</c>), told from its hash's expiry fields alone
    /// (<paramref name="fields"/>, see expiryFields) and Redis's clock as the store reads it after the hash came
    /// (<paramref name="redisNow"/>); ValueNone when they cannot tell: no clock reading, or no deadline in <c>#x</c>
    /// (see the remarks above).</summary>
    let dueByDeadline
        (struct (seen, timeout, deadline): struct (int64 voption * int64 voption * int64 voption))
        (ttl: int64)
        (window: int64)
        (redisNow: int64 voption)
        : bool voption =
        match deadline, redisNow with
        | ValueSome deadline, ValueSome now ->
            let left = if deadline < 0L then ValueNone else ValueSome(max 0L (deadline - now))
            ValueSome(due left seen timeout ttl window redisNow)
        | _ -> ValueNone
