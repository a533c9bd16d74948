/// A commit script's ARGV built in one array (src/Sesame.Redis/ScriptArguments.fs, RedisLayout.argumentCount).
module Sesame.Redis.Tests.ScriptArgumentsTests

open System
open Expecto
open StackExchange.Redis
open Sesame
open Sesame.Redis
open Sesame.Tests.Helpers
open Sesame.Tests.StoreContract

let private commit = { IdleTimeout = TimeSpan.FromMinutes 20.0; MustExist = true; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }

/// The ARGV the commit script gets for these updates to the tree, and the facts.
let private argumentsOf (data: Update list) (meta: Update list) =
    RedisLayout.commitArguments (RedisValue.op_Implicit "p:") "id" commit (RedisValue.op_Implicit 1000L) (SessionChange(Patch.fold data, Patch.fold meta))

[<Tests>]
let tests =
    testList "ScriptArguments" [
        testCase "the count sized for a change is what the change adds, for every kind of update and value"
        <| fun () ->
            let changes = [
                [ setAt "a" "1" ], []
                [ setAt "a.b[0]" "\"x\""; setAt "c" """{"d":[1,{"e":null}],"f":{}}"""; setAt "g" "[]" ], []
                [ Update.append (path "list") (Json.parse """{"k":[true,false]}""") ], []
                [ Update.remove (path "gone.deep"); Update.increment (path "n") 2.5m ], []
                [ Update.Remove SessionPath.root ], []
                [ setAt "a" "1" ], [ Update.set (path SessionMeta.User) (Json.string "ada") ]
                [ for i in 1..100 -> setAt $"items.i{i % 7}.q{i}" $"{i}" ], []
            ]
            for data, meta in changes do
                let change = SessionChange(Patch.fold data, Patch.fold meta)
                let arguments = argumentsOf data meta
                Expect.equal arguments.Length (6 + RedisLayout.argumentCount change) $"{data} {meta}"

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
