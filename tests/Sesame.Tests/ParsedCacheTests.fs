module Sesame.Tests.ParsedCacheTests

open System
open Sesame
open Expecto

/// A session's value too large for the cache's slots (over 64 KiB): its tree is referenced weakly from its text.
let private largeValue () = SessionText.Of(StoredSession(Json.object [ "cart", Json.string (String('x', 100_000)) ], Json.emptyObject))

[<Tests>]
let tests =
    testList "ParsedCache" [
        testCase "a large session's text leads to the tree parsed from it last, so the request holding that tree never parses it again"
        <| fun () ->
            let cache = ParsedCache<SessionText, StoredSession>()
            let value = largeValue ()
            // A commit kept one tree; then a load parsed the text again (the collector may have taken the first).
            let first = value.Parse()
            cache.Put("s", value, first)
            let second = value.Parse()
            cache.Put("s", value, second)
            match cache.TryGet("s", value) with
            | ValueSome tree -> Expect.isTrue (obj.ReferenceEquals(tree, second)) "the tree the load made, which its request holds"
            | ValueNone -> failtest "the text's tree was not kept"
            GC.KeepAlive first

        testCase "a small session's tree is kept in its slot, and only for the very text it was parsed from"
        <| fun () ->
            let cache = ParsedCache<SessionText, StoredSession>()
            let value = SessionText.Of(StoredSession(Json.object [ "n", Json.int64 1L ], Json.emptyObject))
            let tree = value.Parse()
            cache.Put("s", value, tree)
            Expect.isTrue (cache.TryGet("s", value) |> ValueOption.exists (fun t -> obj.ReferenceEquals(t, tree))) "kept"
            let newer = SessionText.Of(StoredSession(Json.object [ "n", Json.int64 2L ], Json.emptyObject))
            Expect.isTrue (cache.TryGet("s", newer)).IsNone "not for another text of the same id"
    ]
