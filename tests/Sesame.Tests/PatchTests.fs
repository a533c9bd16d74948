module Sesame.Tests.PatchTests

open Sesame
open Sesame.Tests.Generators
open System
open System.Text.Json
open FsCheck
open FsCheck.FSharp
open Xunit

let private set (p: string) (value: string) = Update.set (path p) (json value)
let private remove (p: string) = Update.remove (path p)
let private increment (p: string) (by: string) = Update.Increment(path p, JsonNumber.Parse by)

/// Applies updates one by one, as a request would see them.
let private oneByOne (updates: Update list) (tree: Json) =
    List.fold (fun t u -> Update.apply u t) tree updates

let private tryOneByOne (updates: Update list) (tree: Json) =
    try Ok(oneByOne updates tree) with :? PathConflictException as e -> Error e

/// Whether one path is the same as, or an ancestor of, the other.
let private related (a: Path) (b: Path) = Path.isPrefixOf a b || Path.isPrefixOf b a

/// No two updates touch related paths, except `set p null` immediately followed by `remove p`.
let rec private normalized (updates: Update list) =
    match updates with
    | Update.Set(p, Json.Null) :: Update.Remove q :: rest when p = q ->
        rest |> List.forall (fun u -> not (related p u.Path)) && normalized rest
    | u :: rest -> rest |> List.forall (fun v -> not (related u.Path v.Path)) && normalized rest
    | [] -> true

let private show (patch: Patch) = string patch

// ---------------------------------------------------------------------------------------------
// Laws
// ---------------------------------------------------------------------------------------------

[<Fact>]
let ``applying the folded patch equals applying the updates one by one`` () =
    let mutable succeeded = 0
    let mutable total = 0
    checkWith 20_000 (Prop.forAll scenarios (fun scenario ->
        total <- total + 1
        match tryOneByOne scenario.Updates scenario.Tree with
        | Error _ -> true
        | Ok expected ->
            succeeded <- succeeded + 1
            let patch = Patch.fold scenario.Updates
            let actual = Patch.apply patch scenario.Tree
            claim (actual = expected) (fun () -> $"patch {show patch} gave {Json.serialize actual}, one by one gave {Json.serialize expected}")))
    // Most sequences must apply, or the law above says little.
    Assert.True(succeeded * 5 > total * 2, $"only {succeeded} of {total} update sequences applied one by one")

[<Fact>]
let ``applying the folded patch equals applying the updates one by one around arrays`` () =
    let mutable succeeded = 0
    checkWith 50_000 (Prop.forAll arrayScenarios (fun scenario ->
        match tryOneByOne scenario.Updates scenario.Tree with
        | Error _ -> true
        | Ok expected ->
            succeeded <- succeeded + 1
            let patch = Patch.fold scenario.Updates
            match Patch.tryApply patch scenario.Tree with
            | Ok actual -> claim (actual = expected) (fun () -> $"patch {show patch} gave {Json.serialize actual}, one by one gave {Json.serialize expected}")
            | Error e -> failwith $"patch {show patch} failed: {e.Message}; one by one gave {Json.serialize expected}"))
    Assert.True(succeeded > 10_000, $"only {succeeded} of the update sequences applied one by one")

[<Fact>]
let ``applying the folded patch to a new session equals applying the updates one by one`` () =
    let fresh = Arb.fromGenShrink (updates, shrinkList)
    checkWith 5_000 (Prop.forAll fresh (fun updates ->
        match tryOneByOne updates Json.emptyObject with
        | Error _ -> true
        | Ok expected ->
            let patch = Patch.fold updates
            let actual = Patch.apply patch Json.emptyObject
            claim (actual = expected) (fun () -> $"patch {show patch} gave {Json.serialize actual}, one by one gave {Json.serialize expected}")))

[<Fact>]
let ``increments of one path add up to what applying them one by one gives`` () =
    let increments =
        gen {
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
    check (Prop.forAll (Arb.fromGenShrink (increments, fun s -> shrinkList s.Updates |> Seq.map (fun u -> { s with Updates = u }))) (fun scenario ->
        match tryOneByOne scenario.Updates scenario.Tree with
        | Error _ -> true
        | Ok expected ->
            succeeded <- succeeded + 1
            let patch = Patch.fold scenario.Updates
            claim (Patch.apply patch scenario.Tree = expected) (fun () -> $"patch {show patch}")))
    Assert.True(succeeded > 500, $"only {succeeded} increment sequences applied")

[<Fact>]
let ``a folded patch never holds two updates of related paths, except set null then remove`` () =
    for arb in [ scenarios; arrayScenarios ] do
        check (Prop.forAll arb (fun scenario ->
            match tryOneByOne scenario.Updates scenario.Tree with
            | Error _ -> true
            | Ok _ ->
                let patch = Patch.fold scenario.Updates
                claim (normalized patch.Updates) (fun () -> $"patch {show patch}")))

[<Fact>]
let ``folding a folded patch again changes nothing`` () =
    for arb in [ scenarios; arrayScenarios ] do
        check (Prop.forAll arb (fun scenario ->
            match tryOneByOne scenario.Updates scenario.Tree with
            | Error _ -> true
            | Ok _ ->
                let patch = Patch.fold scenario.Updates
                claim (Patch.fold patch.Updates = patch) (fun () -> $"patch {show patch} folded again is {show (Patch.fold patch.Updates)}")))

[<Fact>]
let ``every folded patch survives a round trip through its JSON`` () =
    let withOddPaths =
        Gen.listOf (
            Gen.oneof [ Gen.map2 Update.set anyPath jsonTree
                        Gen.map2 (fun p (k: string) -> Update.remove (Path.child (Segment.Key k) p)) anyPath key
                        Gen.map2 (fun p by -> Update.Increment(p, by)) anyPath wideNumber ])
    let patches = Gen.oneof [ updates; withOddPaths ] |> Gen.map Patch.fold
    check (Prop.forAll (Arb.fromGen patches) (fun patch ->
        let text = Patch.serialize patch
        Patch.parse text = patch
        && Patch.parseUtf8 (ReadOnlySpan(Patch.toUtf8 patch)) = patch
        && Patch.ofJson (Json.parseUtf8 (ReadOnlySpan(Patch.toUtf8 patch))) = patch
        && Patch.serialize (Patch.parse text) = text))

// ---------------------------------------------------------------------------------------------
// The fold, case by case
// ---------------------------------------------------------------------------------------------

[<Fact>]
let ``no updates fold to the empty patch`` () =
    Assert.True((Patch.fold []).IsEmpty)
    Assert.Equal(Patch.empty, Patch.fold [])
    Assert.Equal("[]", Patch.serialize Patch.empty)
    let tree = json """{"a":1}"""
    Assert.True(obj.ReferenceEquals(tree, Patch.apply Patch.empty tree))

[<Fact>]
let ``a later set supersedes earlier sets at and below its path`` () =
    let patch = Patch.fold [ set "a.b" "1"; set "a.c.d" "2"; set "x" "0"; set "a" """{"z":3}""" ]
    Assert.Equal<Update list>([ set "a" """{"z":3}"""; set "x" "0" ], patch.Updates)
    Assert.Equal<Update list>([ set "a" "2" ], (Patch.fold [ set "a" "1"; set "a" "2" ]).Updates)

[<Fact>]
let ``a later set below an earlier set is folded into its value`` () =
    let patch = Patch.fold [ set "a" """{"b":1}"""; set "a.c" "2"; set "a.b" "3"; remove "a.c" ]
    Assert.Equal<Update list>([ set "a" """{"b":3}""" ], patch.Updates)
    Assert.Equal<Update list>([ set "a" "[1,2]" ], (Patch.fold [ set "a" "[1]"; set "a[1]" "2" ]).Updates)

[<Fact>]
let ``increments of one path add up`` () =
    Assert.Equal<Update list>([ increment "n" "3.5" ], (Patch.fold [ increment "n" "1"; increment "n" "2.5" ]).Updates)
    Assert.Equal<Update list>([ set "n" "2.10" ], (Patch.fold [ set "n" "1"; increment "n" "1.10" ]).Updates)
    Assert.Equal<Update list>([ set "a" """{"n":5}""" ], (Patch.fold [ set "a" "{}"; increment "a.n" "2"; increment "a.n" "3" ]).Updates)
    Assert.Equal<Update list>(
        [ increment "n" "1"; increment "m" "2" ],
        (Patch.fold [ increment "n" "1"; increment "m" "1"; increment "m" "1" ]).Updates)
    Assert.Equal<Update list>([ set "n" "3" ], (Patch.fold [ remove "n"; increment "n" "1"; increment "n" "2" ]).Updates)

[<Fact>]
let ``a set then a remove of the same path leaves a remove`` () =
    Assert.Equal<Update list>([ remove "a" ], (Patch.fold [ set "a" "1"; remove "a" ]).Updates)
    Assert.Equal<Update list>([ remove "a" ], (Patch.fold [ set "a.b" "1"; increment "a.c" "1"; remove "a" ]).Updates)
    Assert.Equal<Update list>([ remove "a" ], (Patch.fold [ increment "a" "1"; remove "a" ]).Updates)
    Assert.Equal<Update list>([ remove "a"; set "b" "2" ], (Patch.fold [ set "a" "1"; set "b" "2"; remove "a" ]).Updates)

[<Fact>]
let ``a remove that supersedes the creation of its parents keeps them created`` () =
    let updates = [ set "a.b" "1"; remove "a.b" ]
    let patch = Patch.fold updates
    Assert.Equal<Update list>([ Update.set (path "a.b") Json.Null; remove "a.b" ], patch.Updates)
    Assert.Equal(json """{"a":{}}""", Patch.apply patch Json.emptyObject)
    Assert.Equal(oneByOne updates Json.emptyObject, Patch.apply patch Json.emptyObject)
    // A remove of something never created stays a bare remove.
    Assert.Equal<Update list>([ remove "a.b" ], (Patch.fold [ remove "a.b.c"; remove "a.b" ]).Updates)

[<Fact>]
let ``a remove then a set below it becomes a set of the object`` () =
    let patch = Patch.fold [ remove "a"; set "a.b" "1" ]
    Assert.Equal<Update list>([ set "a" """{"b":1}""" ], patch.Updates)
    Assert.Equal(json """{"a":{"b":1},"x":0}""", Patch.apply patch (json """{"a":{"old":true},"x":0}"""))
    Assert.Equal<Update list>([ set "a" "[7]" ], (Patch.fold [ remove "a"; set "a[0]" "7" ]).Updates)

[<Fact>]
let ``removing the root becomes setting the root to an empty object`` () =
    Assert.Equal<Update list>([ Update.set Path.root Json.emptyObject ], (Patch.fold [ Update.Remove Path.root ]).Updates)
    let patch = Patch.fold [ set "x" "1"; Update.Remove Path.root; set "y" "2" ]
    Assert.Equal<Update list>([ Update.set Path.root (json """{"y":2}""") ], patch.Updates)
    Assert.Equal(json """{"y":2}""", Patch.apply patch (json """{"old":[1,2,3]}"""))
    Assert.Equal(Json.emptyObject, Update.apply (Update.remove Path.root) (json "[1]"))

[<Fact>]
let ``a set at an index is not moved before the items it needs`` () =
    // a[2] only exists once a[1] was appended: the patch must keep that order.
    let tree = json """{"a":[0]}"""
    let updates = [ remove "a[2].k.x"; set "a[1]" "1"; set "a[2].k" "5" ]
    Assert.Equal(json """{"a":[0,1,{"k":5}]}""", oneByOne updates tree)
    Assert.Equal(oneByOne updates tree, Patch.apply (Patch.fold updates) tree)

[<Fact>]
let ``a set below a remove is not moved before the items it needs`` () =
    let tree = json """{"a":[0]}"""
    let updates = [ remove "a[2].k"; set "a[1]" "1"; set "a[2].k.x" "5" ]
    Assert.Equal(json """{"a":[0,1,{"k":{"x":5}}]}""", oneByOne updates tree)
    Assert.Equal(oneByOne updates tree, Patch.apply (Patch.fold updates) tree)

[<Fact>]
let ``a remove that keeps parents created is not moved before the items it needs`` () =
    let tree = json """{"a":[0]}"""
    let updates = [ remove "a[2].k.x"; set "a[1]" "1"; set "a[2].k.y" "2"; remove "a[2].k" ]
    Assert.Equal(json """{"a":[0,1,{}]}""", oneByOne updates tree)
    Assert.Equal(oneByOne updates tree, Patch.apply (Patch.fold updates) tree)

[<Fact>]
let ``a remove below an increment or an increment above a remove leaves only the increment`` () =
    Assert.Equal<Update list>([ increment "p" "1" ], (Patch.fold [ remove "p.x"; increment "p" "1" ]).Updates)
    Assert.Equal<Update list>([ increment "p" "1" ], (Patch.fold [ increment "p" "1"; remove "p.x" ]).Updates)
    Assert.Equal(json """{"p":4}""", Patch.apply (Patch.fold [ remove "p.x"; increment "p" "1" ]) (json """{"p":3}"""))

[<Fact>]
let ``increments far apart in scale fold to what applying them one by one gives`` () =
    let tree = json """{"n":-10e4067}"""
    let updates = [ increment "n" "409"; increment "n" "91e-1277" ]
    Assert.Equal(oneByOne updates tree, Patch.apply (Patch.fold updates) tree)

[<Fact>]
let ``increments that cannot be added exactly fold, and the patch fails as applying them one by one does`` () =
    let updates = [ increment "n" "1e5000"; increment "n" "1" ]
    let patch = Patch.fold updates
    Assert.Throws<PathConflictException>(fun () -> oneByOne updates Json.emptyObject |> ignore) |> ignore
    let ex = Assert.Throws<PathConflictException>(fun () -> Patch.apply patch Json.emptyObject |> ignore)
    Assert.Equal(path "n", ex.Path)

// ---------------------------------------------------------------------------------------------
// Applying updates
// ---------------------------------------------------------------------------------------------

[<Fact>]
let ``removing a missing path is a no-op`` () =
    let tree = json """{"a":{"b":1},"s":"x","arr":[1]}"""
    for p in [ "z"; "a.z"; "a.b.c"; "z.y.x"; "s.x"; "arr.x"; "arr[3].x" ] do
        Assert.True(obj.ReferenceEquals(tree, Update.apply (remove p) tree), p)
        Assert.True(obj.ReferenceEquals(tree, Patch.apply (Patch.fold [ remove p ]) tree), p)

[<Fact>]
let ``an update removes object keys only`` () =
    Assert.Throws<ArgumentException>(fun () -> Update.remove (path "a[0]") |> ignore) |> ignore
    let ex = Assert.Throws<PathConflictException>(fun () -> Update.apply (Update.Remove(path "a[0]")) (json """{"a":[1]}""") |> ignore)
    Assert.Equal(path "a[0]", ex.Path)
    Assert.Equal(json """{"a":[{}]}""", Update.apply (remove "a[0].b") (json """{"a":[{"b":1}]}"""))

[<Fact>]
let ``incrementing a string is a conflict that names the path`` () =
    let tree = json """{"s":"text","o":{}}"""
    let ex = Assert.Throws<PathConflictException>(fun () -> Update.apply (increment "s" "1") tree |> ignore)
    Assert.Equal(path "s", ex.Path)
    Assert.Contains("'s'", ex.Message)
    Assert.Contains("a string", ex.Message)
    Assert.Throws<PathConflictException>(fun () -> Update.apply (increment "o" "1") tree |> ignore) |> ignore
    match Patch.tryApply (Patch.fold [ set "x" "1"; increment "s" "1" ]) tree with
    | Ok value -> failwith $"the increment applied: {Json.serialize value}"
    | Error e -> Assert.Equal(path "s", e.Path)

[<Fact>]
let ``incrementing a missing value starts from zero`` () =
    Assert.Equal(json """{"a":{"b":2}}""", Update.apply (increment "a.b" "2") Json.emptyObject)
    Assert.Equal(json """{"c":[1.5]}""", Update.apply (Update.increment (path "c[0]") 1.5m) Json.emptyObject)

[<Fact>]
let ``numbers that do not fit a double survive an increment`` () =
    let tree = json """{"big":9007199254740993,"huge":1e400,"pi":3.14159265358979323846264338327950288,"price":1.10}"""
    let after = Patch.apply (Patch.fold [ increment "big" "1"; increment "huge" "1"; increment "pi" "1"; Update.increment (path "price") 1m ]) tree
    Assert.Equal(
        "{\"big\":9007199254740994,\"huge\":1" + String('0', 399) + "1,\"pi\":4.14159265358979323846264338327950288,\"price\":2.10}",
        Json.serialize after)

[<Fact>]
let ``a conflicting patch leaves the tree as it was`` () =
    let tree = json """{"n":"text"}"""
    let before = Json.serialize tree
    Assert.Throws<PathConflictException>(fun () -> Patch.apply (Patch.fold [ set "a" "1"; increment "n" "1" ]) tree |> ignore) |> ignore
    Assert.Equal(before, Json.serialize tree)

// ---------------------------------------------------------------------------------------------
// The JSON form
// ---------------------------------------------------------------------------------------------

[<Fact>]
let ``a patch is written as an array of operations`` () =
    let patch = Patch.fold [ set "a.b" "1"; remove "c"; increment "d[0]" "2.50"; set "e[\"x.y\"]" """{"日本":null}""" ]
    Assert.Equal("""[["set",["a","b"],1],["remove",["c"]],["increment",["d",0],2.50],["set",["e","x.y"],{"日本":null}]]""", Patch.serialize patch)
    Assert.Equal(patch, Patch.parse (Patch.serialize patch))
    Assert.Equal("set a.b = 1; remove c; increment d[0] by 2.50; set e[\"x.y\"] = {\"日本\":null}", string patch)

[<Fact>]
let ``JSON that is not a patch is refused with a JsonException`` () =
    for text in
        [ "{}"; "1"; "[1]"; """[["frobnicate",["a"]]]"""; """[["set","a",1]]"""; """[["set",[-1],1]]"""
          """[["set",[1.5],1]]"""; """[["set",[null],1]]"""; """[["increment",["a"],"x"]]"""; """[["remove",["a"],1]]"""
          """[["set",["a"]]]"""; """[["set",[2147483648],1]]"""; "[" ] do
        Assert.ThrowsAny<JsonException>(fun () -> Patch.parse text |> ignore) |> ignore

[<Fact>]
let ``a patch whose value nests Json.MaxDepth deep survives its JSON round trip`` () =
    let deepest = json (String.replicate Json.MaxDepth "[" + String.replicate Json.MaxDepth "]")
    let patch = Patch.fold [ Update.set Path.root deepest ]
    Assert.Equal(patch, Patch.parse (Patch.serialize patch))
    Assert.Equal(patch, Patch.parseUtf8 (ReadOnlySpan(Patch.toUtf8 patch)))
    // A value deeper than that is refused when written, not found unreadable later.
    let tooDeep = Patch.fold [ Update.set Path.root (Json.array [ deepest ]) ]
    Assert.Throws<InvalidOperationException>(fun () -> Patch.toUtf8 tooDeep |> ignore) |> ignore
    Assert.ThrowsAny<JsonException>(fun () -> Patch.parse ("[[\"set\",[]," + String.replicate 1025 "[" + String.replicate 1025 "]" + "]]") |> ignore) |> ignore
    let longest = Path.ofKeys (Array.create Path.MaxSegments "k")
    let deepPath = Patch.fold [ Update.set longest (Json.string "v"); Update.remove (Path.ofKeys (Array.create Path.MaxSegments "j")) ]
    Assert.Equal(deepPath, Patch.parse (Patch.serialize deepPath))
