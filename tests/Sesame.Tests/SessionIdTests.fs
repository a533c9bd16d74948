/// Session ids and the CSPRNG bytes they are made of (drawn a block at a time per thread: BufferedRandom).
module Sesame.Tests.SessionIdTests

open System
open System.Collections.Concurrent
open System.Threading.Tasks
open Expecto
open Sesame

[<Tests>]
let tests =
    testList "Session ids" [
        testCase "a ticket reads back as it was made, its creation to the millisecond, before 1970 and at the ends of time too"
        <| fun () ->
            for at in
                [
                    DateTimeOffset.UtcNow
                    DateTimeOffset(1969, 6, 1, 12, 30, 15, 123, TimeSpan.Zero).AddTicks 4567L
                    DateTimeOffset.MinValue
                    DateTimeOffset.MaxValue
                ] do
                let ticket = SessionTicket.create (SessionId.create ()) at
                Expect.equal ticket.Created.UtcTicks (at.UtcTicks - at.UtcTicks % TimeSpan.TicksPerMillisecond) $"{at:O}: made to the millisecond"
                Expect.equal (SessionTicket.tryParse (SessionTicket.format ticket)) (ValueSome ticket) $"{at:O}: the text reads back as the ticket"
            for text in [ "+1000"; " 1000"; "1000 "; "1e3"; "--1"; "-"; ""; "99999999999999999999"; "-99999999999999999999" ] do
                Expect.equal (SessionTicket.tryParse $"{SessionId.create ()}.{text}") ValueNone $"'{text}' is not a creation time"

        testCase "ids from many threads, across many blocks, are well formed and never repeat"
        <| fun () ->
            // 8 threads × 2,000 ids: each thread draws its block about 24 times.
            let ids = ConcurrentBag<string>()
            Parallel.For(
                0,
                8,
                fun _ ->
                    for _ in 1..2_000 do
                        ids.Add(SessionId.create ())
            )
            |> ignore
            Expect.equal ids.Count 16_000 "every id made"
            Expect.equal (Seq.distinct ids |> Seq.length) 16_000 "no id repeats"
            for id in ids do
                Expect.isTrue (SessionId.isWellFormed id) $"'{id}' has an id's length and alphabet"

        testCase "the characters of ids are spread evenly (no zeroed or repeated block handed out)"
        <| fun () ->
            // 20,000 ids × 32 characters of 6 random bits each (24 bytes are 32 characters exactly): each of the 64
            // characters is expected 10,000 times. A block handed out zeroed would make 'A' far more frequent.
            let counts = Array.zeroCreate<int> 128
            for _ in 1..20_000 do
                for c in SessionId.create () do
                    counts[int c] <- counts[int c] + 1
            let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            let expected = 20_000.0 * 32.0 / 64.0
            // Pearson's chi-square over 63 degrees of freedom: 140 is past its 99.9999th percentile.
            let chiSquare = alphabet |> Seq.sumBy (fun c -> (float counts[int c] - expected) ** 2.0 / expected)
            Expect.isLessThan chiSquare 140.0 $"chi-square of the characters' counts ({chiSquare:F1})"

        testCase "a request of more than a block, and requests that straddle a block's end, get fresh bytes"
        <| fun () ->
            let large = Array.zeroCreate<byte>(BufferedRandom.BlockBytes + 1)
            BufferedRandom.Fill(Span large)
            Expect.isLessThan (large |> Array.filter ((=) 0uy) |> Array.length) 40 "more than a block: not zeroed"
            // 7 bytes at a time never divides a block evenly: some requests take the end of one block and a new one.
            let seen = Collections.Generic.HashSet<string>()
            for _ in 1 .. 3 * BufferedRandom.BlockBytes / 7 do
                let bytes = Array.zeroCreate<byte> 7
                BufferedRandom.Fill(Span bytes)
                Expect.isTrue (seen.Add(Convert.ToHexString bytes)) "7 bytes never repeat"
                Expect.notEqual bytes (Array.zeroCreate 7) "7 bytes are not all zero"
    ]
