module Sesame.Tests.JsonTests

open Sesame
open Sesame.Tests.Generators
open System
open System.Text
open System.Text.Json
open System.Text.Json.Nodes
open FsCheck
open FsCheck.FSharp
open Xunit

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

[<Fact>]
let ``every tree survives a round trip through JSON text`` () =
    check (Prop.forAll trees (fun tree ->
        let text = Json.serialize tree.Value
        Json.parse text = tree.Value
        // Writing keeps insertion order, so writing what was read gives the same text.
        && Json.serialize (Json.parse text) = text))

[<Fact>]
let ``every tree survives a round trip through UTF-8 bytes`` () =
    check (Prop.forAll trees (fun tree ->
        let bytes = Json.toUtf8 tree.Value
        Json.parseUtf8 (ReadOnlySpan bytes) = tree.Value
        && Encoding.UTF8.GetString bytes = Json.serialize tree.Value))

[<Fact>]
let ``every written tree is JSON that System.Text.Json reads back to the same tree`` () =
    check (Prop.forAll trees (fun tree ->
        let text = Json.serialize tree.Value
        use document = JsonDocument.Parse text
        let reread = Json.ofJsonElement document.RootElement
        reread = tree.Value))

[<Fact>]
let ``every tree survives a round trip through JsonNode`` () =
    check (Prop.forAll trees (fun tree ->
        let node = Json.toJsonNode tree.Value
        Json.ofJsonNode node = tree.Value
        // The node is a real, independent JsonNode: writing it gives the same text.
        && (match node with
            | null -> tree.Value = Json.Null
            | node -> node.ToJsonString(JsonSerializerOptions(Encoder = Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping)) = Json.serialize tree.Value)))

[<Fact>]
let ``every tree survives a round trip through JsonElement`` () =
    check (Prop.forAll trees (fun tree ->
        let element = Json.toJsonElement tree.Value
        Json.ofJsonElement element = tree.Value))

[<Fact>]
let ``equal trees have equal hash codes whatever the key order`` () =
    check (Prop.forAll trees (fun tree ->
        let reordered = reverseKeys tree.Value
        reordered = tree.Value
        && reordered.GetHashCode() = tree.Value.GetHashCode()
        && Json.parse (Json.serialize tree.Value) |> fun t -> t.GetHashCode() = tree.Value.GetHashCode()))

[<Fact>]
let ``changing any leaf makes a tree unequal`` () =
    let rec firstLeafChanged (json: Json) : Json option =
        match json with
        | Json.Object o ->
            o |> Seq.tryPick (fun (KeyValue(k, v)) -> firstLeafChanged v |> Option.map (fun v' -> Json.Object(o.Add(k, v'))))
        | Json.Array items ->
            items |> Seq.indexed |> Seq.tryPick (fun (i, v) -> firstLeafChanged v |> Option.map (fun v' -> Json.Array(items.SetItem(i, v'))))
        | Json.String s -> Some(Json.String(s + "x"))
        | Json.Number n -> Some(Json.Number(JsonNumber.Add(n, JsonNumber.OfInt64 1L)))
        | Json.Bool b -> Some(Json.Bool(not b))
        | Json.Null -> Some(Json.Bool false)
    check (Prop.forAll trees (fun tree ->
        match firstLeafChanged tree.Value with
        | Some changed -> changed <> tree.Value
        | None -> true))

[<Fact>]
let ``number additions are associative, exact and commutative`` () =
    let arb = Arb.fromGen (Gen.three wideNumber)
    let sum a b = try Ok(JsonNumber.Add(a, b)) with :? OverflowException -> Error()
    let mutable computed = 0
    check (Prop.forAll arb (fun (a, b, c) ->
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
        associative && exact && commutes))
    Assert.True(computed > 500, $"only {computed} of the sums were computed")

[<Fact>]
let ``every number survives parse and write with its exact text`` () =
    check (Prop.forAll (Arb.fromGen (numberTextWith 5000)) (fun text ->
        let n = JsonNumber.Parse text
        n.Text = text
        && Json.serialize (Json.Number n) = text
        && Json.parse text = Json.Number n
        && JsonNumber.TryParse text = Some n))

[<Fact>]
let ``every decimal converts to a number and back without loss`` () =
    let decimals =
        Gen.map3 (fun (lo: int) (mid: int) (scale: int) -> Decimal(lo, mid, 0, lo % 2 = 0, byte scale))
            (Gen.choose (Int32.MinValue, Int32.MaxValue)) (Gen.choose (0, Int32.MaxValue)) (Gen.choose (0, 28))
    check (Prop.forAll (Arb.fromGen decimals) (fun d ->
        let n = JsonNumber.OfDecimal d
        n.TryGetDecimal() = ValueSome d && Json.decode<decimal> (Json.Number n) = d))

// ---------------------------------------------------------------------------------------------
// Depth and size
// ---------------------------------------------------------------------------------------------

[<Fact>]
let ``1,000 levels of nesting parse, write and compare`` () =
    let text = nestedArrays 1000
    let tree = Json.parse text
    Assert.Equal(text, Json.serialize tree)
    Assert.Equal(tree, Json.parse (Json.serialize tree))
    let mutable node = tree
    for _ in 1..1000 do
        match node with
        | Json.Array items when items.Length = 1 -> node <- items[0]
        | other -> failwith $"expected a one-item array, got {Json.serialize other}"
    Assert.Equal(Json.int64 1L, node)
    Assert.Equal(tree, Json.ofJsonNode (Json.toJsonNode tree))
    Assert.Equal(tree, Json.ofJsonElement (Json.toJsonElement tree))

[<Fact>]
let ``nesting as deep as Json.MaxDepth is read`` () =
    let tree = Json.parse (nestedArrays Json.MaxDepth)
    Assert.Equal(nestedArrays Json.MaxDepth, Json.serialize tree)
    let objects = String.replicate Json.MaxDepth "{\"a\":" + "null" + String.replicate Json.MaxDepth "}"
    Assert.Equal(objects, Json.serialize (Json.parse objects))

[<Fact>]
let ``nesting deeper than Json.MaxDepth is refused with a JsonException`` () =
    Assert.ThrowsAny<JsonException>(fun () -> Json.parse (nestedArrays (Json.MaxDepth + 1)) |> ignore) |> ignore
    let objects = String.replicate (Json.MaxDepth + 1) "{\"a\":" + "null" + String.replicate (Json.MaxDepth + 1) "}"
    Assert.ThrowsAny<JsonException>(fun () -> Json.parse objects |> ignore) |> ignore
    Assert.ThrowsAny<JsonException>(fun () -> Json.parseUtf8 (ReadOnlySpan(Encoding.UTF8.GetBytes(nestedArrays 5000))) |> ignore) |> ignore
    match Json.tryParse (nestedArrays (Json.MaxDepth + 1)) with
    | Ok _ -> failwith "a too-deep text was accepted"
    | Error message -> Assert.Contains("depth", message)

[<Fact>]
let ``a tree nested deeper than Json.MaxDepth is not written`` () =
    let deepest = Json.parse (nestedArrays Json.MaxDepth)
    let tooDeep = Json.array [ deepest ]
    Assert.Throws<InvalidOperationException>(fun () -> Json.serialize tooDeep |> ignore) |> ignore
    Assert.Throws<InvalidOperationException>(fun () -> Json.toUtf8 tooDeep |> ignore) |> ignore

[<Fact>]
let ``a 100,000-item array parses, writes and compares`` () =
    let text = "[" + String.Join(",", Seq.init 100_000 string) + "]"
    let tree = Json.parse text
    match tree with
    | Json.Array items ->
        Assert.Equal(100_000, items.Length)
        Assert.Equal(Json.int64 99_999L, items[99_999])
    | other -> failwith $"not an array: {other}"
    Assert.Equal(text, Json.serialize tree)
    Assert.Equal(tree, Json.parse (Json.serialize tree))

[<Fact>]
let ``an object with many keys finds every key`` () =
    let tree = Json.object [ for i in 0..999 -> $"k{i}", Json.int64 (int64 i) ]
    match tree with
    | Json.Object o ->
        Assert.Equal(1000, o.Count)
        for i in 0..999 do
            Assert.Equal(ValueSome(Json.int64 (int64 i)), o.TryFind $"k{i}")
        Assert.Equal(ValueNone, o.TryFind "k1000")
        Assert.False(o.ContainsKey "K1")
    | other -> failwith $"not an object: {other}"

// ---------------------------------------------------------------------------------------------
// Keys and strings
// ---------------------------------------------------------------------------------------------

[<Fact>]
let ``empty keys and empty strings survive a round trip`` () =
    let tree = json """{"":"","a":{"":[""]}}"""
    Assert.Equal("""{"":"","a":{"":[""]}}""", Json.serialize tree)
    match tree with
    | Json.Object o -> Assert.Equal(ValueSome(Json.String ""), o.TryFind "")
    | other -> failwith $"not an object: {other}"

[<Fact>]
let ``unicode keys and strings survive a round trip and are written readably`` () =
    let tree = Json.object [ "日本", Json.string "東京"; "é", Json.string "😀 👍🏽"; "Я", Json.string "\u2028" ]
    let text = Json.serialize tree
    Assert.Contains("\"日本\":\"東京\"", text)
    Assert.Contains("\"é\"", text)
    Assert.Equal(tree, Json.parse text)
    Assert.Equal(tree, Json.parse """{"\u65e5\u672c":"\u6771\u4eac","\u00e9":"\ud83d\ude00 \ud83d\udc4d\ud83c\udffd","\u042f":"\u2028"}""")

[<Fact>]
let ``control characters, quotes and backslashes in strings are escaped and read back`` () =
    let tricky = "quote \" backslash \\ newline \n nul \u0000 tab \t </script>"
    let text = Json.serialize (Json.string tricky)
    Assert.DoesNotContain("\n", text)
    Assert.Equal(Json.String tricky, Json.parse text)

[<Fact>]
let ``a repeated key keeps its first position and its last value`` () =
    let tree = json """{"a":1,"b":2,"a":3}"""
    Assert.Equal("""{"a":3,"b":2}""", Json.serialize tree)
    let wide = json ("{" + String.Join(",", [ for i in 0..20 -> $"\"k{i}\":{i}" ]) + ",\"k3\":\"again\"}")
    match wide with
    | Json.Object o ->
        Assert.Equal(21, o.Count)
        Assert.Equal(ValueSome(Json.String "again"), o.TryFind "k3")
        Assert.Equal("k3", (Seq.item 3 o).Key)
    | other -> failwith $"not an object: {other}"
    Assert.Equal("""{"x":2,"y":1}""", Json.serialize (Json.object [ "x", Json.int64 0L; "y", Json.int64 1L; "x", Json.int64 2L ]))

[<Fact>]
let ``objects are equal whatever their key order and are written in insertion order`` () =
    let ab = json """{"a":1,"b":[true,null]}"""
    let ba = json """{"b":[true,null],"a":1}"""
    Assert.Equal(ab, ba)
    Assert.Equal(ab.GetHashCode(), ba.GetHashCode())
    Assert.Equal("""{"b":[true,null],"a":1}""", Json.serialize ba)
    Assert.NotEqual(json "[1,2]", json "[2,1]")
    Assert.NotEqual(json """{"a":1}""", json """{"a":1,"b":1}""")
    Assert.NotEqual(json "null", json "false")
    Assert.NotEqual(json "\"1\"", json "1")

[<Fact>]
let ``invalid JSON is refused with a JsonException`` () =
    for text in [ ""; "   "; "{"; "[1,]"; """{"a":1,}"""; "[1] [2]"; "// c\n1"; "{a:1}"; "'a'"; "01"; "NaN"; "1 x"; "\"\\x\"" ] do
        Assert.ThrowsAny<JsonException>(fun () -> Json.parse text |> ignore) |> ignore
        match Json.tryParse text with
        | Ok value -> failwith $"'{text}' was accepted as {Json.serialize value}"
        | Error message -> Assert.False(String.IsNullOrWhiteSpace message)

[<Fact>]
let ``white space around the value is allowed`` () =
    Assert.Equal(json "[1,{\"a\":null}]", json " \n\t[ 1 , { \"a\" : null } ] \r\n")

// ---------------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------------

[<Fact>]
let ``numbers that do not fit a double survive parse and write`` () =
    for text in [ "9007199254740993"; "1e400"; "3.14159265358979323846264338327950288"; "-1E-400"; "1.10" ] do
        Assert.Equal($"[{text}]", Json.serialize (json $"[{text}]"))
        Assert.Equal($"{{\"n\":{text}}}", Encoding.UTF8.GetString(Json.toUtf8 (json $"{{\"n\":{text}}}")))
    Assert.Equal(ValueSome 9007199254740993L, (JsonNumber.Parse "9007199254740993").TryGetInt64())
    Assert.Equal(Double.PositiveInfinity, (JsonNumber.Parse "1e400").ToDouble())

[<Fact>]
let ``numbers that do not fit a double add exactly`` () =
    let add a b = (JsonNumber.Add(JsonNumber.Parse a, JsonNumber.Parse b)).Text
    Assert.Equal("9007199254740994", add "9007199254740993" "1")
    Assert.Equal("1" + String('0', 399) + "1", add "1e400" "1")
    Assert.Equal("4.14159265358979323846264338327950288", add "3.14159265358979323846264338327950288" "1")
    Assert.Equal("0", add "9223372036854775807" "-9223372036854775807")
    Assert.Equal("18446744073709551614", add "9223372036854775807" "9223372036854775807")
    Assert.Equal("2e400", add "1e400" "1e400")

[<Fact>]
let ``1.10 plus 1 is 2.10`` () =
    Assert.Equal("2.10", (JsonNumber.Add(JsonNumber.Parse "1.10", JsonNumber.OfInt64 1L)).Text)
    Assert.Equal("2.10", (JsonNumber.Add(JsonNumber.OfInt64 1L, JsonNumber.OfDecimal 1.10m)).Text)
    Assert.Equal("0.00", (JsonNumber.Add(JsonNumber.Parse "1.10", JsonNumber.Parse "-1.1")).Text)
    Assert.Equal("-0.05", (JsonNumber.Add(JsonNumber.Parse "0.05", JsonNumber.Parse "-0.1")).Text)
    Assert.Equal("1.5", (JsonNumber.Add(JsonNumber.Parse "1e-1", JsonNumber.Parse "1.4")).Text)

[<Fact>]
let ``a sum that could need thousands of digits is refused rather than rounded`` () =
    let add a b = JsonNumber.Add(JsonNumber.Parse a, JsonNumber.Parse b)
    let ex = Assert.Throws<OverflowException>(fun () -> add "1e100000" "1" |> ignore)
    Assert.Contains("1e100000", ex.Message)
    Assert.Throws<OverflowException>(fun () -> add "1" "1e-4097" |> ignore) |> ignore
    Assert.Throws<OverflowException>(fun () -> add "1e4097" "1e4097" |> ignore) |> ignore
    Assert.Equal("1" + String('0', 4095) + "1", (add "1e4096" "1").Text)
    Assert.Equal("1." + String('0', 4095) + "1", (add "1e-4096" "1").Text)

[<Fact>]
let ``sums of numbers far apart in scale agree whatever their grouping`` () =
    // Each pair is within the bound, so every grouping is computed, and gives the same text.
    let n = JsonNumber.Parse
    let a, b, c = n "-10e4067", n "409", n "91e-1277"
    let left = JsonNumber.Add(JsonNumber.Add(a, b), c)
    let right = JsonNumber.Add(a, JsonNumber.Add(b, c))
    Assert.Equal(left, right)
    Assert.Equal(exactSum (exactSum a.Text b.Text |> fun (m, e) -> $"{m}e{e}") c.Text, exactParts left.Text)

[<Fact>]
let ``numbers are equal when their texts are equal`` () =
    Assert.Equal(JsonNumber.Parse "1.10", JsonNumber.OfDecimal 1.10m)
    Assert.NotEqual(JsonNumber.Parse "1.1", JsonNumber.Parse "1.10")
    Assert.NotEqual(json "1", json "1.0")
    Assert.Equal("1.5", (JsonNumber.OfDouble 1.5).Text)
    Assert.Equal("0.1", (JsonNumber.OfDouble 0.1).Text)

[<Fact>]
let ``text that is not a JSON number is refused`` () =
    for text in [ ""; " 1"; "1 "; "01"; "-"; "+1"; "1."; ".5"; "1e"; "1e+"; "NaN"; "Infinity"; "-Infinity"; "0x10"; "1,5"; "١" ] do
        Assert.Throws<FormatException>(fun () -> JsonNumber.Parse text |> ignore) |> ignore
        Assert.Equal(None, JsonNumber.TryParse text)
    Assert.Throws<FormatException>(fun () -> JsonNumber.Parse null |> ignore) |> ignore

[<Fact>]
let ``a number converts to int64 and decimal only without loss`` () =
    Assert.Equal(ValueNone, (JsonNumber.Parse "9223372036854775808").TryGetInt64())
    Assert.Equal(ValueNone, (JsonNumber.Parse "1.5").TryGetInt64())
    Assert.Equal(ValueSome 1.10m, (JsonNumber.Parse "1.10").TryGetDecimal())
    Assert.Equal(ValueSome 1200m, (JsonNumber.Parse "1.2e3").TryGetDecimal())
    Assert.Equal(ValueNone, (JsonNumber.Parse "1e400").TryGetDecimal())
    Assert.Equal(ValueNone, (JsonNumber.Parse "0.1000000000000000000000000000001").TryGetDecimal())
    Assert.Equal(ValueNone, (JsonNumber.Parse "3.14159265358979323846264338327950288").TryGetDecimal())

[<Fact>]
let ``NaN and infinities are refused by JsonNumber.OfDouble`` () =
    for value in [ nan; infinity; -infinity ] do
        Assert.Throws<ArgumentException>(fun () -> JsonNumber.OfDouble value |> ignore) |> ignore

// ---------------------------------------------------------------------------------------------
// Typed encode and decode
// ---------------------------------------------------------------------------------------------

type Shipping =
    | Pickup
    | Courier of company: string * days: int

type Line = { Sku: string; Qty: int; Price: decimal }

type Cart =
    { Owner: string
      Coupon: string option
      Lines: Line list
      Tags: Map<string, int>
      Shipping: Shipping
      Note: string option }

type Reading = { Label: string; Value: float }

[<Fact>]
let ``an F# record with an option, a list, a map and a union round-trips through encode and decode`` () =
    let cart =
        { Owner = "ana"
          Coupon = Some "SPRING"
          Lines = [ { Sku = "x-1"; Qty = 2; Price = 1.10m }; { Sku = "日本"; Qty = 1; Price = 1234567890.123456789m } ]
          Tags = Map [ "gift", 1; "first.name", 2 ]
          Shipping = Courier("dhl", 3)
          Note = None }
    let encoded = Json.encode cart
    Assert.Equal(cart, Json.decode<Cart> encoded)
    Assert.Equal(cart, Json.decode<Cart> (Json.parse (Json.serialize encoded)))
    // The encoded tree is ordinary JSON that paths can reach into (web casing, exact decimals).
    Assert.Equal(Some(Json.string "SPRING"), Path.tryGet (path "coupon") encoded)
    Assert.Equal(Some(Json.Number(JsonNumber.Parse "1.10")), Path.tryGet (path "lines[0].price") encoded)
    Assert.Equal(Some(Json.int64 2L), Path.tryGet (path "tags[\"first.name\"]") encoded)
    let pickup = { cart with Shipping = Pickup; Coupon = None; Lines = []; Tags = Map.empty }
    Assert.Equal(pickup, Json.decode<Cart> (Json.encode pickup))

[<Fact>]
let ``decoding JSON that does not fit the type is a JsonException`` () =
    Assert.ThrowsAny<JsonException>(fun () -> Json.decode<Line> (json """{"sku":1,"qty":"x","price":1}""") |> ignore) |> ignore

[<Fact>]
let ``encoding and decoding a Json value is the identity`` () =
    let tree = json """{"a":[1.10,null]}"""
    Assert.True(obj.ReferenceEquals(tree, Json.encode tree))
    Assert.True(obj.ReferenceEquals(tree, Json.decode<Json> tree))

[<Fact>]
let ``encoding a record holding NaN is refused`` () =
    Assert.Throws<ArgumentException>(fun () -> Json.encode { Label = "broken"; Value = nan } |> ignore) |> ignore
    Assert.Throws<ArgumentException>(fun () -> Json.encode { Label = "huge"; Value = infinity } |> ignore) |> ignore
    Assert.Equal(json """{"label":"ok","value":0.5}""", Json.encode { Label = "ok"; Value = 0.5 })

[<Fact>]
let ``JsonNode and JsonElement convert at the edges, null included`` () =
    Assert.Null(Json.toJsonNode Json.Null)
    Assert.Equal(Json.Null, Json.ofJsonNode null)
    let node = JsonNode.Parse """{"a":[1,2],"big":1e400}"""
    node["a"].AsArray().Add(JsonValue.Create 3)
    node["b"] <- JsonValue.Create "日本"
    Assert.Equal(json """{"a":[1,2,3],"big":1e400,"b":"日本"}""", Json.ofJsonNode node)
    Assert.Equal(json """{"a":[1,2,3],"big":1e400,"b":"日本"}""", Json.encode node)
    use document = JsonDocument.Parse """[true,{"x":9007199254740993}]"""
    Assert.Equal(json """[true,{"x":9007199254740993}]""", Json.ofJsonElement document.RootElement)
    // The element from toJsonElement owns its memory: it outlives every document.
    let element = Json.toJsonElement (json """{"k":"v"}""")
    GC.Collect()
    Assert.Equal("v", element.GetProperty("k").GetString())
