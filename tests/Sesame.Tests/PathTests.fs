module Sesame.Tests.PathTests

open Sesame
open Sesame.Tests.Generators
open System
open FsCheck
open FsCheck.FSharp
open Expecto

let private parseError (text: string) =
    match SessionPath.tryParse text with
    | Ok p -> failwith $"'{text}' parsed as {p.Segments}"
    | Error message ->
        // parse throws the same message.
        let ex = throws<ArgumentException>(fun () -> SessionPath.parse text |> ignore)
        Expect.stringContains ex.Message message "ex.Message"
        message

let private conflict (f: unit -> Json) = throws<PathConflictException>(fun () -> f () |> ignore)

let private n (i: int) = Json.int64 (int64 i)

// ---------------------------------------------------------------------------------------------
// Laws
// ---------------------------------------------------------------------------------------------

[<Tests>]
let tests =
    testList "SessionPath" [
        testLaw "every path survives a round trip through its text"
        <| fun () ->
            Prop.forAll paths (fun p ->
                let text = string p
                SessionPath.parse text = p && SessionPath.tryParse text = Ok p && string (SessionPath.parse text) = text)

        testGuardedLaw "reading what was set gives the value set"
        <| fun () ->
            let arb = Arb.fromGen (Gen.zip3 (Gen.map (fun v -> { Value = v }) session) updatePath jsonTree)
            let mutable applied = 0
            Prop.forAll arb (fun (tree, p, value) ->
                match
                    (try
                        Some(SessionPath.set p value tree.Value)
                     with :? PathConflictException ->
                         None)
                with
                | Some after ->
                    applied <- applied + 1
                    SessionPath.tryGet p after = Some value
                | None -> true),
            fun () -> Expect.isGreaterThan applied 300 $"only {applied} sets succeeded"

        testGuardedLaw "setting what is already there gives back the same tree"
        <| fun () ->
            let arb = Arb.fromGen (Gen.zip (Gen.map (fun v -> { Value = v }) session) updatePath)
            let mutable found = 0
            Prop.forAll arb (fun (tree, p) ->
                match SessionPath.tryGet p tree.Value with
                | Some value ->
                    found <- found + 1
                    obj.ReferenceEquals(SessionPath.set p value tree.Value, tree.Value)
                | None -> true),
            fun () -> Expect.isGreaterThan found 60 $"only {found} paths held a value to set again"

        testGuardedLaw "a second set of one path overrides the first"
        <| fun () ->
            let arb = Arb.fromGen (Gen.map4 (fun t p a b -> t, p, a, b) (Gen.map (fun v -> { Value = v }) session) updatePath jsonTree jsonTree)
            let mutable applied = 0
            Prop.forAll arb (fun (tree, p, first, second) ->
                match
                    (try
                        Some(SessionPath.set p second tree.Value)
                     with :? PathConflictException ->
                         None)
                with
                | Some expected ->
                    applied <- applied + 1
                    SessionPath.set p second (SessionPath.set p first tree.Value) = expected
                | None -> true),
            fun () -> Expect.isGreaterThan applied 400 $"only {applied} second sets succeeded"

        testLaw "after removing a key there is nothing there, and nothing else changed"
        <| fun () ->
            let arb = Arb.fromGen (Gen.zip (Gen.map (fun v -> { Value = v }) session) keyEndingPath)
            Prop.forAll arb (fun (tree, p) ->
                let after = SessionPath.remove p tree.Value
                let gone = SessionPath.tryGet p after = None
                // Putting back what was there restores the tree.
                let restorable =
                    match SessionPath.tryGet p tree.Value with
                    | Some old -> SessionPath.set p old after = tree.Value
                    | None -> obj.ReferenceEquals(after, tree.Value)
                gone && restorable)

        testLaw "a path is a prefix of itself and its children and not of its siblings"
        <| fun () ->
            Prop.forAll paths (fun p ->
                let child = SessionPath.child (Segment.Key "x") p
                let sibling = SessionPath.ofSegments (List.take (p.Segments.Length - 1) p.Segments @ [ Segment.Key "\u0001sibling" ])
                SessionPath.isPrefixOf p child
                && SessionPath.isPrefixOf p p
                && SessionPath.isPrefixOf SessionPath.root p
                && not (SessionPath.isPrefixOf child p)
                && not (SessionPath.isPrefixOf sibling p)
                && not (SessionPath.isPrefixOf p sibling)
                && not (SessionPath.isPrefixOf sibling child))

        // ---------------------------------------------------------------------------------------------
        // Parsing and writing paths
        // ---------------------------------------------------------------------------------------------

        testCase "cart.items[2].qty parses into keys and an index"
        <| fun () ->
            let p = path "cart.items[2].qty"
            Expect.equal (p.Segments: Segment list) ([ Segment.Key "cart"; Segment.Key "items"; Segment.Index 2; Segment.Key "qty" ]) "p.Segments"
            Expect.equal (string p) "cart.items[2].qty" "string p"
            Expect.isFalse p.IsRoot "p.IsRoot"

        testCase "a key holding a dot is quoted in brackets"
        <| fun () ->
            let p = path "user[\"first.name\"]"
            Expect.equal (p.Segments: Segment list) ([ Segment.Key "user"; Segment.Key "first.name" ]) "p.Segments"
            Expect.equal (string p) ("user[\"first.name\"]") "string p"
            Expect.equal (SessionPath.ofKeys [ "user"; "first.name" ]) p "SessionPath.ofKeys [ 'user'; 'first.name' ]"
            Expect.equal ((path "a[\"b\"].c").Segments: Segment list) ([ Segment.Key "a"; Segment.Key "b"; Segment.Key "c" ]) "(path 'a['b'].c').Segments"

        testCase "the empty key is written and read as [\"\"]"
        <| fun () ->
            let p = path "[\"\"]"
            Expect.equal (p.Segments: Segment list) ([ Segment.Key "" ]) "p.Segments"
            Expect.equal (string p) ("[\"\"]") "string p"
            Expect.equal (string (SessionPath.ofKeys [ "a"; ""; ""; "b" ])) ("a[\"\"][\"\"].b") "string (SessionPath.ofKeys [ 'a'; ''; ''; 'b' ])"
            Expect.equal (SessionPath.tryGet p (json """{"":1}""")) (Some(n 1)) "SessionPath.tryGet p (json '''('':1)''')"

        testCase "odd keys are written quoted and read back"
        <| fun () ->
            for key in [ "a.b"; "a[0]"; "say \"hi\""; "back\\slash"; "x y"; "tab\t"; "new\nline"; "]"; "\u0000" ] do
                let p = SessionPath.ofKeys [ "root"; key ]
                let text = string p
                Expect.stringStarts text ("root[\"") "text"
                Expect.equal (path text) p "path text"
            // Keys needing no quotes stay bare, whatever their script.
            Expect.equal (string (SessionPath.ofKeys [ "日本"; "é"; "😀"; "0"; "-1" ])) "日本.é.😀.0.-1" "string (SessionPath.ofKeys [ '日本'; 'é'; '😀'; '0'; '-1' ])"
            Expect.equal ((path "0[0]").Segments: Segment list) ([ Segment.Key "0"; Segment.Index 0 ]) "(path '0[0]').Segments"
            Expect.equal ((path "[\"first\\u0020name\"]").Segments: Segment list) ([ Segment.Key "first name" ]) "(path '['firstu0020name']').Segments"

        testCase "a path may start with an index"
        <| fun () ->
            let p = path "[0].a[1][2]"
            Expect.equal (p.Segments: Segment list) ([ Segment.Index 0; Segment.Key "a"; Segment.Index 1; Segment.Index 2 ]) "p.Segments"
            Expect.equal (string p) "[0].a[1][2]" "string p"
            Expect.equal (string (path "[2147483647]")) "[2147483647]" "string (path '[2147483647]')"

        testCase "the root has no text and an empty path text is refused"
        <| fun () ->
            Expect.isTrue SessionPath.root.IsRoot "SessionPath.root.IsRoot"
            Expect.equal (string SessionPath.root) "" "string SessionPath.root"
            let message = parseError ""
            Expect.stringContains message "empty" "message"
            throws<ArgumentException>(fun () -> SessionPath.parse null |> ignore) |> ignore

        testCase "malformed paths are refused with the position of the fault"
        <| fun () ->
            Expect.stringContains (parseError "a..b") "position 2" "parseError 'a..b'"
            Expect.stringContains (parseError "a[") "position 2" "parseError 'a['"
            Expect.stringContains (parseError "a[-1]") "position 2" "parseError 'a[-1]'"
            Expect.stringContains (parseError "a[01]") "leading zero" "parseError 'a[01]'"
            Expect.stringContains (parseError "a[01]") "position 2" "parseError 'a[01]'"
            Expect.stringContains (parseError "a.") "position 2" "parseError 'a.'"
            Expect.stringContains (parseError ".a") "position 0" "parseError '.a'"
            Expect.stringContains (parseError "a]") "position 1" "parseError 'a]'"
            Expect.stringContains (parseError "a[1") "position 3" "parseError 'a[1'"
            Expect.stringContains (parseError "a[1x]") "position 3" "parseError 'a[1x]'"
            Expect.stringContains (parseError " a") "position 0" "parseError ' a'"
            Expect.stringContains (parseError "a b") "position 1" "parseError 'a b'"
            Expect.stringContains (parseError "a[2147483648]") "position 2" "parseError 'a[2147483648]'"
            Expect.stringContains (parseError "a[\"b\"c]") "position 5" "parseError 'a['b'c]'"

        testCase "unterminated or badly escaped quoted keys are refused with their position"
        <| fun () ->
            let unterminated = parseError "a[\"bc"
            Expect.stringContains unterminated "Unterminated" "unterminated"
            Expect.stringContains unterminated "position 2" "unterminated"
            Expect.stringContains (parseError "a[\"bc\\\"]") "position 2" "parseError 'a['bc']'"
            Expect.stringContains (parseError "a[\"b\\") "position 2" "parseError 'a['b'"
            Expect.stringContains (parseError "a[\"b\\q\"]") "position 2" "parseError 'a['bq']'"
            Expect.stringContains (parseError "[\"raw\ncontrol\"]") "position 1" "parseError '['rawncontrol']'"

        testCase "too long and too deep paths are refused"
        <| fun () ->
            let longest = String('k', SessionPath.MaxTextLength)
            Expect.equal ((path longest).Segments: Segment list) ([ Segment.Key longest ]) "(path longest).Segments"
            let tooLong = parseError (String('k', SessionPath.MaxTextLength + 1))
            Expect.stringContains tooLong (string SessionPath.MaxTextLength) "tooLong"
            let deepest = String.Join(".", Array.create SessionPath.MaxSegments "a")
            Expect.equal ((path deepest).Segments.Length) SessionPath.MaxSegments "(path deepest).Segments.Length"
            let tooDeep = parseError (String.Join(".", Array.create (SessionPath.MaxSegments + 1) "a"))
            Expect.stringContains tooDeep (string SessionPath.MaxSegments) "tooDeep"
            Expect.stringContains
                (parseError (String.replicate (SessionPath.MaxSegments + 1) "[0]"))
                (string SessionPath.MaxSegments)
                "parseError (String.replicate (SessionPath.MaxSegments + 1) '[0]')"
            throws<ArgumentException>(fun () -> SessionPath.ofKeys (Array.create (SessionPath.MaxSegments + 1) "a") |> ignore) |> ignore

        testCase "segments are validated"
        <| fun () ->
            throws<ArgumentException>(fun () -> SessionPath.ofSegments [ Segment.Index -1 ] |> ignore) |> ignore
            throws<ArgumentException>(fun () -> SessionPath.ofSegments [ Segment.Key null ] |> ignore) |> ignore
            Expect.equal (SessionPath.child (Segment.Index 3) (path "a")) (path "a[3]") "SessionPath.child (Segment.Index 3) (path 'a')"

        testCase "paths compare by their segments"
        <| fun () ->
            Expect.equal (SessionPath.ofKeys [ "a"; "b" ]) (path "a.b") "SessionPath.ofKeys [ 'a'; 'b' ]"
            Expect.notEqual (path "a[\"b\"].c") (path "a.b") "path 'a['b'].c'"
            Expect.notEqual (path "a[\"0\"]") (path "a[0]") "path 'a['0']'"
            Expect.equal ((SessionPath.ofKeys [ "a"; "b" ]).GetHashCode()) ((path "a.b").GetHashCode()) "(SessionPath.ofKeys [ 'a'; 'b' ]).GetHashCode()"
            Expect.equal
                (List.sort [ path "b"; path "a.b"; path "a" ]: SessionPath list)
                ([ path "a"; path "a.b"; path "b" ])
                "List.sort [ path 'b'; path 'a.b'; path 'a' ]"

        testCase "a path is the same path however it was made: equal, with one hash and one order"
        <| fun () ->
            // A path keeps its depth and whether a key has a lone surrogate beside its segments: made any way, the
            // same segments must still be the same path.
            let made = [
                path "a.b[0]"
                SessionPath.Root.Key("a").Key("b").Index(0)
                SessionPath.ofSegments [ Segment.Key "a"; Segment.Key "b"; Segment.Index 0 ]
                SessionPath.child (Segment.Index 0) (SessionPath.OfKeys("a", "b"))
            ]
            for p in made do
                Expect.equal p (path "a.b[0]") $"{p} equals the parsed path"
                Expect.equal (p.GetHashCode()) ((path "a.b[0]").GetHashCode()) $"{p} hashes as the parsed path"
                Expect.equal (compare p (path "a.b[1]")) -1 $"{p} orders before a.b[1]"
                Expect.equal (compare p (path "a.b")) 1 $"{p} orders after a.b"

        testCase "a key with a lone surrogate is refused in a change however its path was made"
        <| fun () ->
            let lone = "😀".Substring(0, 1)
            let refused (p: SessionPath) =
                try
                    Update.validate (Update.set p Json.Null)
                    false
                with :? ArgumentException as e ->
                    e.Message.Contains "lone UTF-16 surrogate in a key of its path"
            for name, p in
                [
                    "OfKeys", SessionPath.OfKeys("a", lone + "b")
                    "ofKeys", SessionPath.ofKeys [ lone ]
                    "Key", SessionPath.Root.Key("a").Key(lone)
                    "Key below it", SessionPath.Root.Key(lone).Key("b")
                    "Index below it", SessionPath.Root.Key(lone).Index(0)
                    "ofSegments", SessionPath.ofSegments [ Segment.Index 0; Segment.Key("x" + lone) ]
                    "child", SessionPath.child (Segment.Key lone) (path "a")
                    "child of it", SessionPath.child (Segment.Key "b") (SessionPath.ofKeys [ lone ])
                ] do
                Expect.isTrue (refused p) $"{name}: refused"
            for name, p in
                [ "a pair", SessionPath.Root.Key("a").Key("😀"); "a pair, parsed", path "a[\"😀\"][2]"; "the same key text", SessionPath.OfKeys("a", "😀") ] do
                Expect.isFalse (refused p) $"{name}: taken"

        // ---------------------------------------------------------------------------------------------
        // Reading and changing trees
        // ---------------------------------------------------------------------------------------------

        testCase "reading a missing or crossed path gives nothing"
        <| fun () ->
            let tree = json """{"a":{"b":[10,20]},"s":"text"}"""
            Expect.equal (SessionPath.tryGet (path "a.b[1]") tree) (Some(n 20)) "SessionPath.tryGet (path 'a.b[1]') tree"
            Expect.equal (SessionPath.tryGet SessionPath.root tree) (Some tree) "SessionPath.tryGet SessionPath.root tree"
            for missing in [ "x"; "a.x"; "a.b[2]"; "a.b.c"; "a[0]"; "s.x"; "s[0]"; "a.b[0].c" ] do
                Expect.equal (SessionPath.tryGet (path missing) tree) None "SessionPath.tryGet (path missing) tree"

        testCase "setting through a missing node creates objects, and an array for index 0"
        <| fun () ->
            Expect.equal
                (SessionPath.set (path "a.b.c") (n 1) Json.emptyObject)
                (json """{"a":{"b":{"c":1}}}""")
                "SessionPath.set (path 'a.b.c') (n 1) Json.emptyObject"
            Expect.equal
                (SessionPath.set (path "a.b[0].c") (n 1) (json """{"x":0}"""))
                (json """{"x":0,"a":{"b":[{"c":1}]}}""")
                "SessionPath.set (path 'a.b[0].c') (n 1) (json '''('x':0)''')"
            Expect.equal
                (SessionPath.set (path "a[0][0]") (Json.Bool true) Json.emptyObject)
                (json """{"a":[[true]]}""")
                "SessionPath.set (path 'a[0][0]') (Json.Bool true) Json.emptyObject"
            Expect.equal
                (SessionPath.set (path "a.c") (n 1) (json """{"a":{"b":2}}"""))
                (json """{"a":{"b":2,"c":1}}""")
                "SessionPath.set (path 'a.c') (n 1) (json '''('a':('b':2))''')"

        testCase "setting a missing array at an index past 0 is a conflict"
        <| fun () ->
            let ex = conflict (fun () -> SessionPath.set (path "a.b[1]") (n 1) Json.emptyObject)
            Expect.equal ex.Path (path "a.b[1]") "ex.Path"
            Expect.stringContains ex.Message "a.b[1]" "ex.Message"

        testCase "setting index n of an n-item array appends and n+1 is a conflict that names the path"
        <| fun () ->
            let tree = json """{"items":[1,2,3]}"""
            Expect.equal (SessionPath.set (path "items[3]") (n 4) tree) (json """{"items":[1,2,3,4]}""") "SessionPath.set (path 'items[3]') (n 4) tree"
            Expect.equal (SessionPath.set (path "items[1]") (n 9) tree) (json """{"items":[1,9,3]}""") "SessionPath.set (path 'items[1]') (n 9) tree"
            Expect.equal
                (SessionPath.set (path "items[3].k") (Json.Bool true) tree)
                (json """{"items":[1,2,3,{"k":true}]}""")
                "SessionPath.set (path 'items[3].k') (Json.Bool true) tree"
            let ex = conflict (fun () -> SessionPath.set (path "items[4]") (n 5) tree)
            Expect.equal ex.Path (path "items[4]") "ex.Path"
            Expect.stringContains ex.Message "items[4]" "ex.Message"
            Expect.stringContains ex.Message "3 items" "ex.Message"
            Expect.equal tree (json """{"items":[1,2,3]}""") "tree"

        testCase "crossing a string, a number, null, a boolean or an array with a key is a conflict"
        <| fun () ->
            let tree = json """{"s":"text","n":5,"z":null,"t":true,"arr":[1],"o":{}}"""
            for text, where in
                [
                    "s.x", "'s' is a string"
                    "n.x", "'n' is a number"
                    "z.x", "'z' is null"
                    "t[0]", "'t' is a boolean"
                    "arr.x", "'arr' is an array"
                    "o[0]", "'o' is an object"
                    "s[0].deeper", "'s' is a string"
                ] do
                let ex = conflict (fun () -> SessionPath.set (path text) (n 1) tree)
                Expect.equal ex.Path (path text) "ex.Path"
                Expect.stringContains ex.Message text "ex.Message"
                Expect.stringContains ex.Message where "ex.Message"
            // A root that is not an object cannot take a key.
            Expect.stringContains
                ((conflict (fun () -> SessionPath.set (path "a") (n 1) (json "[1]"))).Message)
                "the root"
                "(conflict (fun () -> SessionPath.set (path 'a') (n 1) (json '[1]'))).Message"

        testCase "setting the root replaces the whole tree"
        <| fun () ->
            Expect.equal
                (SessionPath.set SessionPath.root (json "[1]") (json """{"a":1}"""))
                (json "[1]")
                "SessionPath.set SessionPath.root (json '[1]') (json '''('a':1)''')"

        testCase "removing a missing path does nothing"
        <| fun () ->
            let tree = json """{"a":{"b":1},"s":"text","arr":[1]}"""
            for missing in [ "x"; "a.x"; "a.b.c"; "x.y.z"; "s.x"; "arr.x"; "arr[5]"; "a[0]" ] do
                Expect.isTrue (obj.ReferenceEquals(tree, SessionPath.remove (path missing) tree)) missing

        testCase "removing a key keeps its siblings and removing an item shifts the rest"
        <| fun () ->
            let tree = json """{"a":{"b":1,"c":2},"arr":[1,2,3]}"""
            Expect.equal (SessionPath.remove (path "a.b") tree) (json """{"a":{"c":2},"arr":[1,2,3]}""") "SessionPath.remove (path 'a.b') tree"
            Expect.equal (SessionPath.remove (path "arr[1]") tree) (json """{"a":{"b":1,"c":2},"arr":[1,3]}""") "SessionPath.remove (path 'arr[1]') tree"
            Expect.equal (SessionPath.remove (path "a") tree) (json """{"arr":[1,2,3]}""") "SessionPath.remove (path 'a') tree"
            Expect.equal (SessionPath.remove SessionPath.root tree) Json.emptyObject "SessionPath.remove SessionPath.root tree"
            // An emptied container stays.
            Expect.equal
                (SessionPath.remove (path "a.b") (json """{"a":{"b":1}}"""))
                (json """{"a":{}}""")
                "SessionPath.remove (path 'a.b') (json '''('a':('b':1))''')"

        testCase "a 1,000-segment path reads and writes 1,000 levels deep"
        <| fun () ->
            let deep = path (String.Join(".", Seq.init 1000 (fun i -> $"k{i}")))
            Expect.equal deep.Segments.Length 1000 "deep.Segments.Length"
            let tree = SessionPath.set deep (Json.string "bottom") Json.emptyObject
            Expect.equal (SessionPath.tryGet deep tree) (Some(Json.string "bottom")) "SessionPath.tryGet deep tree"
            let reread = Json.parse (Json.serialize tree)
            Expect.equal reread tree "reread"
            let changed = SessionPath.set deep (n 2) reread
            Expect.equal (SessionPath.tryGet deep changed) (Some(n 2)) "SessionPath.tryGet deep changed"
            Expect.equal (SessionPath.tryGet deep reread) (Some(Json.string "bottom")) "SessionPath.tryGet deep reread"
            let sibling = SessionPath.ofSegments (List.take 999 deep.Segments @ [ Segment.Key "other" ])
            let both = SessionPath.set sibling Json.Null changed
            Expect.equal (SessionPath.tryGet deep both) (Some(n 2)) "SessionPath.tryGet deep both"
            Expect.equal (SessionPath.tryGet sibling both) (Some Json.Null) "SessionPath.tryGet sibling both"
            let removed = SessionPath.remove deep both
            Expect.equal (SessionPath.tryGet deep removed) None "SessionPath.tryGet deep removed"
            Expect.equal (SessionPath.tryGet sibling removed) (Some Json.Null) "SessionPath.tryGet sibling removed"
            // Arrays too: 1,000 nested arrays through a path of indexes.
            let indexes = path (String.replicate 1000 "[0]")
            let arrays = SessionPath.set indexes (n 7) (json "[]")
            Expect.equal (Json.serialize arrays) (String.replicate 1000 "[" + "7" + String.replicate 1000 "]") "Json.serialize arrays"
            Expect.equal (SessionPath.tryGet indexes arrays) (Some(n 7)) "SessionPath.tryGet indexes arrays"

        testCase "a 100,000-item array takes a set, an append, and refuses a gap"
        <| fun () ->
            let items = Json.array (Seq.init 100_000 n)
            let tree = SessionPath.set (path "big") items Json.emptyObject
            let set = SessionPath.set (path "big[50000]") (Json.string "middle") tree
            Expect.equal (SessionPath.tryGet (path "big[50000]") set) (Some(Json.string "middle")) "SessionPath.tryGet (path 'big[50000]') set"
            Expect.equal (SessionPath.tryGet (path "big[50001]") set) (Some(n 50_001)) "SessionPath.tryGet (path 'big[50001]') set"
            let appended = SessionPath.set (path "big[100000]") (Json.string "end") set
            Expect.equal (SessionPath.tryGet (path "big[100000]") appended) (Some(Json.string "end")) "SessionPath.tryGet (path 'big[100000]') appended"
            match SessionPath.tryGet (path "big") appended with
            | Some(Json.Array all) -> Expect.equal all.Length 100_001 "all.Length"
            | other -> failwith $"not an array: {other}"
            Expect.equal (SessionPath.tryGet (path "big[100000]") set) None "SessionPath.tryGet (path 'big[100000]') set"
            let ex = conflict (fun () -> SessionPath.set (path "big[100001]") Json.Null set)
            Expect.stringContains ex.Message "big[100001]" "ex.Message"
            Expect.equal (Json.parse (Json.serialize appended)) appended "Json.parse (Json.serialize appended)"

        testCase "a set shares every untouched subtree with the old tree"
        <| fun () ->
            let branch i = json $$"""{"leaf":{{i}},"deep":{"x":[1,2,{"y":"{{i}}"}]},"list":[{"a":1},{"b":2}]}"""
            let tree = Json.object [ for i in 0..99 -> $"k{i}", branch i ]
            let changed = SessionPath.set (path "k42.deep.x[2].y") (Json.string "new") tree
            let child (p: string) (t: Json) = (SessionPath.tryGet (path p) t).Value
            for i in 0..99 do
                if i <> 42 then Expect.isTrue (obj.ReferenceEquals(child $"k{i}" tree, child $"k{i}" changed)) ($"k{i} was copied")
            // Along the changed spine, the untouched siblings are shared too.
            Expect.isTrue
                (obj.ReferenceEquals(child "k42.leaf" tree, child "k42.leaf" changed))
                "obj.ReferenceEquals(child 'k42.leaf' tree, child 'k42.leaf' changed)"
            Expect.isTrue
                (obj.ReferenceEquals(child "k42.list" tree, child "k42.list" changed))
                "obj.ReferenceEquals(child 'k42.list' tree, child 'k42.list' changed)"
            Expect.isTrue
                (obj.ReferenceEquals(child "k42.deep.x[0]" tree, child "k42.deep.x[0]" changed))
                "obj.ReferenceEquals(child 'k42.deep.x[0]' tree, child 'k42.deep.x[0..."
            Expect.isFalse (obj.ReferenceEquals(child "k42" tree, child "k42" changed)) "obj.ReferenceEquals(child 'k42' tree, child 'k42' changed)"
            // And the old tree is unchanged.
            Expect.equal (child "k42.deep.x[2].y" tree) (Json.string "42") "child 'k42.deep.x[2].y' tree"
            Expect.equal (child "k42.deep.x[2].y" changed) (Json.string "new") "child 'k42.deep.x[2].y' changed"

        testCase "a remove shares every untouched subtree with the old tree"
        <| fun () ->
            let tree = Json.object [ for i in 0..20 -> $"k{i}", json $"""{{"a":{{"b":{i}}},"c":[{i}]}}""" ]
            let changed = SessionPath.remove (path "k7.a.b") tree
            for i in 0..20 do
                if i <> 7 then
                    Expect.isTrue
                        (obj.ReferenceEquals((SessionPath.tryGet (path $"k{i}") tree).Value, (SessionPath.tryGet (path $"k{i}") changed).Value))
                        "obj.ReferenceEquals((SessionPath.tryGet (path $'k(i)') tree).Value, (SessionPath...."
            Expect.isTrue
                (obj.ReferenceEquals((SessionPath.tryGet (path "k7.c") tree).Value, (SessionPath.tryGet (path "k7.c") changed).Value))
                "obj.ReferenceEquals((SessionPath.tryGet (path 'k7.c') tree).Value, (SessionPath.t..."
    ]
