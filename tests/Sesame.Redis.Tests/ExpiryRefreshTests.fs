/// When a load may skip its script: the decision alone, from a hash's fields and a reading of Redis's clock.
module Sesame.Redis.Tests.ExpiryRefreshTests

open Expecto
open Sesame.Redis
open StackExchange.Redis

/// A session's hash as HGETALL gives it: a node, the format's fields, and the given last-seen time and '#x' (the slid-to
/// timeout, alone as an earlier Sesame wrote it, or with its deadline).
let private hash (seen: string option) (timeout: string option) = [|
    HashEntry(RedisValue.op_Implicit "", RedisValue.op_Implicit "{}")
    HashEntry(RedisValue.op_Implicit "#v", RedisValue.op_Implicit "2")
    HashEntry(RedisValue.op_Implicit "#s", RedisValue.op_Implicit "2")
    // A node whose name is two bytes long, like the fields the decision reads.
    HashEntry(RedisValue.op_Implicit "\u0001a", RedisValue.op_Implicit "1")
    match seen with
    | Some seen -> HashEntry(RedisValue.op_Implicit "#t", RedisValue.op_Implicit seen)
    | None -> ()
    match timeout with
    | Some timeout -> HashEntry(RedisValue.op_Implicit "#x", RedisValue.op_Implicit timeout)
    | None -> ()
|]

[<Tests>]
let tests =
    testList "ExpiryRefresh" [
        testCase "a load's window is the refresh interval, capped at a quarter of the idle timeout"
        <| fun () ->
            Expect.equal (ExpiryRefresh.loadWindow 1_200_000L 1000L) 1000L "20 minutes, 1 s"
            Expect.equal (ExpiryRefresh.loadWindow 2000L 10_000L) 500L "2 s, 10 s"
            Expect.equal (ExpiryRefresh.loadWindow 2000L 0L) 0L "an interval of zero refreshes every load"
            Expect.equal (ExpiryRefresh.loadWindow -1L 1000L) 1000L "no timeout: the interval"

        testCase "a load's script is guessed not due only within the window since the session was last seen, under the timeout the expiry last slid to"
        <| fun () ->
            let seen = 1_000_000L
            let due (fields: HashEntry[]) ttl now =
                let struct (seen, timeout, _) = ExpiryRefresh.expiryFields fields
                ExpiryRefresh.dueBySeen seen timeout ttl 1000L now
            let valid = hash (Some(string seen)) (Some "1200000")
            Expect.isFalse (due valid 1_200_000L (ValueSome seen)) "just seen"
            Expect.isFalse (due valid 1_200_000L (ValueSome(seen + 999L))) "the window not yet run down"
            Expect.isTrue (due valid 1_200_000L (ValueSome(seen + 1000L))) "the window run down"
            // A reading behind Redis's clock by the trip of the reply it came in.
            Expect.isFalse (due valid 1_200_000L (ValueSome(seen - 5L))) "seen a little after the reading's now"
            Expect.isTrue (due valid 1_200_000L (ValueSome(seen - 1001L))) "seen further ahead than the window: a clock that jumped"
            Expect.isTrue (due valid 1_200_000L ValueNone) "no recent reading of Redis's clock"
            Expect.isTrue (due valid 600_000L (ValueSome seen)) "a shorter timeout than the last slide's"
            Expect.isTrue (due valid 2_400_000L (ValueSome seen)) "a longer one"
            Expect.isTrue (due valid -1L (ValueSome seen)) "none"
            Expect.isTrue (due (hash (Some(string seen)) None) 1_200_000L (ValueSome seen)) "a hash written before Sesame kept the timeout"
            Expect.isTrue (due (hash None (Some "1200000")) 1_200_000L (ValueSome seen)) "no last-seen time"
            Expect.isTrue (due (hash (Some "soon") (Some "1200000")) 1_200_000L (ValueSome seen)) "a last-seen time that is not a number"
            Expect.isFalse (due (hash (Some(string seen)) (Some "-1")) -1L (ValueSome seen)) "no timeout, and none before"

        testCase "a load skips its script only while the key's TTL is within the window of the timeout, however recently the session was last seen"
        <| fun () ->
            let seen = 1_000_000L
            let fields = ExpiryRefresh.expiryFields (hash (Some(string seen)) (Some "1200000"))
            let struct (lastSeen, timeout, _) = fields
            let due left ttl = ExpiryRefresh.due left lastSeen timeout ttl 1000L (ValueSome seen)
            Expect.isFalse (due (ValueSome 1_200_000L) 1_200_000L) "just slid"
            Expect.isFalse (due (ValueSome 1_199_001L) 1_200_000L) "the window not yet run down"
            // Last seen just now (a commit sets '#t' every time, and slides only once its own window has run down).
            Expect.isTrue (due (ValueSome 1_199_000L) 1_200_000L) "the window run down since the last slide"
            Expect.isTrue (due (ValueSome 600_000L) 1_200_000L) "half the timeout left"
            Expect.isTrue (due (ValueSome 1_200_000L) 600_000L) "a TTL longer than a shorter timeout"
            Expect.isFalse (due (ValueSome 1_200_000L) 1_200_500L) "a timeout a little longer than the last slide's: still within the window"
            Expect.isTrue (due ValueNone 1_200_000L) "no TTL under a timeout"
            Expect.isTrue (due (ValueSome 5L) 0L) "a timeout of zero slides every load"
            // A session that never expires: no TTL to keep; its last-seen time moves on once a window.
            let never = ExpiryRefresh.expiryFields (hash (Some(string seen)) (Some "-1"))
            let struct (lastSeen, timeout, _) = never
            Expect.isFalse (ExpiryRefresh.due ValueNone lastSeen timeout -1L 1000L (ValueSome seen)) "no TTL, seen within the window"
            Expect.isTrue (ExpiryRefresh.due ValueNone lastSeen timeout -1L 1000L (ValueSome(seen + 1000L))) "no TTL, the window run down"
            Expect.isTrue (ExpiryRefresh.due (ValueSome 5000L) lastSeen timeout -1L 1000L (ValueSome seen)) "a TTL an earlier timeout gave it"

        testCase "a load tells from the deadline its hash records whether it must slide, and runs its script when the hash records none"
        <| fun () ->
            let now = 1_000_000_000L
            let seen = string (now - 10L)
            let dueBy (field: string) ttl (clock: int64 voption) =
                ExpiryRefresh.dueByDeadline (ExpiryRefresh.expiryFields (hash (Some seen) (Some field))) ttl 1000L clock
            let slid (timeout: int64) (left: int64) = $"{timeout} {now + left}"
            // As the key's TTL would tell it (the same cases as above).
            Expect.equal (dueBy (slid 1_200_000L 1_200_000L) 1_200_000L (ValueSome now)) (ValueSome false) "just slid"
            Expect.equal (dueBy (slid 1_200_000L 1_199_001L) 1_200_000L (ValueSome now)) (ValueSome false) "the window not yet run down"
            Expect.equal (dueBy (slid 1_200_000L 1_199_000L) 1_200_000L (ValueSome now)) (ValueSome true) "the window run down"
            Expect.equal (dueBy (slid 1_200_000L 1_200_000L) 600_000L (ValueSome now)) (ValueSome true) "further off than a shorter timeout"
            Expect.equal (dueBy (slid 1_200_000L 1_200_000L) 2_400_000L (ValueSome now)) (ValueSome true) "a longer timeout"
            Expect.equal (dueBy (slid 1_200_000L -5_000L) 1_200_000L (ValueSome now)) (ValueSome true) "a deadline passed"
            // The clock read once the reply came, ahead of Redis's: the slide looks due sooner, never later.
            Expect.equal (dueBy (slid 1_200_000L 1_200_000L) 1_200_000L (ValueSome(now + 1000L))) (ValueSome true) "a reading ahead by the window"
            // A session that never expires: -1 for no deadline, and its last-seen time moves on once a window.
            Expect.equal (dueBy "-1 -1" -1L (ValueSome now)) (ValueSome false) "no deadline, seen within the window"
            Expect.equal (dueBy "-1 -1" -1L (ValueSome(now + 1000L))) (ValueSome true) "no deadline, the window run down"
            Expect.equal (dueBy (slid 60_000L 5000L) -1L (ValueSome now)) (ValueSome true) "a deadline an earlier timeout gave it"
            Expect.equal (dueBy "-1 -1" 1_200_000L (ValueSome now)) (ValueSome true) "no deadline under a timeout"
            // What cannot tell: the script decides, by the key's TTL.
            Expect.equal (dueBy "1200000" 1_200_000L (ValueSome now)) ValueNone "the timeout alone (an earlier Sesame's)"
            Expect.equal (dueBy (slid 1_200_000L 1_200_000L) 1_200_000L ValueNone) ValueNone "no reading of Redis's clock"
            for garbled in
                [
                    "soon"
                    "1200000 soon"
                    "1200000 "
                    $" 1200000 {now}"
                    $"1200000  {now}"
                    $"1200000 {now} 1"
                    $"- {now}"
                    $"+1200000 {now}"
                    $"1200000 +{now}"
                ] do
                Expect.equal (dueBy garbled 1_200_000L (ValueSome now)) ValueNone $"'{garbled}' holds no deadline"
                let struct (_, timeout, _) = ExpiryRefresh.expiryFields (hash (Some seen) (Some garbled))
                Expect.equal timeout ValueNone $"'{garbled}' holds no timeout either"

        testCase "Redis's clock is read from a recent reading, and from none older than a minute"
        <| fun () ->
            let clock = RedisClock()
            Expect.equal (clock.TryNow()) ValueNone "no reading"
            clock.Observe(5_000_000L, LocalClocks.Now())
            match clock.TryNow() with
            | ValueSome now -> Expect.isTrue (now >= 5_000_000L + RedisClock.Margin && now < 5_010_000L) $"read {now}"
            | ValueNone -> failtest "a reading just taken"
            let sent = LocalClocks.Now()
            clock.Observe(5_000_000L, { sent with Monotonic = sent.Monotonic - RedisClock.MaxAge - 1L })
            Expect.equal (clock.TryNow()) ValueNone "a reading older than a minute"

        testCase "a reading counts from when its script was sent: a reply read late puts Redis's clock ahead, never behind"
        <| fun () ->
            let clock = RedisClock()
            // The script was sent 600 ms ago (a pause before the reply was read) and read Redis's clock as 5,000,000.
            let sent = LocalClocks.Now()
            clock.Observe(5_000_000L, { Monotonic = sent.Monotonic - 600L; Wall = sent.Wall - 600L })
            match clock.TryNow() with
            | ValueSome now -> Expect.isGreaterThanOrEqual now 5_000_600L "now is at least the reading plus the time since the script went"
            | ValueNone -> failtest "a reading just taken"

        testCase "a reading follows whichever local clock went on further: the wall clock past a suspended host, the monotonic one past a step back"
        <| fun () ->
            let clock = RedisClock()
            let sent = LocalClocks.Now()
            // The host slept 10 s since the script was sent: the wall clock went on, the monotonic one stopped.
            clock.Observe(5_000_000L, { sent with Wall = sent.Wall - 10_000L })
            match clock.TryNow() with
            | ValueSome now -> Expect.isGreaterThanOrEqual now 5_010_000L "the 10 s the host slept"
            | ValueNone -> failtest "a reading just taken"
            // The wall clock was stepped back 10 s since the script was sent 600 ms ago.
            clock.Observe(5_000_000L, { Monotonic = sent.Monotonic - 600L; Wall = sent.Wall + 10_000L })
            match clock.TryNow() with
            | ValueSome now -> Expect.isGreaterThanOrEqual now 5_000_600L "the 600 ms the monotonic clock counted"
            | ValueNone -> failtest "a reading just taken"
    ]
