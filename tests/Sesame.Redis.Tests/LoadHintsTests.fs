/// The guess a load makes before it sends anything: whether its script will be due, from what was last read of the session.
module Sesame.Redis.Tests.LoadHintsTests

open Expecto
open Sesame.Redis

[<Tests>]
let tests =
    testList "LoadHints" [
        testCase "a session recorded recently, under the same timeout, is guessed not due; anything else is guessed due"
        <| fun () ->
            let hints = LoadHints 64
            let now = ValueSome 1_000_500L
            Expect.isFalse (hints.LikelyNotDue("a", 1_200_000L, 1000L, now)) "nothing recorded"
            hints.Record("a", 1_000_000L, 1_200_000L)
            Expect.isTrue (hints.LikelyNotDue("a", 1_200_000L, 1000L, now)) "seen 500 ms ago, a window of 1 s"
            Expect.isFalse (hints.LikelyNotDue("a", 1_200_000L, 1000L, ValueSome 1_001_000L)) "the window run down"
            Expect.isFalse (hints.LikelyNotDue("a", 600_000L, 1000L, now)) "another timeout"
            Expect.isFalse (hints.LikelyNotDue("a", 1_200_000L, 1000L, ValueNone)) "no reading of Redis's clock"
            Expect.isFalse (hints.LikelyNotDue("b", 1_200_000L, 1000L, now)) "another session"
            // A hash without both fields (written before Sesame kept the timeout) records nothing.
            hints.Record("c", struct (ValueSome 1_000_000L, ValueNone, ValueNone))
            Expect.isFalse (hints.LikelyNotDue("c", 1_200_000L, 1000L, now)) "a hash without #x"

        testCase "many sessions share the table's slots: each guess is for the session that last took its slot"
        <| fun () ->
            let hints = LoadHints 16
            let now = ValueSome 1_000_000L
            let ids = [ for i in 1..1000 -> $"id{i}" ]
            for id in ids do
                hints.Record(id, 1_000_000L, 1_200_000L)
            let guessed = ids |> List.filter (fun id -> hints.LikelyNotDue(id, 1_200_000L, 1000L, now))
            Expect.isLessThanOrEqual guessed.Length 16 "at most one session a slot"
            Expect.contains guessed (List.last ids) "the last one recorded"
    ]
