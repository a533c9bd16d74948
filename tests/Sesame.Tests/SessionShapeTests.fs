/// The pieces of src/Sesame.Fs/SessionShape.fs on their own: the minimal patch between two trees, migrating a tree
/// through ordered steps, the checks on the app's declaration, and read fallbacks by path prefix.
module Sesame.Tests.SessionShapeTests

open System
open FsCheck
open FsCheck.FSharp
open Expecto
open Sesame
open Sesame.Tests.Generators

/// Sessions that are objects (what a store holds) with a request's updates that apply to them: the second tree is the first changed.
let private changedSessions: Arbitrary<Json * Json> =
    let generate = gen {
        let! tree =
            session
            |> Gen.filter (function
                | Json.Object _ -> true
                | _ -> false)
        let! changes = updates
        let after =
            try
                List.fold (fun t u -> Update.apply u t) tree changes
            with :? PathConflictException ->
                tree
        return tree, after
    }
    Arb.fromGen generate

let private objects =
    session
    |> Gen.filter (function
        | Json.Object _ -> true
        | _ -> false)

let private show (patch: Patch) = patch.Updates |> List.map string |> String.concat "; "

let private migrations (steps: (int * (Json -> Json)) list) =
    let all = SessionMigrations()
    for from, step in steps do
        all.Add(from, Func<Json, Json> step) |> ignore
    all

[<Tests>]
let tests =
    testList "SessionShape" [
        testGuardedLaw "the changes between two trees, applied to the first, give the second, and touch only paths where they differ"
        <| fun () ->
            let mutable differed = 0
            Prop.forAll changedSessions (fun (before, after) ->
                let patch = Patch.fold (SessionShape.changes before after)
                let applied = Patch.apply patch before
                if not patch.IsEmpty then differed <- differed + 1
                claim (applied = after) (fun () -> $"{show patch} made {Json.serialize applied} of {Json.serialize before}, not {Json.serialize after}")
                && patch.Updates
                   |> List.forall (fun u ->
                       claim (SessionPath.tryGet u.Path before <> SessionPath.tryGet u.Path after) (fun () ->
                           $"{u} touches a path where {Json.serialize before} and {Json.serialize after} agree"))),
            // About a third of the generated cases change the tree (25 runs: 294 to 357 of 1,000): 300 failed one run in
            // six by chance. 200 still fails when the generator stops making real changes.
            fun () -> Expect.isGreaterThan differed 200 $"only {differed} cases changed the tree"

        testLaw "the changes between two unrelated trees, applied to the first, give the second"
        <| fun () ->
            Prop.forAll (Arb.fromGen (Gen.zip objects objects)) (fun (before, after) ->
                let applied = Patch.apply (Patch.fold (SessionShape.changes before after)) before
                claim (applied = after) (fun () -> $"gave {Json.serialize applied}, not {Json.serialize after}"))

        test "a change deep in a wide tree is one update at its path; a renamed key is a remove and a set; a changed array is set whole" {
            let before = json """{"visits":3,"user":{"name":"ada","prefs":{"theme":"dark","lang":"en"}},"cart":{"items":["apple","pear"]}}"""
            let after = json """{"visits":3,"user":{"name":"ada","prefs":{"theme":"light","lang":"en"}},"cart":{"lines":["apple","pear"]}}"""
            let updates = SessionShape.changes before after |> List.map string |> List.sort
            Expect.equal updates [ "remove cart.items"; """set cart.lines = ["apple","pear"]"""; "set user.prefs.theme = \"light\"" ] "only what differs"
            let arrays = SessionShape.changes (json """{"a":[1,{"b":2},3]}""") (json """{"a":[1,{"b":3},3]}""") |> List.map string
            Expect.equal arrays [ """set a = [1,{"b":3},3]""" ] "an array that differs is set whole"
            Expect.isEmpty (SessionShape.changes before (json (Json.serialize before))) "an equal tree changes nothing"
        }

        test "a tree migrated through several steps gives one upgrade from the stored version to the app's, whose patch makes the migrated tree" {
            let steps =
                migrations [ 1, SessionPath.set (path "b") (Json.int64 2L); 2, SessionPath.set (path "c") (Json.int64 3L) >> SessionPath.remove (path "a") ]
            match SessionShape.migrate steps 3 1 (json """{"a":1,"keep":{"x":[1]}}""") with
            | MigrationOutcome.Migrated(tree, upgrade) ->
                Expect.equal (Json.serialize tree) """{"keep":{"x":[1]},"b":2,"c":3}""" "the tree a handler reads"
                Expect.equal (upgrade.From, upgrade.To) (1, 3) "one upgrade across both steps"
                Expect.equal (upgrade.Data.Updates |> List.map string |> List.sort) [ "remove a"; "set b = 2"; "set c = 3" ] "only what the steps changed"
            | other -> failtest $"%A{other}"
            match SessionShape.migrate steps 3 2 (json """{"a":1}""") with
            | MigrationOutcome.Migrated(tree, upgrade) ->
                Expect.equal (Json.serialize tree) """{"c":3}""" "from the middle, only the later step"
                Expect.equal upgrade.From 2 "upgrade.From"
            | other -> failtest $"%A{other}"
        }

        test "a session older than the oldest migration, a migration that throws and one that gives no object are outcomes, not exceptions" {
            let steps = migrations [ 2, id ]
            match SessionShape.migrate steps 3 1 Json.emptyObject with
            | MigrationOutcome.TooOld(Some 2) -> ()
            | other -> failtest $"older than the oldest: %A{other}"
            let throwing = migrations [ 0, fun _ -> failwith "bad migration" ]
            match SessionShape.migrate throwing 1 0 Json.emptyObject with
            | MigrationOutcome.Failed(0, 1, e) -> Expect.equal e.Message "bad migration" "the migration's own error"
            | other -> failtest $"throwing: %A{other}"
            for gives in [ Json.Null; json "[1]"; Unchecked.defaultof<Json> ] do
                match SessionShape.migrate (migrations [ 0, fun _ -> gives ]) 1 0 Json.emptyObject with
                | MigrationOutcome.Failed(0, 1, e) -> Expect.stringContains e.Message "JSON object" "says what a migration must give"
                | other -> failtest $"a migration giving %A{gives}: %A{other}"
            let tooDeep = migrations [ 0, fun _ -> Seq.fold (fun inner _ -> Json.object [ "a", inner ]) Json.emptyObject (seq { 1..2000 }) ]
            match SessionShape.migrate tooDeep 1 0 Json.emptyObject with
            | MigrationOutcome.Failed(0, 1, :? ArgumentException) -> ()
            | other -> failtest $"a tree no store could keep: %A{other}"
        }

        test "migrations are added in order, and the app's version must be where they lead" {
            let steps = SessionMigrations().Add(1, id)
            let outOfOrder = throws<ArgumentException>(fun () -> steps.Add(3, id) |> ignore)
            Expect.stringContains outOfOrder.Message "starts from 2" "names the version expected"
            throwsAny<ArgumentOutOfRangeException>(fun () -> SessionMigrations().Add(-1, id) |> ignore) |> ignore
            steps.Add(2, id) |> ignore
            Expect.equal (steps.Oldest, steps.Newest, steps.Count) (Some 1, Some 3, 2) "oldest, newest, count"
            SessionShape.check 3 steps
            SessionShape.check 0 (SessionMigrations())
            let wrongEnd = throws<InvalidOperationException>(fun () -> SessionShape.check 4 steps)
            Expect.stringContains wrongEnd.Message "end at version 3" "names where they end"
            let none = throws<InvalidOperationException>(fun () -> SessionShape.check 1 (SessionMigrations()))
            Expect.stringContains none.Message "Migrations.Add(0" "tells how to add the one missing"
        }

        test "a read's fallback is the one of the longest prefix of its path, by whole segments" {
            let fallbacks = ReadFallbacks()
            fallbacks.Add("cart", ReadFallback.Missing).Add("cart.items", ReadFallback.Remove) |> ignore
            Expect.equal (fallbacks.For(path "cart")) ReadFallback.Missing "the prefix itself"
            Expect.equal (fallbacks.For(path "cart.total")) ReadFallback.Missing "below it"
            Expect.equal (fallbacks.For(path "cart.items[3].qty")) ReadFallback.Remove "the longest prefix"
            Expect.equal (fallbacks.For(path "cartography")) ReadFallback.Throw "not a prefix by segments"
            fallbacks.Default <- ReadFallback.Missing
            fallbacks.Add("cart.items", ReadFallback.Throw) |> ignore
            Expect.equal (fallbacks.For(path "user")) ReadFallback.Missing "the default"
            Expect.equal (fallbacks.For(path "cart.items[0]")) ReadFallback.Throw "a prefix added again replaces its fallback"
            throwsAny<ArgumentOutOfRangeException>(fun () -> fallbacks.Add("x", enum<ReadFallback> 7) |> ignore) |> ignore
        }

        test "failures are logged under their path with indexes as [*]" {
            Expect.equal (SessionShape.pattern (path "cart.items[3].qty")) "cart.items[*].qty" "indexes"
            Expect.equal (SessionShape.pattern (path "prefs[\"a.b\"][0]")) "prefs[\"a.b\"][*]" "quoted keys stay quoted"
        }
    ]
