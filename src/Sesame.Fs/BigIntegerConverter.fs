namespace Sesame

open System
open System.Globalization
open System.Numerics
open System.Text.Json
open System.Text.Json.Serialization

/// <summary>
/// Writes a <see cref="T:System.Numerics.BigInteger"/> as the JSON number it is, every digit kept, and reads one back
/// from an integer: System.Text.Json has no converter of its own for it, and wrote one as an object of its properties
/// (<c>{"isPowerOfTwo":false,…}</c>), which decoded to zero. Sesame's numbers keep any number of digits.
/// </summary>
[<Sealed>]
type internal BigIntegerConverter() =
    inherit JsonConverter<BigInteger>()

    override _.Read(reader: byref<Utf8JsonReader>, _typeToConvert: Type, _options: JsonSerializerOptions) =
        if reader.TokenType <> JsonTokenType.Number then raise (JsonException $"A BigInteger is read from a JSON number, not {reader.TokenType}.")
        let text =
            if reader.HasValueSequence then
                let mutable sequence = reader.ValueSequence
                Text.Encoding.UTF8.GetString(Buffers.BuffersExtensions.ToArray(&sequence))
            else
                Text.Encoding.UTF8.GetString reader.ValueSpan
        match BigInteger.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture) with
        | true, value -> value
        | _ -> raise (JsonException $"A BigInteger is read from an integer, not {text}.")

    override _.Write(writer: Utf8JsonWriter, value: BigInteger, _options: JsonSerializerOptions) =
        writer.WriteRawValue(value.ToString(CultureInfo.InvariantCulture), true)
