/// The ring of sessions held without objects (src/Sesame.Fs/FreshSessions.fs: the memory store's one-request sessions,
/// the file store's replayed ones): records found by id wherever they lie, evicted oldest first, their space counted
/// until the tail passes it and given back when it does.
module Sesame.Tests.FreshSessionsTests

open System
open System.Collections.Generic
open Expecto
open Sesame

/// Arrays of 64 KiB (the smallest the memory store uses): records of up to 8 KiB.
let private chunkBytes = 64 * 1024

/// A session's value: a tree of `characters` x's under "text", and facts naming the session.
let private valueOf (id: string) (characters: int) =
    SessionText.Of(StoredSession(Json.parse $"""{{"text":"{String('x', characters)}"}}""", Json.parse $"""{{"id":"{id}"}}"""))

let private textOf (value: SessionText) = Text.Encoding.UTF8.GetString value.Utf8

[<Tests>]
let tests =
    testList "FreshSessions" [
        testCase "an id is held as its UTF-8 bytes: any valid id is found as it was given, and one that could be mistaken for another is left to the map"
        <| fun () ->
            let ring = FreshSessions chunkBytes
            let value = valueOf "v" 10
            for id in [ "plain-ascii"; "caf\u00e9"; "\u65e5\u672c"; "emoji-\U0001F600"; String('a', 255) ] do
                let position = ring.TryAdd(id, value, 1L, 2L)
                Expect.isGreaterThanOrEqual position 0L $"{id} is taken"
                Expect.equal (ring.Find id) position $"{id} is found"
                Expect.equal (ring.IdAt position) id $"{id} reads back"
                let chars = Array.zeroCreate<char> 256
                Expect.equal (String(chars, 0, ring.CopyIdChars(position, Span chars))) id $"{id} reads back as characters"
                Expect.equal (ring.IdUtf8LengthAt position) (Text.Encoding.UTF8.GetByteCount id) $"{id}'s UTF-8 length"
                Expect.equal (textOf (ring.ValueAt position)) (textOf value) $"{id}'s value"
            // Two lone surrogates both write U+FFFD's bytes as UTF-8: the ring would take one for the other. (Made with
            // char: F# writes a lone surrogate's escape in a literal as U+FFFD.)
            for id in [ "lone-" + string (char 0xD800); "lone-" + string (char 0xDBFF); String('a', 256) ] do
                Expect.equal (ring.TryAdd(id, value, 1L, 2L)) -1L $"{id} is left to the map"
                Expect.equal (ring.Find id) -1L $"{id} is not found"
            Expect.equal ring.LiveCount 5 "the five valid ids"

        testCase "records are found by id across the arrays' ends, and removing every one gives all the space back"
        <| fun () ->
            let ring = FreshSessions chunkBytes
            let random = Random 7
            let held = Dictionary<string, SessionText>()
            let ids = List<string>()
            for i in 1..20_000 do
                let id = $"session-{i}"
                let value = valueOf id (random.Next 6000)
                let position = ring.TryAdd(id, value, int64 i, 0L)
                Expect.isGreaterThanOrEqual position 0L $"{id} is taken"
                held[id] <- value
                ids.Add id
                // Half of them end again, in no particular order, leaving holes behind the tail.
                if random.Next 2 = 0 then
                    let slot = random.Next ids.Count
                    let gone = ids[slot]
                    ids[slot] <- ids[ids.Count - 1]
                    ids.RemoveAt(ids.Count - 1)
                    ring.Remove(ring.Find gone)
                    held.Remove gone |> ignore
            Expect.equal ring.LiveCount held.Count "live records"
            for KeyValue(id, value) in held do
                let position = ring.Find id
                Expect.isGreaterThanOrEqual position 0L $"{id} is found"
                Expect.equal (ring.IdAt position) id "its id"
                Expect.equal (textOf (ring.ValueAt position)) (textOf value) $"{id}'s value"
                Expect.equal (ring.DataLengthAt position) value.DataLength $"{id}'s tree length"
            Expect.equal (ring.Find "session-0") -1L "an id never added is not found"
            for id in List.ofSeq held.Keys do
                ring.Remove(ring.Find id)
            Expect.equal ring.LiveCount 0 "nothing is live"
            Expect.equal ring.CountedBytes 0L "nothing is counted: the tail passed every hole"
            Expect.isLessThanOrEqual ring.ArrayCount 2 "at most the head's array and a spare are left"

        testCase "a walk a batch at a time visits each record once, in order, while records end behind and ahead of it, arrays are let go and records are added"
        <| fun () ->
            // Arrays of 4 KiB: the tail leaves one every few dozen records, under a walk that stopped in it.
            let ring = FreshSessions 4096
            let random = Random 17
            let order = List<string>()
            let add () =
                let id = $"s{order.Count}"
                Expect.isGreaterThanOrEqual (ring.TryAdd(id, valueOf id (random.Next 200), 1L, 0L)) 0L $"{id} is taken"
                order.Add id
            for _ in 1..2000 do
                add ()
            let arrays = ring.ArrayCount
            let visited = List<string>()
            let endedUnvisited = HashSet<string>()
            let mutable position = 0L
            let mutable batches = 0
            while position >= 0L do
                // The visit ends every other record it is given (as a sweep ends the expired).
                position <-
                    ring.Walk(
                        position,
                        1 + random.Next 9,
                        fun at ->
                            (let id = ring.IdAt at in
                             visited.Add id
                             if random.Next 2 = 0 then ring.Remove at)
                    )
                batches <- batches + 1
                // Between batches, requests end the oldest records (behind the walk, then ahead of it once it has
                // ended those) and others at random, and new sessions come.
                for _ in 1..3 do
                    match ring.Oldest(-1L, true) with
                    | -1L -> ()
                    | oldest ->
                        if not (visited.Contains(ring.IdAt oldest)) then endedUnvisited.Add(ring.IdAt oldest) |> ignore
                        ring.Remove oldest
                for _ in 1..4 do
                    let some = order[random.Next order.Count]
                    match ring.Find some with
                    | -1L -> ()
                    | at ->
                        if not (visited.Contains some) then endedUnvisited.Add some |> ignore
                        ring.Remove at
                if batches % 4 = 0 then add ()
            Expect.equal (visited |> Seq.distinct |> Seq.length) visited.Count "no record twice"
            let index = Dictionary<string, int>()
            order |> Seq.iteri (fun i id -> index[id] <- i)
            Expect.isTrue (visited |> Seq.pairwise |> Seq.forall (fun (a, b) -> index[a] < index[b])) "oldest first"
            Expect.equal (Set.ofSeq visited + Set.ofSeq endedUnvisited) (Set.ofSeq order) "every record, unless it ended before the walk reached it"
            Expect.isLessThan ring.ArrayCount (arrays / 4) $"the arrays the tail left were let go during the walk (of {arrays}; {ring.LiveCount} records left)"

        testCase "a sweep ends the expired records, and leaves the earliest expiry of those left for the next to skip by"
        <| fun () ->
            let ring = FreshSessions chunkBytes
            for i, expires in List.indexed [ 10L; 30L; 20L; 1000L; 15L ] do
                ring.TryAdd($"s{i}", valueOf $"s{i}" 10, expires, 0L) |> ignore
            Expect.equal ring.EarliestExpiry 10L "the earliest of all"
            let sweep t =
                let ended = List<string>()
                ring.SweepExpired(
                    t,
                    fun position ->
                        ended.Add(ring.IdAt position)
                        ring.Remove position
                )
                List.ofSeq ended
            Expect.equal (sweep 16L) [ "s0"; "s4" ] "the two expired at 16"
            Expect.equal ring.EarliestExpiry 20L "the earliest of those left: no sweep need walk before 20"
            Expect.equal (sweep 30L) [ "s1"; "s2" ] "the two expired at 30"
            Expect.equal ring.EarliestExpiry 1000L "then 1000"
            ring.Retime(ring.Find "s3", 500L, 1L)
            ring.TryAdd("s5", valueOf "s5" 10, 700L, 2L) |> ignore
            Expect.equal ring.EarliestExpiry 500L "a retime lowers it"
            Expect.equal (sweep 100L) [] "nothing expired at 100"
            Expect.equal ring.EarliestExpiry 500L "still 500"

        testCase "the oldest live record is the next to go, holes are skipped, and the one acknowledged is never given"
        <| fun () ->
            let ring = FreshSessions chunkBytes
            let positions = [| for i in 0..4 -> ring.TryAdd($"s{i}", valueOf $"s{i}" 10, 100L, 0L) |]
            Expect.equal (ring.Oldest(-1L, false)) positions[0] "the first made"
            ring.Remove positions[1]
            ring.Remove positions[0]
            Expect.equal (ring.Oldest(-1L, false)) positions[2] "past the holes of s0 and s1"
            Expect.equal (List.ofSeq (ring.Positions())) [ positions[2]; positions[3]; positions[4] ] "the live records, oldest first"
            Expect.equal (ring.Oldest(positions[2], true)) positions[3] "the acknowledged session is not offered, even when it is the oldest"
            Expect.equal (ring.Oldest(positions[2], false)) -1L "and the next only when space is not what is wanted"
            Expect.equal (ring.Oldest(positions[3], false)) positions[2] "one that is not the oldest does not stop the oldest"
            ring.Remove positions[3]
            ring.Remove positions[4]
            Expect.equal (ring.Oldest(positions[2], true)) -1L "nor when it is the only one"

        testCase "the space a record leaves counts until the tail passes it"
        <| fun () ->
            let ring = FreshSessions chunkBytes
            let first = ring.TryAdd("first", valueOf "first" 100, 100L, 0L)
            let second = ring.TryAdd("second", valueOf "second" 100, 100L, 0L)
            let both = ring.CountedBytes
            ring.Remove second
            // The second's record lies behind the first, which still pins the tail: its hole is still memory held.
            Expect.isGreaterThan ring.CountedBytes (both / 2L) "the hole is still counted"
            ring.Remove first
            Expect.equal ring.CountedBytes 0L "both freed once the tail passes them"

        testCase "a record larger than an eighth of an array is refused, for the store's map to hold"
        <| fun () ->
            let ring = FreshSessions chunkBytes
            Expect.equal (ring.TryAdd("large", valueOf "large" (chunkBytes / 8), 100L, 0L)) -1L "refused"
            Expect.equal ring.LiveCount 0 "nothing held"
            Expect.isGreaterThanOrEqual (ring.TryAdd("small", valueOf "small" (chunkBytes / 8 - 200), 100L, 0L)) 0L "one just under fits"

        testCase "arrays made ready ahead are taken when ready and allocated on the spot when not, never waited for"
        <| fun () ->
            let made = Collections.Generic.Queue<Threading.Tasks.TaskCompletionSource<byte[]>>()
            let ahead =
                ArraysAhead(
                    4096,
                    fun length ->
                        let next = Threading.Tasks.TaskCompletionSource<byte[]>()
                        made.Enqueue next
                        next.Task
                )
            Expect.equal made.Count 1 "the first is under way from the start"
            let spot = ahead.Take()
            Expect.equal (spot.Length, ahead.TakenOnTheSpot, ahead.TakenReady) (4096, 1, 0) "not ready: one allocated on the spot"
            Expect.equal made.Count 1 "the one under way is still awaited, not asked for again"
            let ready = Array.zeroCreate<byte> 4096
            made.Dequeue().SetResult ready
            Expect.isTrue (obj.ReferenceEquals(ahead.Take(), ready)) "ready: that very array"
            Expect.equal (ahead.TakenOnTheSpot, ahead.TakenReady, made.Count) (1, 1, 1) "and the next is under way"
            // A pool thread that could not have the memory gives null: the taking thread allocates (and would fail) itself.
            made.Dequeue().SetResult null
            Expect.equal (ahead.Take().Length, ahead.TakenOnTheSpot) (4096, 2) "allocated on the spot"
            ahead.Stop()
            Expect.equal (ahead.Take().Length, ahead.TakenOnTheSpot) (4096, 3) "stopped: every array on the spot"

        testCase "arrays made ready on a pool thread are zero bytes of the length asked for"
        <| fun () ->
            let length = 3 * Environment.SystemPageSize + 5
            let array = ArraysAhead.OnPoolThread(length).Result
            Expect.equal array.Length length "the length asked for"
            Expect.isTrue (Array.forall ((=) 0uy) array) "every byte zero"

        testCase "a ring whose arrays are made ready ahead holds every record across them, each array taken one way or the other"
        <| fun () ->
            let ring = FreshSessions 4096
            ring.PrepareArraysAhead()
            let values = [| for i in 0..4_999 -> valueOf $"s{i}" (i % 300) |]
            for i in 0..4_999 do
                Expect.isGreaterThanOrEqual (ring.TryAdd($"s{i}", values[i], 100L, 0L)) 0L $"s{i} is taken"
            let struct (ready, onTheSpot) = ring.StopArraysAhead()
            Expect.equal (ready + onTheSpot) ring.ArrayCount "every array the ring holds came from one or the other"
            for i in 0..4_999 do
                let position = ring.Find $"s{i}"
                Expect.equal (textOf (ring.ValueAt position)) (textOf values[i]) $"s{i}'s value"

        testCase "a ring that slides (new records made, the oldest evicted) keeps reusing the same few arrays"
        <| fun () ->
            let ring = FreshSessions chunkBytes
            let window = 2_000
            let mutable most = 0
            for i in 1..300_000 do
                ring.TryAdd($"s{i}", valueOf $"s{i}" 40, 100L, 0L) |> ignore
                if ring.LiveCount > window then ring.Remove(ring.Oldest(-1L, false))
                most <- max most ring.ArrayCount
            Expect.equal ring.LiveCount window "the window"
            // 2,000 records of about 200 bytes fill about 6 arrays of 64 KiB.
            let needed = int (ring.CountedBytes / int64 chunkBytes) + 1
            Expect.isLessThanOrEqual most (needed + 3) $"at most {needed} arrays of records, the head's and a spare ({most} held)"
    ]
