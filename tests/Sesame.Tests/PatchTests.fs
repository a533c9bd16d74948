module Sesame.Tests.PatchTests

open Sesame
open Sesame.Tests.Generators
open System
open System.Text.Json
open FsCheck
open FsCheck.FSharp
open Expecto

let private set (p: string) (value: string) = Update.set (path p) (json value)
let private remove (p: string) = Update.remove (path p)
let private increment (p: string) (by: string) = Update.Increment(path p, JsonNumber.Parse by)

/// Applies updates one by one, as a request would see them.
let private oneByOne (updates: Update list) (tree: Json) = List.fold (fun t u -> Update.apply u t) tree updates

let private tryOneByOne (updates: Update list) (tree: Json) =
    try
        Ok(oneByOne updates tree)
    with :? PathConflictException as e ->
        Error e

/// Whether one path is the same as, or an ancestor of, the other.
let private related (a: SessionPath) (b: SessionPath) = SessionPath.isPrefixOf a b || SessionPath.isPrefixOf b a

/// Two updates of related paths that a folded patch may hold, the first before the second: `set p null` then
/// `remove p` (the remove superseded updates that created p's containers, which must still be created), `remove p`
/// then `set p` (p was removed and set again: it moves to the end of its object, as one by one), `set p null` then a
/// later `set p` (both at once), appends to one array, and an append beside updates below its array (whose indexes
/// depend on the stored length, so they keep their order).
let private mayPair (first: Update) (second: Update) =
    let belowAnAppend (append: Update) (other: Update) =
        match append with
        | Update.Append(p, _) -> other.Path <> p && SessionPath.isPrefixOf p other.Path
        | _ -> false
    match first, second with
    | _ when belowAnAppend first second || belowAnAppend second first -> true
    | Update.Set(p, Json.Null), Update.Remove q
    | Update.Remove p, Update.Set(q, _)
    | Update.Set(p, Json.Null), Update.Set(q, _)
    | Update.Append(p, _), Update.Append(q, _) -> p = q
    | _ -> false

/// No two updates touch related paths, except the pairs mayPair allows.
let rec private normalized (updates: Update list) =
    match updates with
    | u :: rest -> rest |> List.forall (fun v -> not (related u.Path v.Path) || mayPair u v) && normalized rest
    | [] -> true

/// Applied as JSON text, key order included: the patch must leave exactly the text applying the updates one by one leaves.
let private sameText (a: Json) (b: Json) = Json.serialize a = Json.serialize b

let private show (patch: Patch) = string patch

/// Long update logs (40 to 300 updates) over paths up to five keys deep in a small alphabet, so that updates nest in,
/// supersede and merge into each other many times over; built so that every log applies one by one (objects at the
/// keys a, b and c, a number at n, a string at s, an array at l), so the law below is never vacuous.
let private longLogs: Arbitrary<Scenario> =
    let objectPath = gen {
        let! depth = Gen.choose (1, 4)
        let! keys = Gen.listOfLength depth (Gen.elements [ "a"; "b"; "c" ])
        return SessionPath.ofKeys keys
    }
    let at (leaf: Segment) = objectPath |> Gen.map (SessionPath.child leaf)
    let item = Gen.elements [ Json.int64 1L; Json.string "i"; Json.emptyObject ]
    let update =
        Gen.frequency [
            4, Gen.map2 Update.set objectPath (Gen.elements [ json "{}"; json """{"n":1}"""; json """{"a":{"s":"x"}}"""; json """{"l":[0],"b":{}}""" ])
            3, Gen.oneof [ objectPath; at (Segment.Key "s"); at (Segment.Key "n"); at (Segment.Key "l") ] |> Gen.map Update.remove
            3, Gen.map2 Update.increment (at (Segment.Key "n")) (Gen.elements [ 1m; -2m; 0.5m ])
            2, Gen.map2 Update.set (at (Segment.Key "s")) (Gen.elements [ Json.string "x"; Json.string "y" ])
            3, Gen.map2 Update.append (at (Segment.Key "l")) item
            1, Gen.map2 Update.set (at (Segment.Key "l")) (Gen.constant (Json.array []))
            // Below an array that appends also grow: setting index 0 creates the array or replaces its first item.
            1, Gen.map2 Update.set (at (Segment.Key "l") |> Gen.map (SessionPath.child (Segment.Index 0))) item
            1, Gen.constant (Update.Remove SessionPath.root)
        ]
    let generate = gen {
        let! start = Gen.choose (0, 20) |> Gen.bind (fun n -> Gen.listOfLength n update)
        let! count = Gen.choose (40, 300)
        let! updates = Gen.listOfLength count update
        return { Tree = oneByOne start Json.emptyObject; Updates = updates }
    }
    Arb.fromGenShrink (generate, fun scenario -> shrinkList scenario.Updates |> Seq.map (fun shorter -> { scenario with Updates = shorter }))

/// Updates over an object of 14 keys and an array of 12 items, each a small object: wider than the fold's index scans
/// (8 children), so its lookups go through its dictionaries of keys and of indexes, and across the switch to them.
let private wideScenarios: Arbitrary<Scenario> =
    let keys = [ for k in 0..13 -> $"k{k}" ]
    let keyPath = Gen.elements keys |> Gen.map (fun k -> SessionPath.OfKeys("w", k))
    let itemPath = Gen.choose (0, 11) |> Gen.map (fun i -> SessionPath.OfKeys("l").Index i)
    let anyPath = Gen.oneof [ keyPath; itemPath ]
    let update =
        Gen.frequency [
            4, Gen.map2 Update.set anyPath (Gen.elements [ json """{"n":1}"""; json "{}"; json """{"log":[]}""" ])
            3, Gen.map2 Update.increment (anyPath |> Gen.map (fun p -> p.Key "n")) (Gen.elements [ 1m; -2m ])
            2, Gen.map Update.remove (Gen.oneof [ keyPath; anyPath |> Gen.map (fun p -> p.Key "n") ])
            1, Gen.map2 Update.append (keyPath |> Gen.map (fun p -> p.Key "log")) (Gen.elements [ Json.int64 1L; Json.string "x" ])
            1, Gen.map (Update.append (SessionPath.OfKeys "l")) (Gen.elements [ json """{"n":5}"""; json "3" ])
        ]
    let start = Json.object [ "w", Json.object [ for k in keys -> k, json """{"n":0}""" ]; "l", Json.array [ for _ in 0..11 -> json """{"n":0}""" ] ]
    let generate = gen {
        let! count = Gen.choose (10, 200)
        let! updates = Gen.listOfLength count update
        return { Tree = start; Updates = updates }
    }
    Arb.fromGenShrink (generate, fun scenario -> shrinkList scenario.Updates |> Seq.map (fun shorter -> { scenario with Updates = shorter }))

/// The law most of the laws below state: a scenario's folded patch applies to its tree as its updates do one by one
/// (to the same text), and passes <paramref name="alsoHolds"/>. A scenario whose updates fail one by one says nothing;
/// <paramref name="succeeded"/> counts the others, so a law can check it was not vacuous.
let private foldedAppliesAsOneByOne (succeeded: int ref) (alsoHolds: Patch -> bool) (scenario: Scenario) : bool =
    match tryOneByOne scenario.Updates scenario.Tree with
    | Error _ -> true
    | Ok expected ->
        succeeded.Value <- succeeded.Value + 1
        let patch = Patch.fold scenario.Updates
        match Patch.tryApply patch scenario.Tree with
        | Ok actual ->
            claim (sameText actual expected) (fun () -> $"patch {show patch} gave {Json.serialize actual}, one by one gave {Json.serialize expected}")
            && alsoHolds patch
        | Error e -> failwith $"patch {show patch} failed: {e.Message}; one by one gave {Json.serialize expected}"

// ---------------------------------------------------------------------------------------------
// Laws
// ---------------------------------------------------------------------------------------------

/// Folds a set of a large value that a later set above it supersedes, and gives a weak reference to that value: the
/// patch's updates no longer hold it, so nothing else should (not in a frame of its own, to hold no local of it).
[<System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)>]
let private foldAway () : WeakReference * Update list =
    let value = Json.object [ for i in 0..99 -> $"k{i}", Json.String(String('x', 100)) ]
    let patch = Patch.fold [ Update.set (path "a.b") value; set "a.c" "1"; set "a" "2" ]
    WeakReference value, patch.Updates

[<Tests>]
let tests =
    testList "Patch" [
        testGuardedLawWith 20_000 "applying the folded patch equals applying the updates one by one"
        <| fun () ->
            let mutable succeeded = 0
            let mutable total = 0
            Prop.forAll scenarios (fun scenario ->
                total <- total + 1
                match tryOneByOne scenario.Updates scenario.Tree with
                | Error _ -> true
                | Ok expected ->
                    succeeded <- succeeded + 1
                    let patch = Patch.fold scenario.Updates
                    let actual = Patch.apply patch scenario.Tree
                    claim (sameText actual expected) (fun () -> $"patch {show patch} gave {Json.serialize actual}, one by one gave {Json.serialize expected}")),
            // Most sequences must apply, or the law above says little.
            fun () -> Expect.isTrue (succeeded * 5 > total * 2) $"only {succeeded} of {total} update sequences applied one by one"

        testGuardedLawWith 50_000 "applying the folded patch equals applying the updates one by one around arrays"
        <| fun () ->
            let succeeded = ref 0
            Prop.forAll arrayScenarios (foldedAppliesAsOneByOne succeeded (fun _ -> true)),
            fun () -> Expect.isGreaterThan succeeded.Value 10_000 $"only {succeeded.Value} of the update sequences applied one by one"

        testGuardedLawWith 5_000 "applying the folded patch to a new session equals applying the updates one by one"
        <| fun () ->
            let fresh = Arb.fromGenShrink (updates, shrinkList)
            let mutable succeeded = 0
            Prop.forAll fresh (fun updates ->
                match tryOneByOne updates Json.emptyObject with
                | Error _ -> true
                | Ok expected ->
                    succeeded <- succeeded + 1
                    let patch = Patch.fold updates
                    let actual = Patch.apply patch Json.emptyObject
                    claim (sameText actual expected) (fun () -> $"patch {show patch} gave {Json.serialize actual}, one by one gave {Json.serialize expected}")),
            fun () -> Expect.isGreaterThan succeeded 2_000 $"only {succeeded} of the update sequences applied one by one to a new session"

        testGuardedLaw "increments of one path add up to what applying them one by one gives"
        <| fun () ->
            let increments = gen {
                let! start = Gen.optionOf wideNumber
                let! count = Gen.choose (1, 5)
                let! bys = Gen.listOfLength count wideNumber
                let tree =
                    match start with
                    | Some n -> Json.object [ "n", Json.Number n ]
                    | None -> Json.emptyObject
                return { Tree = tree; Updates = [ for by in bys -> Update.Increment(path "n", by) ] }
            }
            let mutable succeeded = 0
            Prop.forAll (Arb.fromGenShrink (increments, fun s -> shrinkList s.Updates |> Seq.map (fun u -> { s with Updates = u }))) (fun scenario ->
                match tryOneByOne scenario.Updates scenario.Tree with
                | Error _ -> true
                | Ok expected ->
                    succeeded <- succeeded + 1
                    let patch = Patch.fold scenario.Updates
                    claim (sameText (Patch.apply patch scenario.Tree) expected) (fun () -> $"patch {show patch}")),
            fun () -> Expect.isGreaterThan succeeded 500 $"only {succeeded} increment sequences applied"

        testList "applying updates through a draft equals applying them one by one, conflicts included" [
            // PatchDraft applies a patch of three or more updates; here it gets the unfolded updates too, so that it
            // meets every order and conflict the generators make (the laws above meet it only through the fold).
            let law (name: string) (cases: int) (arb: Arbitrary<Scenario>) =
                testGuardedLawWith cases name
                <| fun () ->
                    let mutable failed = 0
                    Prop.forAll arb (fun scenario ->
                        let before = Json.serialize scenario.Tree
                        let drafted =
                            try
                                Ok(PatchDraft.apply scenario.Updates scenario.Tree)
                            with :? PathConflictException as e ->
                                Error e
                        let updates = String.Join("; ", scenario.Updates)
                        claim (Json.serialize scenario.Tree = before) (fun () -> $"{updates} changed the tree it was given")
                        && match tryOneByOne scenario.Updates scenario.Tree, drafted with
                           | Ok expected, Ok actual ->
                               claim (sameText actual expected) (fun () -> $"{updates} gave {Json.serialize actual}, one by one {Json.serialize expected}")
                           | Error expected, Error actual ->
                               failed <- failed + 1
                               claim (actual.Message = expected.Message && actual.Path = expected.Path) (fun () ->
                                   $"{updates} failed with \"{actual.Message}\", one by one with \"{expected.Message}\"")
                           | Ok expected, Error actual -> failwith $"{updates} failed with \"{actual.Message}\", one by one gave {Json.serialize expected}"
                           | Error expected, Ok actual -> failwith $"{updates} gave {Json.serialize actual}, one by one failed with \"{expected.Message}\""),
                    // Conflicts must be met, or the law says nothing of them.
                    fun () -> Expect.isGreaterThan failed 0 "no update sequence failed"
            law "mixed updates" 20_000 scenarios
            law "around arrays" 20_000 arrayScenarios
        ]

        testList "a commit's patch, applied before anything folds it, does what its folded patch does, and folds as Patch.fold does" [
            // A request's commit makes its patch without folding it (Patch.foldChecked): the memory store only applies
            // it, as recorded, and a store that writes it folds it when it asks for its updates.
            let law (name: string) (cases: int) (arb: Arbitrary<Scenario>) =
                testGuardedLawWith cases name
                <| fun () ->
                    let mutable failed = 0
                    let mutable rescued = 0
                    Prop.forAll arb (fun scenario ->
                        let recorded = Patch.foldChecked (Array.ofList scenario.Updates)
                        let updates = String.Join("; ", scenario.Updates)
                        // Whether it touches a top-level key (as a sign-in touches the user) is read from the updates
                        // as recorded, before anything folds them.
                        let keys = [
                            "absent"
                            for update in scenario.Updates do
                                match update.Path.Segments with
                                | Segment.Key key :: _ -> key
                                | _ -> ()
                        ]
                        let touchedUnfolded = keys |> List.map (fun key -> key, Patch.touchesKey key recorded)
                        let applied = Patch.tryApply recorded scenario.Tree
                        let folded = Patch.fold scenario.Updates
                        let agrees =
                            match Patch.tryApply folded scenario.Tree, applied with
                            | Ok expected, Ok actual ->
                                claim (sameText actual expected) (fun () -> $"{updates} gave {Json.serialize actual}, folded {Json.serialize expected}")
                                && match tryOneByOne scenario.Updates scenario.Tree with
                                   | Ok oneByOne ->
                                       claim (sameText actual oneByOne) (fun () ->
                                           $"{updates} gave {Json.serialize actual}, one by one {Json.serialize oneByOne}")
                                   | Error _ ->
                                       // Failed as recorded; the fold dropped the update that failed.
                                       rescued <- rescued + 1
                                       true
                            | Error expected, Error actual ->
                                failed <- failed + 1
                                claim (actual.Message = expected.Message && actual.Path = expected.Path) (fun () ->
                                    $"{updates} failed with \"{actual.Message}\", folded with \"{expected.Message}\"")
                            | Ok expected, Error actual -> failwith $"{updates} failed with \"{actual.Message}\", folded gave {Json.serialize expected}"
                            | Error expected, Ok actual -> failwith $"{updates} gave {Json.serialize actual}, folded failed with \"{expected.Message}\""
                        let touchedFolded = keys |> List.map (fun key -> key, Patch.touchesKey key folded)
                        agrees
                        && claim (touchedUnfolded = touchedFolded) (fun () -> $"{updates}: touches {touchedUnfolded} as recorded, {touchedFolded} folded")
                        && claim (recorded.IsEmpty = List.isEmpty scenario.Updates) (fun () -> $"{updates}: IsEmpty is {recorded.IsEmpty}")
                        && claim (recorded = folded && folded = recorded && hash recorded = hash folded) (fun () -> $"{updates}: not equal to {show folded}")
                        && claim (recorded.Updates = folded.Updates) (fun () -> $"{updates} folded to {show recorded}, Patch.fold to {show folded}")),
                    fun () ->
                        Expect.isGreaterThan failed 0 "no update sequence failed"
                        Expect.isGreaterThan rescued 0 "no update sequence failed as recorded and applied once folded"
            law "mixed updates" 10_000 scenarios
            law "around arrays" 10_000 arrayScenarios
        ]

        testGuardedLawWith 3_000 "over wide objects and arrays, applying the folded patch equals applying the updates one by one"
        <| fun () ->
            let succeeded = ref 0
            let isNormalized (patch: Patch) = claim (normalized patch.Updates) (fun () -> $"patch {show patch} is not normalized")
            Prop.forAll wideScenarios (foldedAppliesAsOneByOne succeeded isNormalized),
            fun () -> Expect.isGreaterThan succeeded.Value 1_000 $"only {succeeded.Value} of the update sequences applied one by one"

        testLaw "long logs of updates nesting in each other fold to a normalized patch that applies as they do one by one"
        <| fun () ->
            Prop.forAll longLogs (fun scenario ->
                let expected = oneByOne scenario.Updates scenario.Tree
                let patch = Patch.fold scenario.Updates
                match Patch.tryApply patch scenario.Tree with
                | Ok actual ->
                    claim (sameText actual expected) (fun () -> $"patch {show patch} gave {Json.serialize actual}, one by one gave {Json.serialize expected}")
                    && claim (normalized patch.Updates) (fun () -> $"patch {show patch} is not normalized")
                    && claim (Patch.fold patch.Updates = patch) (fun () -> $"patch {show patch} folded again is {show (Patch.fold patch.Updates)}")
                | Error e -> failwith $"patch {show patch} failed: {e.Message}; one by one gave {Json.serialize expected}")

        testList "a folded patch never holds two updates of related paths, except where order or creation needs both" [
            for label, arb in [ "scenarios", scenarios; "around arrays", arrayScenarios ] do
                testLaw label
                <| fun () ->
                    Prop.forAll arb (fun scenario ->
                        match tryOneByOne scenario.Updates scenario.Tree with
                        | Error _ -> true
                        | Ok _ ->
                            let patch = Patch.fold scenario.Updates
                            claim (normalized patch.Updates) (fun () -> $"patch {show patch}"))
        ]

        testList "folding a folded patch again changes nothing" [
            for label, arb in [ "scenarios", scenarios; "around arrays", arrayScenarios ] do
                testLaw label
                <| fun () ->
                    Prop.forAll arb (fun scenario ->
                        match tryOneByOne scenario.Updates scenario.Tree with
                        | Error _ -> true
                        | Ok _ ->
                            let patch = Patch.fold scenario.Updates
                            claim (Patch.fold patch.Updates = patch) (fun () -> $"patch {show patch} folded again is {show (Patch.fold patch.Updates)}"))
        ]

        testLaw "every folded patch survives a round trip through its JSON"
        <| fun () ->
            let withOddPaths =
                Gen.listOf (
                    Gen.oneof [
                        Gen.map2 Update.set anyPath jsonTree
                        Gen.map2 (fun p (k: string) -> Update.remove (SessionPath.child (Segment.Key k) p)) anyPath key
                        Gen.map2 (fun p by -> Update.Increment(p, by)) anyPath wideNumber
                    ]
                )
            let patches = Gen.oneof [ updates; withOddPaths ] |> Gen.map Patch.fold
            Prop.forAll (Arb.fromGen patches) (fun patch ->
                let text = Patch.serialize patch
                Patch.parse text = patch
                && Patch.parseUtf8 (ReadOnlySpan(Patch.toUtf8 patch)) = patch
                && Patch.ofJson (Json.parseUtf8 (ReadOnlySpan(Patch.toUtf8 patch))) = patch
                && Patch.serialize (Patch.parse text) = text)

        // ---------------------------------------------------------------------------------------------
        // The fold, case by case
        // ---------------------------------------------------------------------------------------------

        testCase "no updates fold to the empty patch"
        <| fun () ->
            Expect.isTrue ((Patch.fold []).IsEmpty) "(Patch.fold []).IsEmpty"
            Expect.equal (Patch.fold []) Patch.empty "Patch.fold []"
            Expect.equal (Patch.serialize Patch.empty) "[]" "Patch.serialize Patch.empty"
            let tree = json """{"a":1}"""
            Expect.isTrue (obj.ReferenceEquals(tree, Patch.apply Patch.empty tree)) "obj.ReferenceEquals(tree, Patch.apply Patch.empty tree)"

        testCase "a fold holds no value of the session once its updates are out"
        <| fun () ->
            // A fold's nodes and entries are kept for the thread's next fold (FoldPool): emptied, or a superseded
            // value would stay alive there for as long as the thread does.
            let weak, updates = foldAway ()
            Expect.equal updates [ set "a" "2" ] "the fold kept the last set alone"
            GC.Collect()
            GC.WaitForPendingFinalizers()
            GC.Collect()
            Expect.isFalse weak.IsAlive "the superseded value was collected"

        testCase "folds larger than a thread keeps the nodes of give what applying one by one gives, again and again"
        <| fun () ->
            // 3,000 keys make more nodes and entries than a thread's pool keeps (256): the rest are made anew.
            let updates = [
                for i in 0..2999 do
                    set $"k{i % 1500}.v{i}" (string i)
                    if i % 7 = 0 then remove $"k{(i * 3) % 1500}"
                    if i % 11 = 0 then increment $"n{i % 40}" "1"
            ]
            for round in 1..3 do
                let small = [ set "x.y" "1"; increment "x.n" "2"; remove "x.y" ]
                Expect.equal (Patch.apply (Patch.fold small) Json.emptyObject) (oneByOne small Json.emptyObject) $"round {round}: a small fold"
                Expect.equal (Patch.apply (Patch.fold updates) Json.emptyObject) (oneByOne updates Json.emptyObject) $"round {round}: the large fold"

        testCase "a later set supersedes earlier sets at and below its path"
        <| fun () ->
            let patch = Patch.fold [ set "a.b" "1"; set "a.c.d" "2"; set "x" "0"; set "a" """{"z":3}""" ]
            Expect.equal (patch.Updates: Update list) ([ set "a" """{"z":3}"""; set "x" "0" ]) "patch.Updates"
            Expect.equal ((Patch.fold [ set "a" "1"; set "a" "2" ]).Updates: Update list) ([ set "a" "2" ]) "(Patch.fold [ set 'a' '1'; set 'a' '2' ]).Updates"

        testCase "a later set below an earlier set is folded into its value"
        <| fun () ->
            let patch = Patch.fold [ set "a" """{"b":1}"""; set "a.c" "2"; set "a.b" "3"; remove "a.c" ]
            Expect.equal (patch.Updates: Update list) ([ set "a" """{"b":3}""" ]) "patch.Updates"
            Expect.equal
                ((Patch.fold [ set "a" "[1]"; set "a[1]" "2" ]).Updates: Update list)
                ([ set "a" "[1,2]" ])
                "(Patch.fold [ set 'a' '[1]'; set 'a[1]' '2' ]).Updates"

        testCase "increments of one path add up"
        <| fun () ->
            Expect.equal
                ((Patch.fold [ increment "n" "1"; increment "n" "2.5" ]).Updates: Update list)
                ([ increment "n" "3.5" ])
                "(Patch.fold [ increment 'n' '1'; increment 'n' '2.5' ]).Updates"
            Expect.equal
                ((Patch.fold [ set "n" "1"; increment "n" "1.10" ]).Updates: Update list)
                ([ set "n" "2.10" ])
                "(Patch.fold [ set 'n' '1'; increment 'n' '1.10' ]).Updates"
            Expect.equal
                ((Patch.fold [ set "a" "{}"; increment "a.n" "2"; increment "a.n" "3" ]).Updates: Update list)
                ([ set "a" """{"n":5}""" ])
                "(Patch.fold [ set 'a' '()'; increment 'a.n' '2'; increment 'a.n' '3..."
            Expect.equal
                ((Patch.fold [ increment "n" "1"; increment "m" "1"; increment "m" "1" ]).Updates: Update list)
                ([ increment "n" "1"; increment "m" "2" ])
                "(Patch.fold [ increment 'n' '1'; increment 'm' '1'; increment 'm' '..."
            // n was removed first: it is set again at the end of the object, where applying one by one leaves it.
            Expect.equal
                ((Patch.fold [ remove "n"; increment "n" "1"; increment "n" "2" ]).Updates: Update list)
                ([ remove "n"; set "n" "3" ])
                "(Patch.fold [ remove 'n'; increment 'n' '1'; increment 'n' '2' ]).U..."

        testCase "a key removed, set again below and then set keeps the place applying one by one gives it: the end of its object"
        <| fun () ->
            let tree = json """{"w":{"k0":{"n":0},"k1":1}}"""
            let updates = [ set "w.k0" """{"n":1}"""; remove "w.k0"; increment "w.k0.n" "-2"; set "w.k0" "{}" ]
            let expected = oneByOne updates tree
            Expect.equal (Json.serialize expected) """{"w":{"k1":1,"k0":{}}}""" "one by one"
            let patch = Patch.fold updates
            Expect.equal (Json.serialize (Patch.apply patch tree)) (Json.serialize expected) $"the patch {show patch}"

        testCase "a set then a remove of the same path leaves a remove"
        <| fun () ->
            Expect.equal ((Patch.fold [ set "a" "1"; remove "a" ]).Updates: Update list) ([ remove "a" ]) "(Patch.fold [ set 'a' '1'; remove 'a' ]).Updates"
            Expect.equal
                ((Patch.fold [ set "a.b" "1"; increment "a.c" "1"; remove "a" ]).Updates: Update list)
                ([ remove "a" ])
                "(Patch.fold [ set 'a.b' '1'; increment 'a.c' '1'; remove 'a' ]).Upd..."
            Expect.equal
                ((Patch.fold [ increment "a" "1"; remove "a" ]).Updates: Update list)
                ([ remove "a" ])
                "(Patch.fold [ increment 'a' '1'; remove 'a' ]).Updates"
            Expect.equal
                ((Patch.fold [ set "a" "1"; set "b" "2"; remove "a" ]).Updates: Update list)
                ([ remove "a"; set "b" "2" ])
                "(Patch.fold [ set 'a' '1'; set 'b' '2'; remove 'a' ]).Updates"

        testCase "a remove that supersedes the creation of its parents keeps them created"
        <| fun () ->
            let updates = [ set "a.b" "1"; remove "a.b" ]
            let patch = Patch.fold updates
            Expect.equal (patch.Updates: Update list) ([ Update.set (path "a.b") Json.Null; remove "a.b" ]) "patch.Updates"
            Expect.equal (Patch.apply patch Json.emptyObject) (json """{"a":{}}""") "Patch.apply patch Json.emptyObject"
            Expect.equal (Patch.apply patch Json.emptyObject) (oneByOne updates Json.emptyObject) "Patch.apply patch Json.emptyObject"
            // A remove of something never created stays a bare remove.
            Expect.equal
                ((Patch.fold [ remove "a.b.c"; remove "a.b" ]).Updates: Update list)
                ([ remove "a.b" ])
                "(Patch.fold [ remove 'a.b.c'; remove 'a.b' ]).Updates"

        testCase "a remove then a set below it becomes a remove and a set of the object, which moves to the end"
        <| fun () ->
            let patch = Patch.fold [ remove "a"; set "a.b" "1" ]
            Expect.equal (patch.Updates: Update list) ([ remove "a"; set "a" """{"b":1}""" ]) "patch.Updates"
            Expect.equal (Json.serialize (Patch.apply patch (json """{"a":{"old":true},"x":0}"""))) """{"x":0,"a":{"b":1}}""" "the text, key order included"
            Expect.equal
                ((Patch.fold [ remove "a"; set "a[0]" "7" ]).Updates: Update list)
                ([ remove "a"; set "a" "[7]" ])
                "(Patch.fold [ remove 'a'; set 'a[0]' '7' ]).Updates"

        testCase "folding keeps key order: a key removed and set again ends up last, as applying one by one leaves it"
        <| fun () ->
            let tree = json """{"a":0,"b":2}"""
            let updates = [ remove "a"; set "a" "1" ]
            Expect.equal (Json.serialize (oneByOne updates tree)) """{"b":2,"a":1}""" "one by one"
            Expect.equal (Json.serialize (Patch.apply (Patch.fold updates) tree)) """{"b":2,"a":1}""" "the folded patch"
            // The same when the removal superseded an update that created the key's containers first.
            let nested = [ set "c.x" "1"; set "c.y" "2"; remove "c.x"; set "c.x" "3" ]
            Expect.equal
                (Json.serialize (Patch.apply (Patch.fold nested) Json.emptyObject))
                (Json.serialize (oneByOne nested Json.emptyObject))
                "containers created first, the key moved last"

        testCase "appends add up in order, into a set of the array, and stay apart from updates below the array"
        <| fun () ->
            let append (p: string) (value: string) = Update.Append(path p, json value)
            Expect.equal ((Patch.fold [ append "items" "1"; append "items" "2" ]).Updates: Update list) [ append "items" "1"; append "items" "2" ] "two appends"
            Expect.equal ((Patch.fold [ set "items" "[0]"; append "items" "1" ]).Updates: Update list) [ set "items" "[0,1]" ] "into a set"
            Expect.equal ((Patch.fold [ remove "items"; append "items" "1" ]).Updates: Update list) [ remove "items"; set "items" "[1]" ] "after a remove"
            // Setting index n of n items also appends, so the appends around it keep their places.
            let around = [ append "items" "\"z\""; set "items[2]" "\"w\""; append "items" "\"q\"" ]
            let stored = json """{"items":["a"]}"""
            Expect.equal (Json.serialize (Patch.apply (Patch.fold around) stored)) """{"items":["a","z","w","q"]}""" "appends around an index set"
            Expect.equal (Patch.fold around).Updates around "kept apart"
            // Appending to a value that is not an array conflicts, naming the path.
            let e = throws<PathConflictException>(fun () -> Patch.apply (Patch.fold [ append "n" "1" ]) (json """{"n":5}""") |> ignore)
            Expect.equal e.Message "Cannot append to 'n': it holds a number, not an array." "the conflict's message"
            Expect.equal (Patch.parse (Patch.serialize (Patch.fold around))) (Patch.fold around) "an append's JSON round trip"

        testCase "removing the root becomes setting the root to an empty object"
        <| fun () ->
            Expect.equal
                ((Patch.fold [ Update.Remove SessionPath.root ]).Updates: Update list)
                ([ Update.set SessionPath.root Json.emptyObject ])
                "(Patch.fold [ Update.Remove SessionPath.root ]).Updates"
            let patch = Patch.fold [ set "x" "1"; Update.Remove SessionPath.root; set "y" "2" ]
            Expect.equal (patch.Updates: Update list) ([ Update.set SessionPath.root (json """{"y":2}""") ]) "patch.Updates"
            Expect.equal (Patch.apply patch (json """{"old":[1,2,3]}""")) (json """{"y":2}""") "Patch.apply patch (json '''('old':[1,2,3])''')"
            Expect.equal
                (Update.apply (Update.remove SessionPath.root) (json "[1]"))
                Json.emptyObject
                "Update.apply (Update.remove SessionPath.root) (json '[1]')"

        testCase "a set at an index is not moved before the items it needs"
        <| fun () ->
            // a[2] only exists once a[1] was appended: the patch must keep that order.
            let tree = json """{"a":[0]}"""
            let updates = [ remove "a[2].k.x"; set "a[1]" "1"; set "a[2].k" "5" ]
            Expect.equal (oneByOne updates tree) (json """{"a":[0,1,{"k":5}]}""") "oneByOne updates tree"
            Expect.equal (Patch.apply (Patch.fold updates) tree) (oneByOne updates tree) "Patch.apply (Patch.fold updates) tree"

        testCase "a set below a remove is not moved before the items it needs"
        <| fun () ->
            let tree = json """{"a":[0]}"""
            let updates = [ remove "a[2].k"; set "a[1]" "1"; set "a[2].k.x" "5" ]
            Expect.equal (oneByOne updates tree) (json """{"a":[0,1,{"k":{"x":5}}]}""") "oneByOne updates tree"
            Expect.equal (Patch.apply (Patch.fold updates) tree) (oneByOne updates tree) "Patch.apply (Patch.fold updates) tree"

        testCase "a remove that keeps parents created is not moved before the items it needs"
        <| fun () ->
            let tree = json """{"a":[0]}"""
            let updates = [ remove "a[2].k.x"; set "a[1]" "1"; set "a[2].k.y" "2"; remove "a[2].k" ]
            Expect.equal (oneByOne updates tree) (json """{"a":[0,1,{}]}""") "oneByOne updates tree"
            Expect.equal (Patch.apply (Patch.fold updates) tree) (oneByOne updates tree) "Patch.apply (Patch.fold updates) tree"

        testCase "a remove below an increment or an increment above a remove leaves only the increment"
        <| fun () ->
            Expect.equal
                ((Patch.fold [ remove "p.x"; increment "p" "1" ]).Updates: Update list)
                ([ increment "p" "1" ])
                "(Patch.fold [ remove 'p.x'; increment 'p' '1' ]).Updates"
            Expect.equal
                ((Patch.fold [ increment "p" "1"; remove "p.x" ]).Updates: Update list)
                ([ increment "p" "1" ])
                "(Patch.fold [ increment 'p' '1'; remove 'p.x' ]).Updates"
            Expect.equal
                (Patch.apply (Patch.fold [ remove "p.x"; increment "p" "1" ]) (json """{"p":3}"""))
                (json """{"p":4}""")
                "Patch.apply (Patch.fold [ remove 'p.x'; increment 'p' '1' ]) (json ..."

        testCase "increments far apart in scale fold to what applying them one by one gives"
        <| fun () ->
            let tree = json """{"n":-10e4067}"""
            let updates = [ increment "n" "409"; increment "n" "91e-1277" ]
            Expect.equal (Patch.apply (Patch.fold updates) tree) (oneByOne updates tree) "Patch.apply (Patch.fold updates) tree"

        testCase "increments that cannot be added exactly fold, and the patch fails as applying them one by one does"
        <| fun () ->
            let updates = [ increment "n" "1e5000"; increment "n" "1" ]
            let patch = Patch.fold updates
            throws<PathConflictException>(fun () -> oneByOne updates Json.emptyObject |> ignore) |> ignore
            let ex = throws<PathConflictException>(fun () -> Patch.apply patch Json.emptyObject |> ignore)
            Expect.equal ex.Path (path "n") "ex.Path"

        // ---------------------------------------------------------------------------------------------
        // Applying updates
        // ---------------------------------------------------------------------------------------------

        testCase "a lone surrogate is refused wherever it stands in a long string or key, and a surrogate pair is not one"
        <| fun () ->
            let high = "😀".Substring(0, 1)
            let low = "😀".Substring(1, 1)
            // Long text is searched for its first surrogate, short text scanned: both lengths, ASCII and not.
            for filler in [ String('é', 40); String('a', 40); "é" ] do
                for text, lone in
                    [
                        filler + high, true
                        high + filler, true
                        filler + low + filler, true
                        filler + low + high + filler, true
                        filler + "😀" + filler, false
                        filler + "😀" + high, true
                        filler + "😀😀", false
                        filler, false
                    ] do
                    let refused (update: Update) =
                        try
                            Update.validate update
                            false
                        with :? ArgumentException ->
                            true
                    let shown = String.Join(" ", text |> Seq.map (fun c -> $"{int c:X4}") |> Seq.distinct)
                    Expect.equal (refused (Update.set (path "k") (Json.String text))) lone $"a string of {text.Length} chars ({shown})"
                    Expect.equal (refused (Update.set (SessionPath.ofKeys [ text ]) Json.Null)) lone $"a key of {text.Length} chars ({shown})"

        testCase "removing a missing path is a no-op"
        <| fun () ->
            let tree = json """{"a":{"b":1},"s":"x","arr":[1]}"""
            for p in [ "z"; "a.z"; "a.b.c"; "z.y.x"; "s.x"; "arr.x"; "arr[3].x" ] do
                Expect.isTrue (obj.ReferenceEquals(tree, Update.apply (remove p) tree)) p
                Expect.isTrue (obj.ReferenceEquals(tree, Patch.apply (Patch.fold [ remove p ]) tree)) p

        testCase "an update removes object keys only"
        <| fun () ->
            throws<ArgumentException>(fun () -> Update.remove (path "a[0]") |> ignore) |> ignore
            let ex = throws<PathConflictException>(fun () -> Update.apply (Update.Remove(path "a[0]")) (json """{"a":[1]}""") |> ignore)
            Expect.equal ex.Path (path "a[0]") "ex.Path"
            Expect.equal
                (Update.apply (remove "a[0].b") (json """{"a":[{"b":1}]}"""))
                (json """{"a":[{}]}""")
                "Update.apply (remove 'a[0].b') (json '''('a':[('b':1)])''')"

        testCase "incrementing a string is a conflict that names the path"
        <| fun () ->
            let tree = json """{"s":"text","o":{}}"""
            let ex = throws<PathConflictException>(fun () -> Update.apply (increment "s" "1") tree |> ignore)
            Expect.equal ex.Path (path "s") "ex.Path"
            Expect.stringContains ex.Message "'s'" "ex.Message"
            Expect.stringContains ex.Message "a string" "ex.Message"
            throws<PathConflictException>(fun () -> Update.apply (increment "o" "1") tree |> ignore) |> ignore
            match Patch.tryApply (Patch.fold [ set "x" "1"; increment "s" "1" ]) tree with
            | Ok value -> failwith $"the increment applied: {Json.serialize value}"
            | Error e -> Expect.equal e.Path (path "s") "e.Path"

        testCase "incrementing a missing value starts from zero"
        <| fun () ->
            Expect.equal (Update.apply (increment "a.b" "2") Json.emptyObject) (json """{"a":{"b":2}}""") "Update.apply (increment 'a.b' '2') Json.emptyObject"
            Expect.equal
                (Update.apply (Update.increment (path "c[0]") 1.5m) Json.emptyObject)
                (json """{"c":[1.5]}""")
                "Update.apply (Update.increment (path 'c[0]') 1.5m) Json.emptyObject"

        testCase "numbers that do not fit a double survive an increment"
        <| fun () ->
            let tree = json """{"big":9007199254740993,"huge":1e400,"pi":3.14159265358979323846264338327950288,"price":1.10}"""
            let after = Patch.apply (Patch.fold [ increment "big" "1"; increment "huge" "1"; increment "pi" "1"; Update.increment (path "price") 1m ]) tree
            Expect.equal
                (Json.serialize after)
                ("{\"big\":9007199254740994,\"huge\":1" + String('0', 399) + "1,\"pi\":4.14159265358979323846264338327950288,\"price\":2.10}")
                "Json.serialize after"

        // (Json values are immutable, so "the tree is left as it was" cannot fail; what can is the
        // outcome: a conflict refuses the whole patch, at the update that conflicts.)
        testCase "a conflicting patch is refused whole, at the update that conflicts, as applying one by one is"
        <| fun () ->
            let tree = json """{"n":"text"}"""
            let updates = [ set "a.b" "1"; increment "n" "1"; set "z" "2" ]
            let patch = Patch.fold updates
            let refused = throws<PathConflictException>(fun () -> Patch.apply patch tree |> ignore)
            Expect.equal refused.Path (path "n") "Patch.apply names the update that conflicts."
            match Patch.tryApply patch tree with
            | Ok partial -> failtestf "The conflicting patch applied (in part?): %s" (Json.serialize partial)
            | Error e -> Expect.equal e.Path (path "n") "Patch.tryApply names the update that conflicts."
            let oneByOne = throws<PathConflictException>(fun () -> oneByOne updates tree |> ignore)
            Expect.equal oneByOne.Path refused.Path "Applied one by one, the updates fail at the same path."

        // ---------------------------------------------------------------------------------------------
        // The JSON form
        // ---------------------------------------------------------------------------------------------

        testCase "a patch is written as an array of operations"
        <| fun () ->
            let patch = Patch.fold [ set "a.b" "1"; remove "c"; increment "d[0]" "2.50"; set "e[\"x.y\"]" """{"日本":null}""" ]
            Expect.equal
                (Patch.serialize patch)
                ("""[["set",["a","b"],1],["remove",["c"]],["increment",["d",0],2.50],["set",["e","x.y"],{"日本":null}]]""")
                "Patch.serialize patch"
            Expect.equal (Patch.parse (Patch.serialize patch)) patch "Patch.parse (Patch.serialize patch)"
            Expect.equal (string patch) ("set a.b = 1; remove c; increment d[0] by 2.50; set e[\"x.y\"] = {\"日本\":null}") "string patch"

        testCase "JSON that is not a patch is refused with a JsonException"
        <| fun () ->
            for text in
                [
                    "{}"
                    "1"
                    "[1]"
                    """[["frobnicate",["a"]]]"""
                    """[["set","a",1]]"""
                    """[["set",[-1],1]]"""
                    """[["set",[1.5],1]]"""
                    """[["set",[null],1]]"""
                    """[["increment",["a"],"x"]]"""
                    """[["remove",["a"],1]]"""
                    """[["set",["a"]]]"""
                    """[["set",[2147483648],1]]"""
                    "["
                ] do
                throwsAny<JsonException>(fun () -> Patch.parse text |> ignore) |> ignore

        testCase "a patch whose value nests Json.MaxDepth deep survives its JSON round trip"
        <| fun () ->
            let deepest = json (String.replicate Json.MaxDepth "[" + String.replicate Json.MaxDepth "]")
            let patch = Patch.fold [ Update.set SessionPath.root deepest ]
            Expect.equal (Patch.parse (Patch.serialize patch)) patch "Patch.parse (Patch.serialize patch)"
            Expect.equal (Patch.parseUtf8 (ReadOnlySpan(Patch.toUtf8 patch))) patch "Patch.parseUtf8 (ReadOnlySpan(Patch.toUtf8 patch))"
            // A value deeper than that is refused when folded, before anything is written, not found unreadable later.
            let e = throws<ArgumentException>(fun () -> Patch.fold [ Update.set SessionPath.root (Json.array [ deepest ]) ] |> ignore)
            Expect.stringContains e.Message "1025 levels deep" "the message says how deep"
            throwsAny<JsonException>(fun () -> Patch.parse ("[[\"set\",[]," + String.replicate 1025 "[" + String.replicate 1025 "]" + "]]") |> ignore) |> ignore
            let longest = SessionPath.ofKeys (Array.create SessionPath.MaxSegments "k")
            let deepPath = Patch.fold [ Update.set longest (Json.string "v"); Update.remove (SessionPath.ofKeys (Array.create SessionPath.MaxSegments "j")) ]
            Expect.equal (Patch.parse (Patch.serialize deepPath)) deepPath "Patch.parse (Patch.serialize deepPath)"

        testCase "a patch read from JSON is checked as a folded one is: nothing deeper than Json.MaxDepth, no lone surrogate"
        <| fun () ->
            // A path of Json.MaxDepth keys holding an object: one level deeper than any store keeps. The Redis and
            // PostgreSQL stores would write it node by node and then refuse it at every load.
            let path = "[" + String.concat "," (List.replicate Json.MaxDepth "\"k\"") + "]"
            for text in [ $"[[\"set\",{path},{{\"a\":1}}]]"; $"[[\"append\",{path},1]]" ] do
                let e = throws<JsonException>(fun () -> Patch.parse text |> ignore)
                Expect.stringContains e.Message "1025 levels deep" "the message says how deep"
                Expect.isTrue (e.InnerException :? ArgumentException) "the check's own exception is kept"
            // JSON text cannot hold a lone surrogate (the parser refuses its escape), a tree made in code can.
            let lone = Json.array [ Json.array [ Json.string "set"; Json.array [ Json.string (string (char 0xD800)) ]; Json.int64 1L ] ]
            let e = throws<JsonException>(fun () -> Patch.ofJson lone |> ignore)
            Expect.stringContains e.Message "lone" "a key with a lone surrogate"
            // The deepest change a fold lets through reads back.
            let deepest = $"[[\"set\",{path},1]]"
            Expect.equal (Patch.serialize (Patch.parse deepest)) deepest "the deepest change"
    ]
