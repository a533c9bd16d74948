module Sesame.Tests.NodePathTests

open System
open System.Text
open Sesame
open Sesame.Tests.Generators
open FsCheck
open FsCheck.FSharp
open Expecto

/// Keys a store may be asked to name: JSON strings (marks, control characters, emoji among them), and now and then
/// one with an unpaired surrogate, which escaping must still turn into valid UTF-8.
let private anyKey =
    Gen.frequency [ 6, jsonString; 1, Gen.map (fun (s: string) -> s + "\ud83d") jsonString; 1, Gen.map (fun (s: string) -> "\ude00" + s) jsonString ]

let private strictUtf8 = UTF8Encoding(false, true)

[<Tests>]
let tests =
    testList "NodePath" [
        testLaw "every key comes back from its escaped name"
        <| fun () -> Prop.forAll (Arb.fromGen anyKey) (fun key -> NodePath.tryUnescapeKey (NodePath.escapeKey key) = Some key)

        testLaw "an escaped name holds no mark, no NUL, and is valid UTF-8"
        <| fun () ->
            Prop.forAll (Arb.fromGen anyKey) (fun key ->
                let name = NodePath.escapeKey key
                name.IndexOf NodePath.KeyMark < 0
                && name.IndexOf NodePath.IndexMark < 0
                && name.IndexOf '\u0000' < 0
                && (strictUtf8.GetByteCount name |> ignore
                    true))

        testLaw "a key's cost is what Sesame's writer adds for it: \"key\":"
        <| fun () ->
            Prop.forAll (Arb.fromGen jsonString) (fun key ->
                // The key as the writer quotes and escapes it, and the colon.
                NodePath.keyCost key = int64 (Encoding.UTF8.GetByteCount(Json.serialize (Json.string key)) + 1))

        testLaw "a segment's name and cost in one look are its name and its cost"
        <| fun () ->
            let anySegment = Gen.oneof [ Gen.map Segment.Key anyKey; Gen.map (fun (i: int) -> Segment.Index(abs i)) (Gen.choose (0, 200)) ]
            Prop.forAll (Arb.fromGen anySegment) (fun segment ->
                NodePath.segmentNameAndCost segment = struct (NodePath.segmentName segment, NodePath.segmentCost segment))

        testLaw "a key named again, or after other keys took its slot, still gets its own name and cost"
        <| fun () ->
            // Keys a thread named lately give the name made then (KeyNames): a few keys named over and over among
            // others, some made again from their text, some longer than the table keeps.
            let few = Gen.elements [ "qty"; "c1"; "p2"; "p6"; "user"; String('k', 40); "a\u0001b"; "ключ" ]
            let named = Gen.listOf (Gen.frequency [ 3, few; 1, anyKey; 1, Gen.map (fun (k: string) -> String(k.ToCharArray())) few ])
            Prop.forAll (Arb.fromGen named) (fun keys ->
                keys
                |> List.forall (fun key ->
                    let segment = Segment.Key key
                    let expected = struct (String.Concat("\u0001", NodePath.escapeKey key), NodePath.segmentCost segment)
                    NodePath.segmentNameAndCost segment = expected && NodePath.segmentNameAndCost segment = expected))

        testCase "a key named again is given the name made before, not a new string"
        <| fun () ->
            let struct (first, _) = NodePath.segmentNameAndCost (Segment.Key "cart")
            let struct (again, _) = NodePath.segmentNameAndCost (Segment.Key(String("cart".ToCharArray())))
            Expect.isTrue (obj.ReferenceEquals(first, again)) "the same string"
            let long = String('k', 33)
            let struct (longFirst, _) = NodePath.segmentNameAndCost (Segment.Key long)
            let struct (longAgain, _) = NodePath.segmentNameAndCost (Segment.Key long)
            Expect.equal longAgain longFirst "a long key's name"

        testCase "a value's nodes are its leaves and its non-empty containers"
        <| fun () ->
            Expect.equal (NodePath.nodeCount (Json.parse "1")) 1 "a leaf"
            Expect.equal (NodePath.nodeCount (Json.parse "{}")) 1 "an empty object is a leaf"
            Expect.equal (NodePath.nodeCount (Json.parse "[]")) 1 "an empty array is a leaf"
            Expect.equal (NodePath.nodeCount (Json.parse """{"a":1,"b":[null,{},{"c":"x"}]}""")) 7 "the root, a, b, b[0], b[1], b[2] and c"

        testCase "a name with a broken escape is no key"
        <| fun () ->
            for text in [ "\\"; "a\\12"; "\\zzzz"; "x\\00" ] do
                Expect.isNone (NodePath.tryUnescapeKey text) $"'{text}' is not an escaped key"

        testCase "segments are named by their mark and text"
        <| fun () ->
            Expect.equal (NodePath.segmentName (Segment.Key "a.b")) "\u0001a.b" "a key keeps its dots"
            Expect.equal (NodePath.segmentName (Segment.Index 12)) "\u000212" "an index in decimal"
            Expect.equal (NodePath.segmentName (Segment.Index 64)) "\u000264" "an index past the names made ahead"
            Expect.equal (NodePath.segmentName (Segment.Index 63)) "\u000263" "the last index named ahead"
            Expect.equal (NodePath.segmentCost (Segment.Key "ab")) 5L "\"ab\":"
            Expect.equal (NodePath.segmentCost (Segment.Index 3)) 0L "an index costs nothing beside its value"
    ]
