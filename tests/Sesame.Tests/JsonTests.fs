module Sesame.Tests.JsonTests

open Sesame
open Sesame.Tests.Generators
open System
open System.Text
open System.Text.Json
open System.Text.Json.Nodes
open FsCheck
open FsCheck.FSharp
open Expecto

/// Text of <paramref name="depth"/> nested arrays around 1.
let nestedArrays (depth: int) = String.replicate depth "[" + "1" + String.replicate depth "]"

/// The same tree with every object's keys in reverse order.
let rec reverseKeys (json: Json) =
    match json with
    | Json.Object o -> o |> Seq.rev |> Seq.map (fun (KeyValue(k, v)) -> k, reverseKeys v) |> Json.object
    | Json.Array items -> items |> Seq.map reverseKeys |> Json.array
    | other -> other

// ---------------------------------------------------------------------------------------------
// Laws
// ---------------------------------------------------------------------------------------------


// ---------------------------------------------------------------------------------------------
// Typed encode and decode
// ---------------------------------------------------------------------------------------------

type Shipping =
    | Pickup
    | Courier of company: string * days: int

type Line = { Sku: string; Qty: int; Price: decimal }

type Cart = { Owner: string; Coupon: string option; Lines: Line list; Tags: Map<string, int>; Shipping: Shipping; Note: string option }

type Reading = { Label: string; Value: float }

[<Tests>]
let tests =
    testList "Json" [
        testLaw "every tree survives a round trip through JSON text"
        <| fun () ->
            Prop.forAll trees (fun tree ->
                let text = Json.serialize tree.Value
                Json.parse text = tree.Value
                // Writing keeps insertion order, so writing what was read gives the same text.
                && Json.serialize (Json.parse text) = text)

        testLaw "every tree survives a round trip through UTF-8 bytes"
        <| fun () ->
            Prop.forAll trees (fun tree ->
                let bytes = Json.toUtf8 tree.Value
                Json.parseUtf8 (ReadOnlySpan bytes) = tree.Value && Encoding.UTF8.GetString bytes = Json.serialize tree.Value)

        testLaw "every written tree is JSON that System.Text.Json reads back to the same tree"
        <| fun () ->
            Prop.forAll trees (fun tree ->
                let text = Json.serialize tree.Value
                use document = JsonDocument.Parse text
                let reread = Json.ofJsonElement document.RootElement
                reread = tree.Value)

        testLaw "every tree survives a round trip through JsonNode"
        <| fun () ->
            Prop.forAll trees (fun tree ->
                let node = Json.toJsonNode tree.Value
                Json.ofJsonNode node = tree.Value
                // The node is a real, independent JsonNode: writing it gives the same text.
                && (match node with
                    | null -> tree.Value = Json.Null
                    | node ->
                        node.ToJsonString(JsonSerializerOptions(Encoder = Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping)) =
                            Json.serialize tree.Value))

        testLaw "every tree survives a round trip through JsonElement"
        <| fun () ->
            Prop.forAll trees (fun tree ->
                let element = Json.toJsonElement tree.Value
                Json.ofJsonElement element = tree.Value)

        testLaw "equal trees have equal hash codes whatever the key order"
        <| fun () ->
            Prop.forAll trees (fun tree ->
                let reordered = reverseKeys tree.Value
                reordered = tree.Value
                && reordered.GetHashCode() = tree.Value.GetHashCode()
                && Json.parse (Json.serialize tree.Value) |> fun t -> t.GetHashCode() = tree.Value.GetHashCode())

        testLaw "changing any leaf makes a tree unequal"
        <| fun () ->
            let rec firstLeafChanged (json: Json) : Json option =
                match json with
                | Json.Object o -> o |> Seq.tryPick (fun (KeyValue(k, v)) -> firstLeafChanged v |> Option.map (fun v' -> Json.Object(o.Add(k, v'))))
                | Json.Array items ->
                    items |> Seq.indexed |> Seq.tryPick (fun (i, v) -> firstLeafChanged v |> Option.map (fun v' -> Json.Array(items.SetItem(i, v'))))
                | Json.String s -> Some(Json.String(s + "x"))
                | Json.Number n -> Some(Json.Number(JsonNumber.Add(n, JsonNumber.OfInt64 1L)))
                | Json.Bool b -> Some(Json.Bool(not b))
                | Json.Null -> Some(Json.Bool false)
            Prop.forAll trees (fun tree ->
                match firstLeafChanged tree.Value with
                | Some changed -> changed <> tree.Value
                | None -> true)

        testGuardedLaw "number additions are associative, exact and commutative"
        <| fun () ->
            let arb = Arb.fromGen (Gen.three wideNumber)
            let sum a b =
                try
                    Ok(JsonNumber.Add(a, b))
                with :? OverflowException ->
                    Error()
            let mutable computed = 0
            Prop.forAll arb (fun (a, b, c) ->
                let left = sum a b |> Result.bind (fun ab -> sum ab c)
                let right = sum b c |> Result.bind (fun bc -> sum a bc)
                let exact =
                    match sum a b with
                    | Ok ab ->
                        computed <- computed + 1
                        exactParts ab.Text = exactSum a.Text b.Text
                    | Error() -> true
                let commutes =
                    match sum a b, sum b a with
                    | Ok x, Ok y -> x = y
                    | Error(), Error() -> true
                    | _ -> false
                // Either both groupings give the same text, or both refuse: increments folded in any grouping agree.
                let associative =
                    match left, right with
                    | Ok l, Ok r -> l = r
                    | Error(), Error() -> true
                    | _ -> false
                associative && exact && commutes),
            fun () -> Expect.isGreaterThan computed 500 $"only {computed} of the sums were computed"

        testLaw "every number survives parse and write with its exact text"
        <| fun () ->
            Prop.forAll (Arb.fromGen (numberTextWith 5000)) (fun text ->
                let n = JsonNumber.Parse text
                n.Text = text && Json.serialize (Json.Number n) = text && Json.parse text = Json.Number n && JsonNumber.TryParse text = (true, n))

        testLaw "every decimal converts to a number and back without loss"
        <| fun () ->
            let decimals =
                Gen.map3
                    (fun (lo: int) (mid: int) (scale: int) -> Decimal(lo, mid, 0, lo % 2 = 0, byte scale))
                    (Gen.choose (Int32.MinValue, Int32.MaxValue))
                    (Gen.choose (0, Int32.MaxValue))
                    (Gen.choose (0, 28))
            Prop.forAll (Arb.fromGen decimals) (fun d ->
                let n = JsonNumber.OfDecimal d
                n.TryGetDecimal() = (true, d) && Json.decode<decimal>(Json.Number n) = d)

        // ---------------------------------------------------------------------------------------------
        // Depth and size
        // ---------------------------------------------------------------------------------------------

        testCase "every System.Text.Json serializer writes and reads a Json tree as the JSON it is"
        <| fun () ->
            let tree = json """{"price":1.10,"big":9007199254740993,"huge":1e400,"z":null,"a":[true,{"b":"✓"}],"empty":{}}"""
            let text = Json.serialize tree
            let withFSharp = JsonSerializerOptions(JsonSerializerDefaults.Web)
            withFSharp.Converters.Add(JsonValueConverter())
            withFSharp.Converters.Add(System.Text.Json.Serialization.JsonFSharpConverter())
            for name, options in
                [
                    "default", JsonSerializerOptions.Default
                    "web (minimal APIs)", JsonSerializerOptions(JsonSerializerDefaults.Web)
                    "Giraffe's default (camelCase)", JsonSerializerOptions(PropertyNamingPolicy = JsonNamingPolicy.CamelCase)
                    "Sesame's own", Json.createSerializerOptions ()
                    "FSharp.SystemTextJson after Sesame's converter", withFSharp
                ] do
                // The serializer's encoder decides how text is escaped (the default one escapes ✓): the same JSON either way.
                let written = JsonSerializer.Serialize(tree, options)
                Expect.equal (Json.serialize (Json.parse written)) text $"{name}: written as its JSON"
                // By its runtime type (the class of its case), as ASP.NET Core writes results: only options holding the converter.
                if options.Converters |> Seq.exists (fun c -> c :? JsonValueConverter) then
                    let byRuntimeType = JsonSerializer.Serialize(tree, tree.GetType(), options)
                    Expect.equal (Json.serialize (Json.parse byRuntimeType)) text $"{name}: by its runtime type"
                Expect.equal (Json.serialize (JsonSerializer.Deserialize<Json>(text, options))) text $"{name}: read back exactly"
                // Inside other values too, as a handler returns it.
                let asMember = JsonSerializer.Serialize({| session = tree; n = 1 |}, options)
                // (F# orders an anonymous record's members by name.)
                Expect.equal (Json.serialize (Json.parse asMember)) ("{\"n\":1,\"session\":" + text + "}") $"{name}: as a member"
                Expect.equal (JsonSerializer.Serialize(Json.Null, options)) "null" $"{name}: JSON null"
                // A case read as its case, and refused as another.
                Expect.equal (JsonSerializer.Deserialize<Json>("[1]", options)) (Json.array [ Json.int64 1L ]) $"{name}: an array"

        testCase "1,000 levels of nesting parse, write and compare"
        <| fun () ->
            let text = nestedArrays 1000
            let tree = Json.parse text
            Expect.equal (Json.serialize tree) text "Json.serialize tree"
            Expect.equal (Json.parse (Json.serialize tree)) tree "Json.parse (Json.serialize tree)"
            let mutable node = tree
            for _ in 1..1000 do
                match node with
                | Json.Array items when items.Length = 1 -> node <- items[0]
                | other -> failwith $"expected a one-item array, got {Json.serialize other}"
            Expect.equal node (Json.int64 1L) "node"
            Expect.equal (Json.ofJsonNode (Json.toJsonNode tree)) tree "Json.ofJsonNode (Json.toJsonNode tree)"
            Expect.equal (Json.ofJsonElement (Json.toJsonElement tree)) tree "Json.ofJsonElement (Json.toJsonElement tree)"

        testCase "nesting as deep as Json.MaxDepth is read"
        <| fun () ->
            let tree = Json.parse (nestedArrays Json.MaxDepth)
            Expect.equal (Json.serialize tree) (nestedArrays Json.MaxDepth) "Json.serialize tree"
            let objects = String.replicate Json.MaxDepth "{\"a\":" + "null" + String.replicate Json.MaxDepth "}"
            Expect.equal (Json.serialize (Json.parse objects)) objects "Json.serialize (Json.parse objects)"

        testCase "nesting deeper than Json.MaxDepth is refused with a JsonException"
        <| fun () ->
            throwsAny<JsonException>(fun () -> Json.parse (nestedArrays (Json.MaxDepth + 1)) |> ignore) |> ignore
            let objects = String.replicate (Json.MaxDepth + 1) "{\"a\":" + "null" + String.replicate (Json.MaxDepth + 1) "}"
            throwsAny<JsonException>(fun () -> Json.parse objects |> ignore) |> ignore
            throwsAny<JsonException>(fun () -> Json.parseUtf8 (ReadOnlySpan(Encoding.UTF8.GetBytes(nestedArrays 5000))) |> ignore) |> ignore
            match Json.tryParse (nestedArrays (Json.MaxDepth + 1)) with
            | Ok _ -> failwith "a too-deep text was accepted"
            | Error message -> Expect.stringContains message "depth" "message"

        testCase "a tree nested deeper than Json.MaxDepth is not written"
        <| fun () ->
            let deepest = Json.parse (nestedArrays Json.MaxDepth)
            let tooDeep = Json.array [ deepest ]
            throws<InvalidOperationException>(fun () -> Json.serialize tooDeep |> ignore) |> ignore
            throws<InvalidOperationException>(fun () -> Json.toUtf8 tooDeep |> ignore) |> ignore

        testCase "a 100,000-item array parses, writes and compares"
        <| fun () ->
            let text = "[" + String.Join(",", Seq.init 100_000 string) + "]"
            let tree = Json.parse text
            match tree with
            | Json.Array items ->
                Expect.equal items.Length 100_000 "items.Length"
                Expect.equal (items[99_999]) (Json.int64 99_999L) "items[99_999]"
            | other -> failwith $"not an array: {other}"
            Expect.equal (Json.serialize tree) text "Json.serialize tree"
            Expect.equal (Json.parse (Json.serialize tree)) tree "Json.parse (Json.serialize tree)"

        testCase "an object with many keys finds every key"
        <| fun () ->
            let tree = Json.object [ for i in 0..999 -> $"k{i}", Json.int64 (int64 i) ]
            match tree with
            | Json.Object o ->
                Expect.equal o.Count 1000 "o.Count"
                for i in 0..999 do
                    Expect.equal (o.TryGetValue $"k{i}") (true, Json.int64 (int64 i)) "o.TryGetValue $'k(i)'"
                Expect.isFalse (fst (o.TryGetValue "k1000")) "o.TryGetValue 'k1000'"
                Expect.isFalse (o.ContainsKey "K1") "o.ContainsKey 'K1'"
            | other -> failwith $"not an object: {other}"

        // ---------------------------------------------------------------------------------------------
        // Keys and strings
        // ---------------------------------------------------------------------------------------------

        testCase "empty keys and empty strings survive a round trip"
        <| fun () ->
            let tree = json """{"":"","a":{"":[""]}}"""
            Expect.equal (Json.serialize tree) ("""{"":"","a":{"":[""]}}""") "Json.serialize tree"
            match tree with
            | Json.Object o -> Expect.equal (o.TryGetValue "") (true, Json.String "") "o.TryGetValue ''"
            | other -> failwith $"not an object: {other}"

        testCase "unicode keys and strings survive a round trip and are written readably"
        <| fun () ->
            let tree = Json.object [ "日本", Json.string "東京"; "é", Json.string "😀 👍🏽"; "Я", Json.string "\u2028" ]
            let text = Json.serialize tree
            Expect.stringContains text ("\"日本\":\"東京\"") "text"
            Expect.stringContains text ("\"é\"") "text"
            Expect.equal (Json.parse text) tree "Json.parse text"
            Expect.equal
                (Json.parse """{"\u65e5\u672c":"\u6771\u4eac","\u00e9":"\ud83d\ude00 \ud83d\udc4d\ud83c\udffd","\u042f":"\u2028"}""")
                tree
                "Json.parse '''('u65e5u672c':'u6771u4eac','u00e9':'ud83dude00 ud83du..."

        testCase "control characters, quotes and backslashes in strings are escaped and read back"
        <| fun () ->
            let tricky = "quote \" backslash \\ newline \n nul \u0000 tab \t </script>"
            let text = Json.serialize (Json.string tricky)
            Expect.isFalse (text.Contains("\n")) "text does not contain 'n'"
            Expect.equal (Json.parse text) (Json.String tricky) "Json.parse text"

        testCase "a repeated key keeps its first position and its last value"
        <| fun () ->
            let tree = json """{"a":1,"b":2,"a":3}"""
            Expect.equal (Json.serialize tree) ("""{"a":3,"b":2}""") "Json.serialize tree"
            let wide = json ("{" + String.Join(",", [ for i in 0..20 -> $"\"k{i}\":{i}" ]) + ",\"k3\":\"again\"}")
            match wide with
            | Json.Object o ->
                Expect.equal o.Count 21 "o.Count"
                Expect.equal (o.TryGetValue "k3") (true, Json.String "again") "o.TryGetValue 'k3'"
                Expect.equal ((Seq.item 3 o).Key) "k3" "(Seq.item 3 o).Key"
            | other -> failwith $"not an object: {other}"
            Expect.equal
                (Json.serialize (Json.object [ "x", Json.int64 0L; "y", Json.int64 1L; "x", Json.int64 2L ]))
                ("""{"x":2,"y":1}""")
                "Json.serialize (Json.object [ 'x', Json.int64 0L; 'y', Json.int64 1..."

        testCase "a repeated key is one only within its own object, however the objects nest"
        <| fun () ->
            // Each object's keys are told apart from its own, not from those of the objects around it.
            Expect.equal
                (Json.serialize (json """{"k":1,"o":{"k":2,"j":3,"k":4},"a":[{"k":5},{"k":6,"k":7}],"k":8}"""))
                """{"k":8,"o":{"k":4,"j":3},"a":[{"k":5},{"k":7}]}"""
                "nested objects that repeat their parent's keys"
            // A wide object (an index of its keys) inside another: a key repeated in it keeps its first position.
            let wide = "{" + String.Join(",", [ for i in 0..11 -> $"\"w{i}\":{i}" ]) + ",\"w2\":\"again\",\"x\":0}"
            let tree = json $"""{{"x":1,"w2":2,"inner":{wide},"x":3}}"""
            let expectedInner = "{" + String.Join(",", [ for i in 0..11 -> if i = 2 then "\"w2\":\"again\"" else $"\"w{i}\":{i}" ]) + ",\"x\":0}"
            Expect.equal (Json.serialize tree) $"""{{"x":3,"w2":2,"inner":{expectedInner}}}""" "a wide object nested in another"

        testCase "a read that fails part way leaves its thread nothing to carry"
        <| fun () ->
            for text in [ "[1,[2,{\"a\":3,\"b\":"; "{\"a\":[1,2,{\"c\":[true,"; "[[[[1,2],[3,x" ] do
                throwsAny<JsonException>(fun () -> Json.parse text |> ignore) |> ignore
                Expect.equal (ReadStack<Json>.ForThisThread.Count) 0 $"items left on the stack after '{text}'"
                Expect.equal (ReadStack<Collections.Generic.KeyValuePair<string, Json>>.ForThisThread.Count) 0 $"members left after '{text}'"
            Expect.equal (json "[4,{\"d\":5}]") (Json.array [ Json.int64 4L; Json.object [ "d", Json.int64 5L ] ]) "the next read"
            // One wide value read does not leave its width held by the thread.
            json ("[" + String.Join(",", Seq.replicate 50_000 "0") + "]") |> ignore
            json ("{" + String.Join(",", [ for i in 0..49_999 -> $"\"k{i}\":0" ]) + "}") |> ignore
            Expect.isLessThanOrEqual (ReadStack<Json>.ForThisThread.Capacity) 1024 "the items' room after a 50,000-item array"
            Expect.isLessThanOrEqual
                (ReadStack<Collections.Generic.KeyValuePair<string, Json>>.ForThisThread.Capacity)
                1024
                "the members' room after a 50,000-key object"

        testCase "keys read again are the strings read before, and every key reads as itself"
        <| fun () ->
            match json """[{"sku":1,"qty":2},{"sku":3,"qty":4}]""" with
            | Json.Array items ->
                let keys (item: Json) =
                    match item with
                    | Json.Object o -> [ for KeyValue(k, _) in o -> k ]
                    | other -> failwith $"not an object: {other}"
                List.iter2
                    (fun (a: string) (b: string) -> Expect.isTrue (obj.ReferenceEquals(a, b)) $"'{a}' read twice is one string")
                    (keys items[0])
                    (keys items[1])
            | other -> failwith $"not an array: {other}"
            // Far more distinct keys than the table keeps, many of them sharing slots: each reads as its own text.
            let many = "{" + String.Join(",", [ for i in 0..4999 -> $"\"key-{i}\":{i}" ]) + "}"
            for _ in 1..2 do
                Expect.equal (Json.serialize (json many)) many "5,000 distinct keys, read twice"
            // An escaped key, the same key unescaped, a long key and a non-ASCII one.
            let long = String.replicate 40 "k"
            Expect.equal
                (Json.serialize (json $"""[{{"\u0061":1}},{{"a":2}},{{"{long}":3}},{{"{long}":4}},{{"ключ":5}},{{"ключ":6}}]"""))
                $"""[{{"a":1}},{{"a":2}},{{"{long}":3}},{{"{long}":4}},{{"ключ":5}},{{"ключ":6}}]"""
                "escaped, long and non-ASCII keys"
            // A key that is not valid UTF-8 is refused each time it is read: nothing unchecked is kept for the next read.
            let invalid = [| yield! "{\""B; 0xFFuy; 0xFEuy; yield! "\":1}"B |]
            for _ in 1..2 do
                throwsAny<JsonException>(fun () -> Json.parseUtf8 (ReadOnlySpan invalid) |> ignore) |> ignore

        testCase "small integers read as shared values, and every number keeps its text"
        <| fun () ->
            let text = "[0,7,999,1000,-0,-1,0.5,1.0,1e2,10,100,5,5]"
            let tree = json text
            Expect.equal (Json.serialize tree) text "numbers are written as read"
            match tree with
            | Json.Array items ->
                Expect.isTrue (obj.ReferenceEquals(items[11], items[12])) "5 read twice is one value"
                Expect.equal items[9] (Json.int64 10L) "10"
                Expect.equal items[3] (Json.int64 1000L) "1000"
            | other -> failwith $"not an array: {other}"

        testCase "JsonObject.Create keeps the pairs' order; a repeated key keeps its first position and its last value"
        <| fun () ->
            let pair (k: string) (v: int) = Collections.Generic.KeyValuePair(k, Json.int64 (int64 v))
            let narrow = Sesame.JsonObject.Create(ReadOnlySpan [| pair "b" 1; pair "a" 2; pair "b" 3 |])
            Expect.equal (Json.serialize (Json.Object narrow)) """{"b":3,"a":2}""" "narrow"
            // Past the width where keys are indexed rather than scanned.
            let wide =
                Sesame.JsonObject.Create(
                    ReadOnlySpan [|
                        for i in 0..19 do
                            yield pair $"k{i}" i
                        yield pair "k3" 33
                        yield pair "k19" 99
                    |]
                )
            let expected =
                "{"
                + String.Join(
                    ",",
                    [
                        for i in 0..19 ->
                            $"\"k{i}\":"
                            + (if i = 3 then "33"
                               elif i = 19 then "99"
                               else string i)
                    ]
                )
                + "}"
            Expect.equal (Json.serialize (Json.Object wide)) expected "wide"
            Expect.equal wide.Count 20 "wide.Count"
            Expect.equal (Sesame.JsonObject.Create(ReadOnlySpan.Empty).Count) 0 "no pairs"
            throwsAny<ArgumentNullException>(fun () ->
                Sesame.JsonObject.Create(ReadOnlySpan [| pair "a" 1; Collections.Generic.KeyValuePair(null, Json.Null) |]) |> ignore)
            |> ignore
            throwsAny<ArgumentNullException>(fun () ->
                Sesame.JsonObject.Create(ReadOnlySpan [| Collections.Generic.KeyValuePair("a", Unchecked.defaultof<Json>) |]) |> ignore)
            |> ignore
            // OfSeq (and so Json.object) is Create's rule, null values refused alike.
            Expect.equal (Json.serialize (Json.object [ "b", Json.int64 1L; "a", Json.int64 2L; "b", Json.int64 3L ])) """{"b":3,"a":2}""" "Json.object"
            throwsAny<ArgumentNullException>(fun () -> Json.object [ "a", Unchecked.defaultof<Json> ] |> ignore) |> ignore

        testCase "objects are equal whatever their key order and are written in insertion order"
        <| fun () ->
            let ab = json """{"a":1,"b":[true,null]}"""
            let ba = json """{"b":[true,null],"a":1}"""
            Expect.equal ba ab "ba"
            Expect.equal (ba.GetHashCode()) (ab.GetHashCode()) "ba.GetHashCode()"
            Expect.equal (Json.serialize ba) ("""{"b":[true,null],"a":1}""") "Json.serialize ba"
            Expect.notEqual (json "[2,1]") (json "[1,2]") "json '[2,1]'"
            Expect.notEqual (json """{"a":1,"b":1}""") (json """{"a":1}""") "json '''('a':1,'b':1)'''"
            Expect.notEqual (json "false") (json "null") "json 'false'"
            Expect.notEqual (json "1") (json "\"1\"") "json '1'"

        testCase "invalid JSON is refused with a JsonException"
        <| fun () ->
            for text in [ ""; "   "; "{"; "[1,]"; """{"a":1,}"""; "[1] [2]"; "// c\n1"; "{a:1}"; "'a'"; "01"; "NaN"; "1 x"; "\"\\x\"" ] do
                throwsAny<JsonException>(fun () -> Json.parse text |> ignore) |> ignore
                match Json.tryParse text with
                | Ok value -> failwith $"'{text}' was accepted as {Json.serialize value}"
                | Error message -> Expect.isFalse (String.IsNullOrWhiteSpace message) "String.IsNullOrWhiteSpace message"

        testCase "white space around the value is allowed"
        <| fun () -> Expect.equal (json " \n\t[ 1 , { \"a\" : null } ] \r\n") (json "[1,{\"a\":null}]") "json ' nt[ 1 , ( 'a' : null ) ] rn'"

        // ---------------------------------------------------------------------------------------------
        // Numbers
        // ---------------------------------------------------------------------------------------------

        testCase "numbers that do not fit a double survive parse and write"
        <| fun () ->
            for text in [ "9007199254740993"; "1e400"; "3.14159265358979323846264338327950288"; "-1E-400"; "1.10" ] do
                Expect.equal (Json.serialize (json $"[{text}]")) ($"[{text}]") "Json.serialize (json $'[(text)]')"
                Expect.equal
                    (Encoding.UTF8.GetString(Json.toUtf8 (json $"{{\"n\":{text}}}")))
                    ($"{{\"n\":{text}}}")
                    "Encoding.UTF8.GetString(Json.toUtf8 (json $'(('n':(text)))'))"
            Expect.equal ((JsonNumber.Parse "9007199254740993").TryGetInt64()) (true, 9007199254740993L) "(JsonNumber.Parse '9007199254740993').TryGetInt64()"
            Expect.equal ((JsonNumber.Parse "1e400").ToDouble()) Double.PositiveInfinity "(JsonNumber.Parse '1e400').ToDouble()"

        testCase "numbers that do not fit a double add exactly"
        <| fun () ->
            let add a b = (JsonNumber.Add(JsonNumber.Parse a, JsonNumber.Parse b)).Text
            Expect.equal (add "9007199254740993" "1") "9007199254740994" "add '9007199254740993' '1'"
            Expect.equal (add "1e400" "1") ("1" + String('0', 399) + "1") "add '1e400' '1'"
            Expect.equal
                (add "3.14159265358979323846264338327950288" "1")
                "4.14159265358979323846264338327950288"
                "add '3.14159265358979323846264338327950288' '1'"
            Expect.equal (add "9223372036854775807" "-9223372036854775807") "0" "add '9223372036854775807' '-9223372036854775807'"
            Expect.equal (add "9223372036854775807" "9223372036854775807") "18446744073709551614" "add '9223372036854775807' '9223372036854775807'"
            Expect.equal (add "1e400" "1e400") "2e400" "add '1e400' '1e400'"

        testCase "1.10 plus 1 is 2.10"
        <| fun () ->
            Expect.equal
                ((JsonNumber.Add(JsonNumber.Parse "1.10", JsonNumber.OfInt64 1L)).Text)
                "2.10"
                "(JsonNumber.Add(JsonNumber.Parse '1.10', JsonNumber.OfInt64 1L)).Text"
            Expect.equal
                ((JsonNumber.Add(JsonNumber.OfInt64 1L, JsonNumber.OfDecimal 1.10m)).Text)
                "2.10"
                "(JsonNumber.Add(JsonNumber.OfInt64 1L, JsonNumber.OfDecimal 1.10m))..."
            Expect.equal
                ((JsonNumber.Add(JsonNumber.Parse "1.10", JsonNumber.Parse "-1.1")).Text)
                "0.00"
                "(JsonNumber.Add(JsonNumber.Parse '1.10', JsonNumber.Parse '-1.1'))...."
            Expect.equal
                ((JsonNumber.Add(JsonNumber.Parse "0.05", JsonNumber.Parse "-0.1")).Text)
                "-0.05"
                "(JsonNumber.Add(JsonNumber.Parse '0.05', JsonNumber.Parse '-0.1'))...."
            Expect.equal
                ((JsonNumber.Add(JsonNumber.Parse "1e-1", JsonNumber.Parse "1.4")).Text)
                "1.5"
                "(JsonNumber.Add(JsonNumber.Parse '1e-1', JsonNumber.Parse '1.4')).Text"

        testCase "a sum that could need thousands of digits is refused rather than rounded"
        <| fun () ->
            let add a b = JsonNumber.Add(JsonNumber.Parse a, JsonNumber.Parse b)
            let ex = throws<OverflowException>(fun () -> add "1e100000" "1" |> ignore)
            Expect.stringContains ex.Message "1e100000" "ex.Message"
            throws<OverflowException>(fun () -> add "1" "1e-4097" |> ignore) |> ignore
            throws<OverflowException>(fun () -> add "1e4097" "1e4097" |> ignore) |> ignore
            Expect.equal ((add "1e4096" "1").Text) ("1" + String('0', 4095) + "1") "(add '1e4096' '1').Text"
            Expect.equal ((add "1e-4096" "1").Text) ("1." + String('0', 4095) + "1") "(add '1e-4096' '1').Text"

        testCase "sums of numbers far apart in scale agree whatever their grouping"
        <| fun () ->
            // Each pair is within the bound, so every grouping is computed, and gives the same text.
            let n = JsonNumber.Parse
            let a, b, c = n "-10e4067", n "409", n "91e-1277"
            let left = JsonNumber.Add(JsonNumber.Add(a, b), c)
            let right = JsonNumber.Add(a, JsonNumber.Add(b, c))
            Expect.equal right left "right"
            Expect.equal (exactParts left.Text) (exactSum (exactSum a.Text b.Text |> fun (m, e) -> $"{m}e{e}") c.Text) "exactParts left.Text"

        testCase "numbers are equal when their texts are equal"
        <| fun () ->
            Expect.equal (JsonNumber.OfDecimal 1.10m) (JsonNumber.Parse "1.10") "JsonNumber.OfDecimal 1.10m"
            Expect.notEqual (JsonNumber.Parse "1.10") (JsonNumber.Parse "1.1") "JsonNumber.Parse '1.10'"
            Expect.notEqual (json "1.0") (json "1") "json '1.0'"
            Expect.equal ((JsonNumber.OfDouble 1.5).Text) "1.5" "(JsonNumber.OfDouble 1.5).Text"
            Expect.equal ((JsonNumber.OfDouble 0.1).Text) "0.1" "(JsonNumber.OfDouble 0.1).Text"

        testCase "text that is not a JSON number is refused"
        <| fun () ->
            for text in [ ""; " 1"; "1 "; "01"; "-"; "+1"; "1."; ".5"; "1e"; "1e+"; "NaN"; "Infinity"; "-Infinity"; "0x10"; "1,5"; "١" ] do
                throws<FormatException>(fun () -> JsonNumber.Parse text |> ignore) |> ignore
                Expect.isFalse (fst (JsonNumber.TryParse text)) "JsonNumber.TryParse text"
            throws<FormatException>(fun () -> JsonNumber.Parse null |> ignore) |> ignore

        testCase "a number converts to int64 and decimal only without loss"
        <| fun () ->
            Expect.equal ((JsonNumber.Parse "9223372036854775808").TryGetInt64()) (false, 0L) "(JsonNumber.Parse '9223372036854775808').TryGetInt64()"
            Expect.equal ((JsonNumber.Parse "1.5").TryGetInt64()) (false, 0L) "(JsonNumber.Parse '1.5').TryGetInt64()"
            Expect.equal ((JsonNumber.Parse "1.10").TryGetDecimal()) (true, 1.10m) "(JsonNumber.Parse '1.10').TryGetDecimal()"
            Expect.equal ((JsonNumber.Parse "1.2e3").TryGetDecimal()) (true, 1200m) "(JsonNumber.Parse '1.2e3').TryGetDecimal()"
            Expect.equal ((JsonNumber.Parse "1e400").TryGetDecimal()) (false, 0m) "(JsonNumber.Parse '1e400').TryGetDecimal()"
            Expect.equal
                ((JsonNumber.Parse "0.1000000000000000000000000000001").TryGetDecimal())
                (false, 0m)
                "(JsonNumber.Parse '0.1000000000000000000000000000001').TryGetDecimal()"
            Expect.equal
                ((JsonNumber.Parse "3.14159265358979323846264338327950288").TryGetDecimal())
                (false, 0m)
                "(JsonNumber.Parse '3.14159265358979323846264338327950288').TryGetDe..."

        testCase "NaN and infinities are refused by JsonNumber.OfDouble"
        <| fun () ->
            for value in [ nan; infinity; -infinity ] do
                throws<ArgumentException>(fun () -> JsonNumber.OfDouble value |> ignore) |> ignore

        testCase "an F# record with an option, a list, a map and a union round-trips through encode and decode"
        <| fun () ->
            let cart = {
                Owner = "ana"
                Coupon = Some "SPRING"
                Lines = [ { Sku = "x-1"; Qty = 2; Price = 1.10m }; { Sku = "日本"; Qty = 1; Price = 1234567890.123456789m } ]
                Tags = Map [ "gift", 1; "first.name", 2 ]
                Shipping = Courier("dhl", 3)
                Note = None
            }
            let encoded = Json.encode cart
            Expect.equal (Json.decode<Cart> encoded) cart "Json.decode<Cart> encoded"
            Expect.equal (Json.decode<Cart>(Json.parse (Json.serialize encoded))) cart "Json.decode<Cart> (Json.parse (Json.serialize encoded))"
            // The encoded tree is ordinary JSON that paths can reach into (web casing, exact decimals).
            Expect.equal (SessionPath.tryGet (path "coupon") encoded) (Some(Json.string "SPRING")) "SessionPath.tryGet (path 'coupon') encoded"
            Expect.equal
                (SessionPath.tryGet (path "lines[0].price") encoded)
                (Some(Json.Number(JsonNumber.Parse "1.10")))
                "SessionPath.tryGet (path 'lines[0].price') encoded"
            Expect.equal
                (SessionPath.tryGet (path "tags[\"first.name\"]") encoded)
                (Some(Json.int64 2L))
                "SessionPath.tryGet (path 'tags['first.name']') encoded"
            let pickup = { cart with Shipping = Pickup; Coupon = None; Lines = []; Tags = Map.empty }
            Expect.equal (Json.decode<Cart>(Json.encode pickup)) pickup "Json.decode<Cart> (Json.encode pickup)"

        testCase "a BigInteger encodes as the JSON number it is, every digit kept, and decodes back; a fraction or a string does not"
        <| fun () ->
            let big = Numerics.BigInteger.Parse "-123456789012345678901234567890123456789"
            Expect.equal (Json.encode big) (json "-123456789012345678901234567890123456789") "Json.encode big"
            Expect.equal (Json.decode<Numerics.BigInteger>(Json.encode big)) big "Json.decode (Json.encode big)"
            Expect.equal (Json.encode [ big; Numerics.BigInteger.Zero ]) (json "[-123456789012345678901234567890123456789,0]") "in a list"
            // An increment of it stays exact: the stored value is a number.
            let incremented = Json.object [ "n", Json.encode big ] |> Patch.apply (Patch.fold [ Update.increment (path "n") 1m ])
            Expect.equal incremented (json """{"n":-123456789012345678901234567890123456788}""") "incremented"
            throwsAny<JsonException>(fun () -> Json.decode<Numerics.BigInteger>(json "1.5") |> ignore) |> ignore
            throwsAny<JsonException>(fun () -> Json.decode<Numerics.BigInteger>(json "\"12\"") |> ignore) |> ignore

        testCase "decoding JSON that does not fit the type is a JsonException"
        <| fun () -> throwsAny<JsonException>(fun () -> Json.decode<Line>(json """{"sku":1,"qty":"x","price":1}""") |> ignore) |> ignore

        testCase "encoding and decoding a Json value is the identity"
        <| fun () ->
            let tree = json """{"a":[1.10,null]}"""
            Expect.isTrue (obj.ReferenceEquals(tree, Json.encode tree)) "obj.ReferenceEquals(tree, Json.encode tree)"
            Expect.isTrue (obj.ReferenceEquals(tree, Json.decode<Json> tree)) "obj.ReferenceEquals(tree, Json.decode<Json> tree)"

        testCase "encoding a record holding NaN is refused"
        <| fun () ->
            throws<ArgumentException>(fun () -> Json.encode { Label = "broken"; Value = nan } |> ignore) |> ignore
            throws<ArgumentException>(fun () -> Json.encode { Label = "huge"; Value = infinity } |> ignore) |> ignore
            Expect.equal (Json.encode { Label = "ok"; Value = 0.5 }) (json """{"label":"ok","value":0.5}""") "Json.encode ( Label = 'ok'; Value = 0.5 )"

        testCase "JsonNode and JsonElement convert at the edges, null included"
        <| fun () ->
            Expect.isNull (Json.toJsonNode Json.Null) "Json.toJsonNode Json.Null"
            Expect.equal (Json.ofJsonNode null) Json.Null "Json.ofJsonNode null"
            let node = JsonNode.Parse """{"a":[1,2],"big":1e400}"""
            node["a"].AsArray().Add(JsonValue.Create 3)
            node["b"] <- JsonValue.Create "日本"
            Expect.equal (Json.ofJsonNode node) (json """{"a":[1,2,3],"big":1e400,"b":"日本"}""") "Json.ofJsonNode node"
            Expect.equal (Json.encode node) (json """{"a":[1,2,3],"big":1e400,"b":"日本"}""") "Json.encode node"
            use document = JsonDocument.Parse """[true,{"x":9007199254740993}]"""
            Expect.equal (Json.ofJsonElement document.RootElement) (json """[true,{"x":9007199254740993}]""") "Json.ofJsonElement document.RootElement"
            // The element from toJsonElement owns its memory: it outlives every document.
            let element = Json.toJsonElement (json """{"k":"v"}""")
            GC.Collect()
            Expect.equal (element.GetProperty("k").GetString()) "v" "element.GetProperty('k').GetString()"

        testLaw "the size counted without writing is the size written, escapes and non-ASCII text included"
        <| fun () ->
            Prop.forAll (Arb.fromGen jsonTree) (fun tree ->
                let written = int64 (Json.toUtf8 tree).Length
                claim (JsonSize.utf8Length tree = written) (fun () -> $"counted {JsonSize.utf8Length tree}, written {written}: {tree}"))

        testLaw "a patch's size counted without writing is the size written"
        <| fun () ->
            Prop.forAll (Arb.fromGen updates) (fun updates ->
                let patch = Patch.fold updates
                let written = if patch.IsEmpty then 0L else int64 (Patch.toUtf8 patch).Length
                claim (PatchSize.Utf8Length patch = written) (fun () -> $"counted {PatchSize.Utf8Length patch}, written {written}: {patch}"))

        testCase "sizes of the strings and indexes the writer treats apart"
        <| fun () ->
            for text in [ ""; "plain"; "q\"uote"; "back\\slash"; "tab\tnew\nline"; "\u0001\u001f\u007f"; "日本"; "é"; "😀"; "<>&'" ] do
                let tree = Json.object [ text, Json.String text ]
                Expect.equal (JsonSize.utf8Length tree) (int64 (Json.toUtf8 tree).Length) $"size of {text}"
            for index in [ 0; 9; 10; 99; 100; 123456789; Int32.MaxValue ] do
                let patch = Patch.fold [ Update.Set(SessionPath.ofSegments [ Segment.Key "a"; Segment.Index index ], Json.Null) ]
                Expect.equal (PatchSize.Utf8Length patch) (int64 (Patch.toUtf8 patch).Length) $"patch size at index {index}"
    ]
