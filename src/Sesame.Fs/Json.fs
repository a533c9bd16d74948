namespace Sesame

open System
open System.Collections
open System.Collections.Generic
open System.Collections.Immutable
open System.Text
open System.Text.Json
open System.Text.Json.Serialization

/// <summary>
/// An immutable JSON value: the form a session is held in. Changing a value returns a new
/// value that shares every untouched part with the old one, so an update copies one spine.
/// </summary>
/// <remarks>
/// Objects compare equal when they hold the same keys with equal values, in any order (they
/// keep their insertion order for writing). Numbers compare by their exact text.
/// Every System.Text.Json serializer writes and reads it as the JSON it is (<see cref="T:Sesame.JsonValueConverter"/>),
/// so a handler can return it (Giraffe's <c>json</c>, a minimal API's result) as it is.
/// </remarks>
[<CustomEquality; NoComparison; RequireQualifiedAccess; JsonConverter(typeof<JsonValueConverter>)>]
type Json =
    /// JSON <c>null</c>.
    | Null
    /// <c>true</c> or <c>false</c>.
    | Bool of bool
    /// A number, kept as its exact text.
    | Number of JsonNumber
    /// A string.
    | String of string
    /// An array.
    | Array of ImmutableArray<Json>
    /// An object, with its keys in insertion order.
    | Object of JsonObject

    static member private Same(a: Json, b: Json) : bool =
        obj.ReferenceEquals(a, b)
        || match a, b with
           | Null, Null -> true
           | Bool x, Bool y -> x = y
           | Number x, Number y -> x.Equals y
           | String x, String y -> String.Equals(x, y, StringComparison.Ordinal)
           | Array xs, Array ys ->
               xs.Length = ys.Length
               && (let mutable i = 0
                   while i < xs.Length && Json.Same(xs[i], ys[i]) do
                       i <- i + 1
                   i = xs.Length)
           | Object x, Object y -> x.SameAs y
           | _ -> false

    override this.Equals(other: obj) =
        match other with
        | :? Json as j -> Json.Same(this, j)
        | _ -> false

    override this.GetHashCode() =
        match this with
        | Null -> 0
        | Bool b -> if b then 1 else 2
        | Number n -> n.GetHashCode()
        | String s -> StringComparer.Ordinal.GetHashCode s
        | Array xs ->
            let mutable h = 17
            for x in xs do
                h <- h * 31 + x.GetHashCode()
            h
        | Object o ->
            // Order-insensitive, to agree with Equals.
            let mutable h = 19
            for KeyValue(k, v) in o do
                h <- h + (StringComparer.Ordinal.GetHashCode k ^^^ v.GetHashCode())
            h

    interface IEquatable<Json> with
        member this.Equals(other: Json) = Json.Same(this, other)

/// <summary>The immutable, insertion-ordered properties of a JSON object.</summary>
/// <remarks>Lookups are linear for small objects and go through an index built on first use for wide ones.</remarks>
and [<Sealed; AllowNullLiteral(false)>] JsonObject internal (properties: KeyValuePair<string, Json>[]) =

    /// Below this width a linear scan beats building a dictionary.
    static let indexThreshold = 8
    static let empty = JsonObject([||])

    [<DefaultValue>]
    val mutable private index: Dictionary<string, int>

    member private this.IndexOf(key: string) : int =
        if properties.Length <= indexThreshold then
            let mutable i = 0
            while i < properties.Length && not (String.Equals(properties[i].Key, key, StringComparison.Ordinal)) do
                i <- i + 1
            if i = properties.Length then -1 else i
        else
            let index =
                match this.index with
                | null ->
                    let built = Dictionary<string, int>(properties.Length, StringComparer.Ordinal)
                    for i in 0 .. properties.Length - 1 do
                        built[properties[i].Key] <- i
                    this.index <- built
                    built
                | built -> built
            match index.TryGetValue key with
            | true, i -> i
            | _ -> -1

    /// The empty object.
    static member Empty = empty

    /// <summary>Builds an object from key/value pairs; a repeated key keeps its first position and its last value.</summary>
    /// <exception cref="System.ArgumentNullException">A key or a value is null.</exception>
    static member OfSeq(pairs: seq<string * Json>) : JsonObject = JsonObject.Create(ReadOnlySpan [| for key, value in pairs -> KeyValuePair(key, value) |])

    /// <summary>Builds an object from key/value pairs, in their order; a repeated key keeps its first position and its
    /// last value. The pairs are copied.</summary>
    /// <exception cref="System.ArgumentNullException">A key or a value is null.</exception>
    static member Create(pairs: ReadOnlySpan<KeyValuePair<string, Json>>) : JsonObject =
        if pairs.IsEmpty then
            empty
        else
            let properties: KeyValuePair<string, Json>[] = Array.zeroCreate pairs.Length
            let mutable count = 0
            let mutable positions: Dictionary<string, int> = null
            for i in 0 .. pairs.Length - 1 do
                let pair = pairs[i]
                let key = pair.Key
                if isNull key then raise (ArgumentNullException("pairs", $"The key of pair {i} is null."))
                if isNull (box pair.Value) then raise (ArgumentNullException("pairs", $"The value of pair {i} (key '{key}') is null."))
                // A scan while the object is narrow; an index of its keys once it is wide.
                if count >= indexThreshold && isNull positions then
                    positions <- Dictionary(StringComparer.Ordinal)
                    for j in 0 .. count - 1 do
                        positions[properties[j].Key] <- j
                let existing =
                    if isNull positions then
                        let mutable found = -1
                        let mutable j = 0
                        while found < 0 && j < count do
                            if String.Equals(properties[j].Key, key, StringComparison.Ordinal) then found <- j
                            j <- j + 1
                        found
                    else
                        match positions.TryGetValue key with
                        | true, j -> j
                        | _ -> -1
                if existing >= 0 then
                    properties[existing] <- pair
                else
                    if not (isNull positions) then positions[key] <- count
                    properties[count] <- pair
                    count <- count + 1
            JsonObject(if count = properties.Length then properties else Array.sub properties 0 count)

    /// The number of properties.
    member _.Count = properties.Length

    /// <summary>The value at <paramref name="key"/>, when the object has the key.</summary>
    /// <param name="key">The key.</param>
    /// <param name="value">The value, when found.</param>
    /// <returns>Whether the object has the key.</returns>
    member this.TryGetValue(key: string, [<Runtime.InteropServices.Out>] value: byref<Json>) : bool =
        match this.IndexOf key with
        | -1 -> false
        | i ->
            value <- properties[i].Value
            true

    /// The value at the key, if any (for Sesame's own code, which matches on it).
    /// The properties in order, for walks that must not allocate an enumerator.
    member internal _.Properties = properties

    member internal this.Find(key: string) : Json voption =
        match this.IndexOf key with
        | -1 -> ValueNone
        | i -> ValueSome properties[i].Value

    /// <summary>Whether the object has <paramref name="key"/>.</summary>
    member this.ContainsKey(key: string) = this.IndexOf key >= 0

    /// <summary>A copy with <paramref name="key"/> set to <paramref name="value"/> (in place if it exists, else appended).</summary>
    member this.Add(key: string, value: Json) : JsonObject =
        match this.IndexOf key with
        | -1 ->
            let copy = Array.zeroCreate (properties.Length + 1)
            Array.blit properties 0 copy 0 properties.Length
            copy[properties.Length] <- KeyValuePair(key, value)
            JsonObject copy
        | i when obj.ReferenceEquals(properties[i].Value, value) -> this
        | i ->
            let copy = Array.copy properties
            copy[i] <- KeyValuePair(key, value)
            JsonObject copy

    /// <summary>A copy without <paramref name="key"/> (this object itself when the key is absent).</summary>
    member this.Remove(key: string) : JsonObject =
        match this.IndexOf key with
        | -1 -> this
        | i -> JsonObject(Array.removeAt i properties)

    /// Whether both objects hold the same keys with equal values, in any order.
    member internal this.SameAs(other: JsonObject) =
        obj.ReferenceEquals(this, other)
        || properties.Length = other.Count
           && properties
              |> Array.forall (fun (KeyValue(k, v)) ->
                  match other.Find k with
                  | ValueSome w -> v.Equals w
                  | ValueNone -> false)

    interface IEnumerable<KeyValuePair<string, Json>> with
        member _.GetEnumerator() = (properties :> seq<_>).GetEnumerator()

    interface IEnumerable with
        member _.GetEnumerator() = properties.GetEnumerator()

/// <summary>
/// Writes and reads a <see cref="T:Sesame.Json"/> as the JSON it is, for System.Text.Json: numbers keep their exact
/// text, objects their key order. It is the type's own converter, so a serializer given the type <c>Json</c> uses it
/// (Giraffe's <c>json</c>, <c>JsonSerializer.Serialize</c>); one that serializes by the value's runtime type (an F# union
/// case is a class of its own) uses it when its options hold it: <c>AddSesame</c> puts it first in ASP.NET Core's
/// minimal-API and MVC options, and <c>Json.createSerializerOptions</c> puts it before FSharp.SystemTextJson's
/// converter (which would otherwise claim the tree as an F# union).
/// </summary>
and [<Sealed>] JsonValueConverter() =
    inherit JsonConverterFactory()

    // Values every tree may share (they are immutable): a parsed tree holds these rather than a copy each.
    static let trueValue = Json.Bool true
    static let falseValue = Json.Bool false
    static let emptyArray = Json.Array ImmutableArray<Json>.Empty
    static let emptyObject = Json.Object JsonObject.Empty

    /// The integers 0 to 999 as read (counters, quantities, indexes: most numbers in a session are small), each made the
    /// first time it is read. A race makes two equal values, either of which stands.
    static let smallIntegers: Json[] = Array.zeroCreate 1000

    /// A number token's value: a small integer's shared one, when it is one (its text is at most three digits with no
    /// leading zero), else a new one.
    static member private ReadNumber(utf8: ReadOnlySpan<byte>) : Json =
        let mutable n = 0
        let mutable i = 0
        let small = utf8.Length <= 3 && (utf8.Length = 1 || utf8[0] <> byte '0')
        while small && i < utf8.Length && utf8[i] >= byte '0' && utf8[i] <= byte '9' do
            n <- n * 10 + int (utf8[i] - byte '0')
            i <- i + 1
        if small && i = utf8.Length then
            let kept = smallIntegers[n]
            if isNull (box kept) then
                let number = Json.Number(JsonNumber.Trusted(Encoding.UTF8.GetString utf8))
                smallIntegers[n] <- number
                number
            else
                kept
        else
            Json.Number(JsonNumber.Trusted(Encoding.UTF8.GetString utf8))

    /// An object key the reader stands on: the string read last time for the same bytes on this thread, when it is
    /// still kept (see KeyStrings).
    static member private ReadKey(reader: byref<Utf8JsonReader>, keys: KeyStrings) : string =
        if reader.ValueIsEscaped || reader.HasValueSequence then
            reader.GetString()
        else
            match keys.Find reader.ValueSpan with
            | null ->
                let key = reader.GetString()
                keys.Keep(reader.ValueSpan, key)
                key
            | key -> key

    /// Reads a value, pushing each container's items and members on this thread's stacks and taking them off into
    /// arrays of their exact length when it ends.
    static member private Read(reader: byref<Utf8JsonReader>, items: ReadStack<Json>, members: ReadStack<KeyValuePair<string, Json>>, keys: KeyStrings) : Json =
        match reader.TokenType with
        | JsonTokenType.Null -> Json.Null
        | JsonTokenType.True -> trueValue
        | JsonTokenType.False -> falseValue
        | JsonTokenType.Number ->
            if reader.HasValueSequence then
                let sequence = reader.ValueSequence
                JsonValueConverter.ReadNumber(ReadOnlySpan(Buffers.BuffersExtensions.ToArray(&sequence)))
            else
                JsonValueConverter.ReadNumber reader.ValueSpan
        | JsonTokenType.String -> Json.String(reader.GetString())
        | JsonTokenType.StartArray ->
            let start = items.Count
            while reader.Read() && reader.TokenType <> JsonTokenType.EndArray do
                items.Push(JsonValueConverter.Read(&reader, items, members, keys))
            if items.Count = start then emptyArray else Json.Array(Runtime.InteropServices.ImmutableCollectionsMarshal.AsImmutableArray(items.PopFrom start))
        | JsonTokenType.StartObject ->
            let start = members.Count
            while reader.Read() && reader.TokenType <> JsonTokenType.EndObject do
                let key = JsonValueConverter.ReadKey(&reader, keys)
                reader.Read() |> ignore
                members.Push(KeyValuePair(key, JsonValueConverter.Read(&reader, items, members, keys)))
            if members.Count = start then
                emptyObject
            else
                // A repeated key keeps its first position and its last value (Create's rule).
                let o = JsonObject.Create(members.From start)
                members.CutTo start
                Json.Object o
        | token -> raise (JsonException $"Unexpected JSON token {token}.")

    /// Reads the value the reader stands on (its first token), leaving the reader on its last token.
    static member internal ReadValue(reader: byref<Utf8JsonReader>) : Json =
        let items = ReadStack<Json>.ForThisThread
        let members = ReadStack<KeyValuePair<string, Json>>.ForThisThread
        // Where this read's containers start: a read that fails part way leaves nothing of its own on the stacks.
        let itemsFrom = items.Count
        let membersFrom = members.Count
        try
            JsonValueConverter.Read(&reader, items, members, KeyStrings.ForThisThread)
        finally
            items.CutTo itemsFrom
            members.CutTo membersFrom

    /// Writes a value (the writer is not flushed).
    static member internal WriteValue(writer: Utf8JsonWriter, json: Json) =
        match json with
        | Json.Null -> writer.WriteNullValue()
        | Json.Bool b -> writer.WriteBooleanValue b
        | Json.Number n -> writer.WriteRawValue(n.Text, skipInputValidation = true)
        | Json.String s -> writer.WriteStringValue s
        | Json.Array items ->
            writer.WriteStartArray()
            for item in items do
                JsonValueConverter.WriteValue(writer, item)
            writer.WriteEndArray()
        | Json.Object o ->
            writer.WriteStartObject()
            for KeyValue(k, v) in o do
                writer.WritePropertyName k
                JsonValueConverter.WriteValue(writer, v)
            writer.WriteEndObject()

    /// <summary>Whether the type is <c>Json</c> or one of its cases.</summary>
    override _.CanConvert(typeToConvert: Type) = typeof<Json>.IsAssignableFrom typeToConvert

    /// <summary>The converter for <c>Json</c> or one of its cases.</summary>
    override _.CreateConverter(typeToConvert: Type, _options: JsonSerializerOptions) =
        Activator.CreateInstance(typedefof<JsonTreeConverter<Json>>.MakeGenericType typeToConvert) :?> JsonConverter

/// Writes and reads one type of <see cref="T:Sesame.Json"/> (the union, or one of its cases) as its JSON.
and [<Sealed>] internal JsonTreeConverter<'tree>() =
    inherit JsonConverter<'tree>()

    /// JSON null is a value like any other, not a missing one.
    override _.HandleNull = true

    override _.Read(reader: byref<Utf8JsonReader>, _typeToConvert: Type, _options: JsonSerializerOptions) =
        match JsonValueConverter.ReadValue &reader :> obj with
        | :? 'tree as tree -> tree
        | other -> raise (JsonException $"Expected JSON of the kind {typeof<'tree>.Name}, not {other}.")

    override _.Write(writer: Utf8JsonWriter, value: 'tree, _options: JsonSerializerOptions) =
        JsonValueConverter.WriteValue(
            writer,
            (match box value with
             | :? Json as json -> json
             | _ -> Json.Null)
        )
