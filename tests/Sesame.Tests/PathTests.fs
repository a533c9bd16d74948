module Sesame.Tests.PathTests

open Sesame
open Sesame.Tests.Generators
open System
open FsCheck
open FsCheck.FSharp
open Xunit

let private parseError (text: string) =
    match Path.tryParse text with
    | Ok p -> failwith $"'{text}' parsed as {p.Segments}"
    | Error message ->
        // parse throws the same message.
        let ex = Assert.Throws<ArgumentException>(fun () -> Path.parse text |> ignore)
        Assert.Contains(message, ex.Message)
        message

let private conflict (f: unit -> Json) =
    Assert.Throws<PathConflictException>(fun () -> f () |> ignore)

let private n (i: int) = Json.int64 (int64 i)

// ---------------------------------------------------------------------------------------------
// Laws
// ---------------------------------------------------------------------------------------------

[<Fact>]
let ``every path survives a round trip through its text`` () =
    check (Prop.forAll paths (fun p ->
        let text = string p
        Path.parse text = p && Path.tryParse text = Ok p && string (Path.parse text) = text))

[<Fact>]
let ``reading what was set gives the value set`` () =
    let arb = Arb.fromGen (Gen.zip3 (Gen.map (fun v -> { Value = v }) session) updatePath jsonTree)
    let mutable applied = 0
    check (Prop.forAll arb (fun (tree, p, value) ->
        match (try Some(Path.set p value tree.Value) with :? PathConflictException -> None) with
        | Some after ->
            applied <- applied + 1
            Path.tryGet p after = Some value
        | None -> true))
    Assert.True(applied > 300, $"only {applied} sets succeeded")

[<Fact>]
let ``setting what is already there gives back the same tree`` () =
    let arb = Arb.fromGen (Gen.zip (Gen.map (fun v -> { Value = v }) session) updatePath)
    check (Prop.forAll arb (fun (tree, p) ->
        match Path.tryGet p tree.Value with
        | Some value -> obj.ReferenceEquals(Path.set p value tree.Value, tree.Value)
        | None -> true))

[<Fact>]
let ``a second set of one path overrides the first`` () =
    let arb = Arb.fromGen (Gen.map4 (fun t p a b -> t, p, a, b) (Gen.map (fun v -> { Value = v }) session) updatePath jsonTree jsonTree)
    check (Prop.forAll arb (fun (tree, p, first, second) ->
        match (try Some(Path.set p second tree.Value) with :? PathConflictException -> None) with
        | Some expected -> Path.set p second (Path.set p first tree.Value) = expected
        | None -> true))

[<Fact>]
let ``after removing a key there is nothing there, and nothing else changed`` () =
    let arb = Arb.fromGen (Gen.zip (Gen.map (fun v -> { Value = v }) session) keyEndingPath)
    check (Prop.forAll arb (fun (tree, p) ->
        let after = Path.remove p tree.Value
        let gone = Path.tryGet p after = None
        // Putting back what was there restores the tree.
        let restorable =
            match Path.tryGet p tree.Value with
            | Some old -> Path.set p old after = tree.Value
            | None -> obj.ReferenceEquals(after, tree.Value)
        gone && restorable))

[<Fact>]
let ``a path is a prefix of itself and its children and not of its siblings`` () =
    check (Prop.forAll paths (fun p ->
        let child = Path.child (Segment.Key "x") p
        let sibling = Path.ofSegments (List.take (p.Segments.Length - 1) p.Segments @ [ Segment.Key "\u0001sibling" ])
        Path.isPrefixOf p child
        && Path.isPrefixOf p p
        && Path.isPrefixOf Path.root p
        && not (Path.isPrefixOf child p)
        && not (Path.isPrefixOf sibling p)
        && not (Path.isPrefixOf p sibling)
        && not (Path.isPrefixOf sibling child)))

// ---------------------------------------------------------------------------------------------
// Parsing and writing paths
// ---------------------------------------------------------------------------------------------

[<Fact>]
let ``cart.items[2].qty parses into keys and an index`` () =
    let p = path "cart.items[2].qty"
    Assert.Equal<Segment list>([ Segment.Key "cart"; Segment.Key "items"; Segment.Index 2; Segment.Key "qty" ], p.Segments)
    Assert.Equal("cart.items[2].qty", string p)
    Assert.False p.IsRoot

[<Fact>]
let ``a key holding a dot is quoted in brackets`` () =
    let p = path "user[\"first.name\"]"
    Assert.Equal<Segment list>([ Segment.Key "user"; Segment.Key "first.name" ], p.Segments)
    Assert.Equal("user[\"first.name\"]", string p)
    Assert.Equal(p, Path.ofKeys [ "user"; "first.name" ])
    Assert.Equal<Segment list>([ Segment.Key "a"; Segment.Key "b"; Segment.Key "c" ], (path "a[\"b\"].c").Segments)

[<Fact>]
let ``the empty key is written and read as [""]`` () =
    let p = path "[\"\"]"
    Assert.Equal<Segment list>([ Segment.Key "" ], p.Segments)
    Assert.Equal("[\"\"]", string p)
    Assert.Equal("a[\"\"][\"\"].b", string (Path.ofKeys [ "a"; ""; ""; "b" ]))
    Assert.Equal(Some(n 1), Path.tryGet p (json """{"":1}"""))

[<Fact>]
let ``odd keys are written quoted and read back`` () =
    for key in [ "a.b"; "a[0]"; "say \"hi\""; "back\\slash"; "x y"; "tab\t"; "new\nline"; "]"; "\u0000" ] do
        let p = Path.ofKeys [ "root"; key ]
        let text = string p
        Assert.StartsWith("root[\"", text)
        Assert.Equal(p, path text)
    // Keys needing no quotes stay bare, whatever their script.
    Assert.Equal("日本.é.😀.0.-1", string (Path.ofKeys [ "日本"; "é"; "😀"; "0"; "-1" ]))
    Assert.Equal<Segment list>([ Segment.Key "0"; Segment.Index 0 ], (path "0[0]").Segments)
    Assert.Equal<Segment list>([ Segment.Key "first name" ], (path "[\"first\\u0020name\"]").Segments)

[<Fact>]
let ``a path may start with an index`` () =
    let p = path "[0].a[1][2]"
    Assert.Equal<Segment list>([ Segment.Index 0; Segment.Key "a"; Segment.Index 1; Segment.Index 2 ], p.Segments)
    Assert.Equal("[0].a[1][2]", string p)
    Assert.Equal("[2147483647]", string (path "[2147483647]"))

[<Fact>]
let ``the root has no text and an empty path text is refused`` () =
    Assert.True Path.root.IsRoot
    Assert.Equal("", string Path.root)
    let message = parseError ""
    Assert.Contains("empty", message)
    Assert.Throws<ArgumentException>(fun () -> Path.parse null |> ignore) |> ignore

[<Fact>]
let ``malformed paths are refused with the position of the fault`` () =
    Assert.Contains("position 2", parseError "a..b")
    Assert.Contains("position 2", parseError "a[")
    Assert.Contains("position 2", parseError "a[-1]")
    Assert.Contains("leading zero", parseError "a[01]")
    Assert.Contains("position 2", parseError "a[01]")
    Assert.Contains("position 2", parseError "a.")
    Assert.Contains("position 0", parseError ".a")
    Assert.Contains("position 1", parseError "a]")
    Assert.Contains("position 3", parseError "a[1")
    Assert.Contains("position 3", parseError "a[1x]")
    Assert.Contains("position 0", parseError " a")
    Assert.Contains("position 1", parseError "a b")
    Assert.Contains("position 2", parseError "a[2147483648]")
    Assert.Contains("position 5", parseError "a[\"b\"c]")

[<Fact>]
let ``unterminated or badly escaped quoted keys are refused with their position`` () =
    let unterminated = parseError "a[\"bc"
    Assert.Contains("Unterminated", unterminated)
    Assert.Contains("position 2", unterminated)
    Assert.Contains("position 2", parseError "a[\"bc\\\"]")
    Assert.Contains("position 2", parseError "a[\"b\\")
    Assert.Contains("position 2", parseError "a[\"b\\q\"]")
    Assert.Contains("position 1", parseError "[\"raw\ncontrol\"]")

[<Fact>]
let ``too long and too deep paths are refused`` () =
    let longest = String('k', Path.MaxTextLength)
    Assert.Equal<Segment list>([ Segment.Key longest ], (path longest).Segments)
    let tooLong = parseError (String('k', Path.MaxTextLength + 1))
    Assert.Contains(string Path.MaxTextLength, tooLong)
    let deepest = String.Join(".", Array.create Path.MaxSegments "a")
    Assert.Equal(Path.MaxSegments, (path deepest).Segments.Length)
    let tooDeep = parseError (String.Join(".", Array.create (Path.MaxSegments + 1) "a"))
    Assert.Contains(string Path.MaxSegments, tooDeep)
    Assert.Contains(string Path.MaxSegments, parseError (String.replicate (Path.MaxSegments + 1) "[0]"))
    Assert.Throws<ArgumentException>(fun () -> Path.ofKeys (Array.create (Path.MaxSegments + 1) "a") |> ignore) |> ignore

[<Fact>]
let ``segments are validated`` () =
    Assert.Throws<ArgumentException>(fun () -> Path.ofSegments [ Segment.Index -1 ] |> ignore) |> ignore
    Assert.Throws<ArgumentException>(fun () -> Path.ofSegments [ Segment.Key null ] |> ignore) |> ignore
    Assert.Equal(path "a[3]", Path.child (Segment.Index 3) (path "a"))

[<Fact>]
let ``paths compare by their segments`` () =
    Assert.Equal(path "a.b", Path.ofKeys [ "a"; "b" ])
    Assert.NotEqual(path "a.b", path "a[\"b\"].c")
    Assert.NotEqual(path "a[0]", path "a[\"0\"]")
    Assert.Equal((path "a.b").GetHashCode(), (Path.ofKeys [ "a"; "b" ]).GetHashCode())
    Assert.Equal<Path list>([ path "a"; path "a.b"; path "b" ], List.sort [ path "b"; path "a.b"; path "a" ])

// ---------------------------------------------------------------------------------------------
// Reading and changing trees
// ---------------------------------------------------------------------------------------------

[<Fact>]
let ``reading a missing or crossed path gives nothing`` () =
    let tree = json """{"a":{"b":[10,20]},"s":"text"}"""
    Assert.Equal(Some(n 20), Path.tryGet (path "a.b[1]") tree)
    Assert.Equal(Some tree, Path.tryGet Path.root tree)
    for missing in [ "x"; "a.x"; "a.b[2]"; "a.b.c"; "a[0]"; "s.x"; "s[0]"; "a.b[0].c" ] do
        Assert.Equal(None, Path.tryGet (path missing) tree)

[<Fact>]
let ``setting through a missing node creates objects, and an array for index 0`` () =
    Assert.Equal(json """{"a":{"b":{"c":1}}}""", Path.set (path "a.b.c") (n 1) Json.emptyObject)
    Assert.Equal(json """{"x":0,"a":{"b":[{"c":1}]}}""", Path.set (path "a.b[0].c") (n 1) (json """{"x":0}"""))
    Assert.Equal(json """{"a":[[true]]}""", Path.set (path "a[0][0]") (Json.Bool true) Json.emptyObject)
    Assert.Equal(json """{"a":{"b":2,"c":1}}""", Path.set (path "a.c") (n 1) (json """{"a":{"b":2}}"""))

[<Fact>]
let ``setting a missing array at an index past 0 is a conflict`` () =
    let ex = conflict (fun () -> Path.set (path "a.b[1]") (n 1) Json.emptyObject)
    Assert.Equal(path "a.b[1]", ex.Path)
    Assert.Contains("a.b[1]", ex.Message)

[<Fact>]
let ``setting index n of an n-item array appends and n+1 is a conflict that names the path`` () =
    let tree = json """{"items":[1,2,3]}"""
    Assert.Equal(json """{"items":[1,2,3,4]}""", Path.set (path "items[3]") (n 4) tree)
    Assert.Equal(json """{"items":[1,9,3]}""", Path.set (path "items[1]") (n 9) tree)
    Assert.Equal(json """{"items":[1,2,3,{"k":true}]}""", Path.set (path "items[3].k") (Json.Bool true) tree)
    let ex = conflict (fun () -> Path.set (path "items[4]") (n 5) tree)
    Assert.Equal(path "items[4]", ex.Path)
    Assert.Contains("items[4]", ex.Message)
    Assert.Contains("3 items", ex.Message)
    Assert.Equal(json """{"items":[1,2,3]}""", tree)

[<Fact>]
let ``crossing a string, a number, null, a boolean or an array with a key is a conflict`` () =
    let tree = json """{"s":"text","n":5,"z":null,"t":true,"arr":[1],"o":{}}"""
    for text, where in
        [ "s.x", "'s' is a string"
          "n.x", "'n' is a number"
          "z.x", "'z' is null"
          "t[0]", "'t' is a boolean"
          "arr.x", "'arr' is an array"
          "o[0]", "'o' is an object"
          "s[0].deeper", "'s' is a string" ] do
        let ex = conflict (fun () -> Path.set (path text) (n 1) tree)
        Assert.Equal(path text, ex.Path)
        Assert.Contains(text, ex.Message)
        Assert.Contains(where, ex.Message)
    // A root that is not an object cannot take a key.
    Assert.Contains("the root", (conflict (fun () -> Path.set (path "a") (n 1) (json "[1]"))).Message)

[<Fact>]
let ``setting the root replaces the whole tree`` () =
    Assert.Equal(json "[1]", Path.set Path.root (json "[1]") (json """{"a":1}"""))

[<Fact>]
let ``removing a missing path does nothing`` () =
    let tree = json """{"a":{"b":1},"s":"text","arr":[1]}"""
    for missing in [ "x"; "a.x"; "a.b.c"; "x.y.z"; "s.x"; "arr.x"; "arr[5]"; "a[0]" ] do
        Assert.True(obj.ReferenceEquals(tree, Path.remove (path missing) tree), missing)

[<Fact>]
let ``removing a key keeps its siblings and removing an item shifts the rest`` () =
    let tree = json """{"a":{"b":1,"c":2},"arr":[1,2,3]}"""
    Assert.Equal(json """{"a":{"c":2},"arr":[1,2,3]}""", Path.remove (path "a.b") tree)
    Assert.Equal(json """{"a":{"b":1,"c":2},"arr":[1,3]}""", Path.remove (path "arr[1]") tree)
    Assert.Equal(json """{"arr":[1,2,3]}""", Path.remove (path "a") tree)
    Assert.Equal(Json.emptyObject, Path.remove Path.root tree)
    // An emptied container stays.
    Assert.Equal(json """{"a":{}}""", Path.remove (path "a.b") (json """{"a":{"b":1}}"""))

[<Fact>]
let ``a 1,000-segment path reads and writes 1,000 levels deep`` () =
    let deep = path (String.Join(".", Seq.init 1000 (fun i -> $"k{i}")))
    Assert.Equal(1000, deep.Segments.Length)
    let tree = Path.set deep (Json.string "bottom") Json.emptyObject
    Assert.Equal(Some(Json.string "bottom"), Path.tryGet deep tree)
    let reread = Json.parse (Json.serialize tree)
    Assert.Equal(tree, reread)
    let changed = Path.set deep (n 2) reread
    Assert.Equal(Some(n 2), Path.tryGet deep changed)
    Assert.Equal(Some(Json.string "bottom"), Path.tryGet deep reread)
    let sibling = Path.ofSegments (List.take 999 deep.Segments @ [ Segment.Key "other" ])
    let both = Path.set sibling Json.Null changed
    Assert.Equal(Some(n 2), Path.tryGet deep both)
    Assert.Equal(Some Json.Null, Path.tryGet sibling both)
    let removed = Path.remove deep both
    Assert.Equal(None, Path.tryGet deep removed)
    Assert.Equal(Some Json.Null, Path.tryGet sibling removed)
    // Arrays too: 1,000 nested arrays through a path of indexes.
    let indexes = path (String.replicate 1000 "[0]")
    let arrays = Path.set indexes (n 7) (json "[]")
    Assert.Equal(String.replicate 1000 "[" + "7" + String.replicate 1000 "]", Json.serialize arrays)
    Assert.Equal(Some(n 7), Path.tryGet indexes arrays)

[<Fact>]
let ``a 100,000-item array takes a set, an append, and refuses a gap`` () =
    let items = Json.array (Seq.init 100_000 n)
    let tree = Path.set (path "big") items Json.emptyObject
    let set = Path.set (path "big[50000]") (Json.string "middle") tree
    Assert.Equal(Some(Json.string "middle"), Path.tryGet (path "big[50000]") set)
    Assert.Equal(Some(n 50_001), Path.tryGet (path "big[50001]") set)
    let appended = Path.set (path "big[100000]") (Json.string "end") set
    Assert.Equal(Some(Json.string "end"), Path.tryGet (path "big[100000]") appended)
    match Path.tryGet (path "big") appended with
    | Some(Json.Array all) -> Assert.Equal(100_001, all.Length)
    | other -> failwith $"not an array: {other}"
    Assert.Equal(None, Path.tryGet (path "big[100000]") set)
    let ex = conflict (fun () -> Path.set (path "big[100001]") Json.Null set)
    Assert.Contains("big[100001]", ex.Message)
    Assert.Equal(appended, Json.parse (Json.serialize appended))

[<Fact>]
let ``a set shares every untouched subtree with the old tree`` () =
    let branch i = json $$"""{"leaf":{{i}},"deep":{"x":[1,2,{"y":"{{i}}"}]},"list":[{"a":1},{"b":2}]}"""
    let tree = Json.object [ for i in 0..99 -> $"k{i}", branch i ]
    let changed = Path.set (path "k42.deep.x[2].y") (Json.string "new") tree
    let child (p: string) (t: Json) = (Path.tryGet (path p) t).Value
    for i in 0..99 do
        if i <> 42 then
            Assert.True(obj.ReferenceEquals(child $"k{i}" tree, child $"k{i}" changed), $"k{i} was copied")
    // Along the changed spine, the untouched siblings are shared too.
    Assert.True(obj.ReferenceEquals(child "k42.leaf" tree, child "k42.leaf" changed))
    Assert.True(obj.ReferenceEquals(child "k42.list" tree, child "k42.list" changed))
    Assert.True(obj.ReferenceEquals(child "k42.deep.x[0]" tree, child "k42.deep.x[0]" changed))
    Assert.False(obj.ReferenceEquals(child "k42" tree, child "k42" changed))
    // And the old tree is unchanged.
    Assert.Equal(Json.string "42", child "k42.deep.x[2].y" tree)
    Assert.Equal(Json.string "new", child "k42.deep.x[2].y" changed)

[<Fact>]
let ``a remove shares every untouched subtree with the old tree`` () =
    let tree = Json.object [ for i in 0..20 -> $"k{i}", json $"""{{"a":{{"b":{i}}},"c":[{i}]}}""" ]
    let changed = Path.remove (path "k7.a.b") tree
    for i in 0..20 do
        if i <> 7 then
            Assert.True(obj.ReferenceEquals((Path.tryGet (path $"k{i}") tree).Value, (Path.tryGet (path $"k{i}") changed).Value))
    Assert.True(obj.ReferenceEquals((Path.tryGet (path "k7.c") tree).Value, (Path.tryGet (path "k7.c") changed).Value))
