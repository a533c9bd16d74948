/// A commit script's ARGV built in one array (src/Sesame.Redis/ScriptArguments.fs, RedisLayout.argumentCountOf).
module Sesame.Redis.Tests.ScriptArgumentsTests

open System
open Expecto
open StackExchange.Redis
open Sesame
open Sesame.Redis
open Sesame.Tests.Helpers
open Sesame.Tests.StoreContract

let private commit = { IdleTimeout = TimeSpan.FromMinutes 20.0; MustExist = true; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }

/// The ARGV the commit script gets for these updates to the tree, and the facts, with leaves inline within `limit` bytes.
let private argumentsWith (limit: int) (data: Update list) (meta: Update list) =
    RedisLayout.commitArguments (RedisValue.op_Implicit "p:") "id" commit (RedisValue.op_Implicit 1000L) limit (SessionChange(Patch.fold data, Patch.fold meta))

let private argumentsOf = argumentsWith RedisStoreOptions.DefaultInlineLimit

[<Tests>]
let tests =
    testList "ScriptArguments" [
        testCase "the count sized for a change is what it adds with no leaf inline, and at most that with leaves inline"
        <| fun () ->
            let changes = [
                [ setAt "a" "1" ], []
                [ setAt "a.b[0]" "\"x\""; setAt "c" """{"d":[1,{"e":null}],"f":{}}"""; setAt "g" "[]" ], []
                [ Update.append (path "list") (Json.parse """{"k":[true,false]}""") ], []
                [ Update.remove (path "gone.deep"); Update.increment (path "n") 2.5m ], []
                [ Update.Remove SessionPath.root ], []
                [ setAt "a" "1" ], [ Update.set (path SessionMeta.User) (Json.string "ada") ]
                [ for i in 1..100 -> setAt $"items.i{i % 7}.q{i}" $"{i}" ], []
                [ setAt "a.b" "1"; Update.remove (path "a.b"); setAt "c.d" "2"; Update.remove (path "c.d") ], [ setAt "f.g" "3"; Update.remove (path "f.g") ]
            ]
            for data, meta in changes do
                let change = SessionChange(Patch.fold data, Patch.fold meta)
                let sized = 6 + RedisLayout.argumentCountOf (ScriptSteps.ofChange change)
                Expect.equal (argumentsWith 0 data meta).Length sized $"{data} {meta}, nothing inline"
                Expect.isLessThanOrEqual (argumentsOf data meta).Length sized $"{data} {meta}, leaves inline"

        testCase "an object value's leaves go inline in its node while it stays within the limit, the rest as nodes of their own"
        <| fun () ->
            let value = """{"a":1,"b":"two","c":[3],"d":{},"long":"0123456789012345678901234567890123456789"}"""
            let nodesOf (limit: int) =
                let arguments = argumentsWith limit [ setAt "v" value ] [] |> Array.map string
                // After the header (11 values): the op, the path (1, its name and cost), the node count and the size.
                let count = int arguments[11 + 4]
                [ for i in 0 .. count - 1 -> arguments[11 + 6 + 2 * i], arguments[11 + 7 + 2 * i] ]
            Expect.equal
                (nodesOf 0)
                [
                    "", "O\u0001a\u00034\u0001b\u00034\u0001c\u00034\u0001d\u00034\u0001long\u00037"
                    "\u0001a", "1"
                    "\u0001b", "\"two\""
                    "\u0001c", "A1"
                    "\u0001c\u00020", "3"
                    "\u0001d", "{}"
                    "\u0001long", "\"0123456789012345678901234567890123456789\""
                ]
                "with no limit, a node per leaf"
            Expect.equal
                (nodesOf 64)
                [
                    "", "O\u0001a\u00034\u00051\u0001b\u00034\u0005\"two\"\u0001c\u00034\u0001d\u00034\u0005{}\u0001long\u00037"
                    "\u0001c", "A1"
                    "\u0001c\u00020", "3"
                    "\u0001long", "\"0123456789012345678901234567890123456789\""
                ]
                "within 64 bytes: the short leaves inline (an empty object too), the array and the long text as nodes"

        testCase "a leaf goes inline only while the whole node, every member's entry counted, stays within the limit"
        <| fun () ->
            let nodesOf (limit: int) (value: string) =
                let arguments = argumentsWith limit [ setAt "v" value ] [] |> Array.map string
                let count = int arguments[11 + 4]
                [ for i in 0 .. count - 1 -> arguments[11 + 6 + 2 * i], arguments[11 + 7 + 2 * i] ]
            let long = String('k', 60)
            // 'O', \u0001 a \u0003 4 (4 bytes), \u0001 and 60 k's, \u0003 63 (64 bytes): 69 bytes with no leaf inline.
            Expect.equal
                (nodesOf 64 $"{{\"a\":1,\"{long}\":2}}")
                [ "", $"O\u0001a\u00034\u0001{long}\u000363"; "\u0001a", "1"; $"\u0001{long}", "2" ]
                "a later member's entry leaves no room: no leaf inline"
            // Every node of many values at many limits: one that holds a leaf inline is within the limit.
            let values = [
                """{"a":1,"b":"two","c":[3],"d":{},"e":null}"""
                """{"ключ":"é𝄞","x":{"y":true,"z":"0123456789"},"q\"uote":-1.5e3}"""
                $"{{\"s\":\"{String('s', 40)}\",\"t\":1,\"u\":2,\"v\":3,\"{long}\":[1]}}"
            ]
            for limit in 1..120 do
                for value in values do
                    for _, node in nodesOf limit value do
                        if node.Contains '\u0005' then Expect.isLessThanOrEqual (Text.Encoding.UTF8.GetByteCount node) limit $"{value} within {limit}"
            Expect.isTrue (nodesOf 120 values[2] |> List.exists (fun (_, node) -> node.Contains '\u0005')) "some leaves do go inline"

        testCase "a key set and removed again goes as one step: its path once, counted as the two updates it stands for"
        <| fun () ->
            let data = [ setAt "x" "1"; setAt "user.prefs.p1" "\"v\""; Update.remove (path "user.prefs.p1") ]
            let folded = Patch.fold data
            Expect.equal folded.Updates.Length 3 "the fold keeps a set of null and a remove"
            let arguments = argumentsOf data [] |> Array.map string
            // prefix, id, must exist, ttl, size limit, refresh; no upgrade ('', '', 0); 3 updates; the inline limit.
            Expect.equal arguments[6..10] [| ""; ""; "0"; "3"; "64" |] "the updates counted"
            let step = arguments[11 + 2 + 2 + 2 + 2 ..]
            Expect.equal
                step
                [| "n"; "3"; "\u0001user"; "7"; "\u0001prefs"; "8"; "\u0001p1"; "5" |]
                "one 'n' step with the path once (each key's cost: its length and 3, for \"key\":)"

        testCase "values past the capacity grow the array, and one not filled is cut to what was added"
        <| fun () ->
            let grown = ScriptArguments 1
            for i in 1..10 do
                grown.Add(RedisValue.op_Implicit (int64 i))
            grown[0] <- RedisValue.op_Implicit "first"
            Expect.equal (grown.ToArray() |> Array.map string) [| "first"; "2"; "3"; "4"; "5"; "6"; "7"; "8"; "9"; "10" |] "all ten, the first set again"
            let short = ScriptArguments 8
            short.Add(RedisValue.op_Implicit "only")
            Expect.equal (short.ToArray() |> Array.map string) [| "only" |] "one"
            Expect.throws (fun () -> short[1] <- RedisValue.op_Implicit "x") "a value not added cannot be set"
    ]
