/// Integers, booleans and strings converted to and from the tree directly (BuiltInValues): the same value, or the same
/// error, as System.Text.Json's serializer gives through JSON text, under Sesame's options and under options that change
/// what the serializer does with those types.
module Sesame.Tests.BuiltInValuesTests

#nowarn "9" // QuestionMarkEncoder's members take pointers.

open System
open System.Text.Json
open System.Text.Json.Serialization
open Expecto
open FsCheck
open FsCheck.FSharp
open Sesame
open Sesame.Tests.Generators

/// Writes 64-bit integers as strings of their own, and reads them back.
type private TaggedInt64Converter() =
    inherit JsonConverter<int64>()
    override _.Read(reader, _, _) = Int64.Parse(reader.GetString().Substring 1)
    override _.Write(writer, value, _) = writer.WriteStringValue $"n{value}"

/// Writes strings upper-cased, and reads them lower-cased.
type private ShoutingStringConverter() =
    inherit JsonConverter<string>()
    override _.Read(reader, _, _) = reader.GetString().ToLowerInvariant()
    override _.Write(writer, value, _) = writer.WriteStringValue(value.ToUpperInvariant())

/// Writes every character past ASCII as a question mark: an encoder that changes text rather than escaping it (an
/// encoder's members take pointers).
type private QuestionMarkEncoder() =
    inherit Text.Encodings.Web.JavaScriptEncoder()
    override _.MaxOutputCharactersPerInputCharacter = 1
    override _.WillEncode(scalar: int) = scalar > 127

    override _.FindFirstCharacterToEncode(text: nativeptr<char>, length: int) =
        let mutable i = 0
        while i < length && int (NativeInterop.NativePtr.get text i) <= 127 do
            i <- i + 1
        if i = length then -1 else i

    override _.TryEncodeUnicodeScalar(_: int, buffer: nativeptr<char>, bufferLength: int, written: byref<int>) =
        if bufferLength < 1 then
            written <- 0
            false
        else
            NativeInterop.NativePtr.set buffer 0 '?'
            written <- 1
            true

/// The options the laws run under: Sesame's, the serializer's plain defaults, numbers written as strings, options whose
/// converters for these types are the app's own, and an encoder of the app's.
let private optionsUnderTest =
    let numbersAsStrings = JsonSerializerOptions(NumberHandling = JsonNumberHandling.WriteAsString)
    let ownConverters = Json.createSerializerOptions ()
    ownConverters.Converters.Add(TaggedInt64Converter())
    ownConverters.Converters.Add(ShoutingStringConverter())
    [
        "Sesame's options", Json.createSerializerOptions ()
        "the serializer's defaults", JsonSerializerOptions()
        "numbers written as strings", numbersAsStrings
        "the app's own converters", ownConverters
        "an encoder of the app's", JsonSerializerOptions(Encoder = QuestionMarkEncoder())
    ]

/// What a call gave: its value, or the type of what it threw.
let private outcome (f: unit -> 'value) =
    try
        Ok(f ())
    with e ->
        Error(e.GetType().Name)

/// The tree the serializer writes for a value, read back: what encodeWith gave before it converted anything itself.
let private throughText (options: JsonSerializerOptions) (value: 'value) =
    outcome (fun () -> Json.parseUtf8 (ReadOnlySpan(JsonSerializer.SerializeToUtf8Bytes<'value>(value, options))))

/// The value the serializer reads from a tree's text: what decodeWith gave before it converted anything itself.
let private fromText<'value> (options: JsonSerializerOptions) (json: Json) = outcome (fun () -> JsonSerializer.Deserialize<'value>(Json.toUtf8 json, options))

/// Strings with the pieces of the generators' strings, and now and then a surrogate of a pair on its own.
let private strings =
    Gen.frequency [
        8, jsonString
        1,
        gen {
            let! text = jsonString
            let! at = Gen.choose (0, text.Length)
            let! surrogate = Gen.elements [ '\uD800'; '\uDBFF'; '\uDC00'; '\uDFFF' ]
            return text.Insert(at, string surrogate)
        }
    ]

let private int64s =
    Gen.frequency [
        3, Gen.choose (-1000, 1000) |> Gen.map int64
        3, Gen.choose64 (Int64.MinValue, Int64.MaxValue)
        1, Gen.elements [ Int64.MinValue; Int64.MaxValue; 0L; -1L; int64 Int32.MaxValue + 1L; int64 Int32.MinValue - 1L ]
    ]

/// Trees of every kind a typed read may meet: numbers of every spelling, strings (numbers among them), booleans, null,
/// and containers.
let private trees =
    Gen.frequency [
        6, numberTextWith 40 |> Gen.map (JsonNumber.Parse >> Json.Number)
        2, int64s |> Gen.map Json.int64
        2, strings |> Gen.map Json.String
        1, Gen.elements [ "12"; "-7"; "1.5"; "9223372036854775808"; " 3"; "" ] |> Gen.map Json.String
        1, Gen.elements [ Json.Bool true; Json.Bool false; Json.Null; Json.String null; Json.emptyObject; Json.array [ Json.int64 1L ] ]
    ]

/// Every options instance, for a law over one type: encodeWith gives what the serializer's text gives.
let private encodesAsTheSerializer (name: string) (values: Gen<'value>) =
    testList name [
        for optionsName, options in optionsUnderTest do
            testLaw $"encoding under {optionsName} gives the tree the serializer's text gives"
            <| fun () ->
                Prop.forAll (Arb.fromGen values) (fun value ->
                    let direct = outcome (fun () -> Json.encodeWith options value)
                    let expected = throughText options value
                    claim (direct = expected) (fun () -> $"%A{value}: %A{direct}, the serializer's text %A{expected}"))
    ]

let private decodesAsTheSerializer<'value when 'value: equality> (name: string) =
    testList name [
        for optionsName, options in optionsUnderTest do
            testLaw $"decoding under {optionsName} gives the value or the error the serializer gives"
            <| fun () ->
                Prop.forAll (Arb.fromGen trees) (fun tree ->
                    let direct = outcome (fun () -> Json.decodeWith<'value> options tree)
                    let expected = fromText<'value> options tree
                    claim (direct = expected) (fun () -> $"{Json.serialize tree}: %A{direct}, the serializer %A{expected}"))
    ]

[<Tests>]
let tests =
    testList "Built-in values" [
        encodesAsTheSerializer "64-bit integers" int64s
        encodesAsTheSerializer "32-bit integers" (Gen.choose (Int32.MinValue, Int32.MaxValue))
        encodesAsTheSerializer "booleans" (Gen.elements [ true; false ])
        encodesAsTheSerializer "strings" strings
        decodesAsTheSerializer<int64> "reading 64-bit integers"
        decodesAsTheSerializer<int> "reading 32-bit integers"
        decodesAsTheSerializer<bool> "reading booleans"
        decodesAsTheSerializer<string> "reading strings"

        test "the app's own converters are used for integers and strings, both ways" {
            let options = snd optionsUnderTest[3]
            Expect.equal (Json.encodeWith options 5L) (Json.String "n5") "The app's converter writes the integer."
            Expect.equal (Json.decodeWith<int64> options (Json.String "n7")) 7L "The app's converter reads it."
            Expect.equal (Json.encodeWith options "abc") (Json.String "ABC") "The app's converter writes the string."
            Expect.equal (Json.decodeWith<string> options (Json.String "XYZ")) "xyz" "The app's converter reads it."
        }

        test "an encoder of the app's writes the strings" {
            let options = snd optionsUnderTest[4]
            Expect.equal (Json.encodeWith options "é漢字😀") (Json.String "????") "The app's encoder's text, as the serializer writes it."
            Expect.equal (Json.encodeWith options "plain") (Json.String "plain") "Text it leaves alone."
        }

        test "numbers written as strings stay strings" {
            let options = snd optionsUnderTest[2]
            Expect.equal (Json.encodeWith options 42L) (Json.String "42") "WriteAsString writes the integer as a string."
            Expect.equal (Json.encodeWith options 42) (Json.String "42") "And a 32-bit one."
        }

        test "a session read gives the stored integer, string and boolean" {
            let options = Json.createSerializerOptions ()
            let session = Json.parse """{"times":1771581,"name":"Ada","on":true,"big":9223372036854775807}"""
            let at (key: string) = (SessionPath.tryGet (SessionPath.parse key) session).Value
            Expect.equal (Json.decodeWith<int64> options (at "times")) 1771581L "The counter."
            Expect.equal (Json.decodeWith<int> options (at "times")) 1771581 "The counter as a 32-bit integer."
            Expect.equal (Json.decodeWith<string> options (at "name")) "Ada" "The name."
            Expect.isTrue (Json.decodeWith<bool> options (at "on")) "The flag."
            Expect.equal (Json.decodeWith<int64> options (at "big")) Int64.MaxValue "The largest 64-bit integer."
            Expect.throwsT<JsonException> (fun () -> Json.decodeWith<int> options (at "big") |> ignore) "Past a 32-bit integer: the serializer's error."
        }
    ]
