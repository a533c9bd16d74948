namespace Sesame

open System
open System.Buffers
open System.Collections.Generic
open System.Collections.Immutable
open System.IO
open System.Text
open System.Text.Encodings.Web
open System.Text.Json
open System.Text.Json.Nodes
open System.Text.Json.Serialization

/// <summary>
/// Building, reading and writing <see cref="T:Sesame.Json"/> values: UTF-8 text through
/// System.Text.Json's reader and writer, conversion to and from <c>JsonNode</c> and
/// <c>JsonElement</c>, and typed encode/decode of .NET and F# values.
/// </summary>
[<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module Json =

    /// <summary>The deepest nesting Sesame reads or writes (1,024 levels). Deeper input is refused with a <c>JsonException</c>.</summary>
    [<Literal>]
    let MaxDepth = 1024

    /// The empty object: the value of a new session.
    let emptyObject = Json.Object Sesame.JsonObject.Empty

    /// <summary>A string value.</summary>
    let string (value: string) = if isNull value then Json.Null else Json.String value

    /// <summary>A number value from a 64-bit integer.</summary>
    let int64 (value: int64) = Json.Number(JsonNumber.OfInt64 value)

    /// <summary>A number value from a decimal, keeping its scale.</summary>
    let decimal (value: decimal) = Json.Number(JsonNumber.OfDecimal value)

    /// <summary>An object from key/value pairs.</summary>
    let object (pairs: seq<string * Json>) = Json.Object(Sesame.JsonObject.OfSeq pairs)

    /// <summary>An array from values.</summary>
    let array (items: seq<Json>) = Json.Array(ImmutableArray.CreateRange items)

    /// The reader's MaxDepth is the number of nested arrays and objects it accepts.
    let private readerOptionsFor (maxDepth: int) =
        JsonReaderOptions(MaxDepth = maxDepth, CommentHandling = JsonCommentHandling.Disallow, AllowTrailingCommas = false)

    let private writerOptionsFor (maxDepth: int) =
        // Relaxed escaping keeps non-ASCII text readable and compact; the output is stored, never put in HTML.
        JsonWriterOptions(Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, MaxDepth = maxDepth, SkipValidation = true)

    let private writerOptions = writerOptionsFor MaxDepth

    /// How stored sessions are written: one level deeper than toUtf8 allows, because an empty object or array set
    /// at the deepest path sits there. It is the limit the size check has always used; parseStoredUtf8 reads it back.
    let internal storedWriterOptions = writerOptionsFor (MaxDepth + 1)

    // Each thread's text buffers, so that writing text allocates only the result.
    let private texts = JsonTextBuffers writerOptions
    let private storedTexts = JsonTextBuffers storedWriterOptions

    let private read (reader: byref<Utf8JsonReader>) : Json = JsonValueConverter.ReadValue &reader

    /// Parses UTF-8 JSON that wraps values up to MaxDepth deep in <paramref name="wrappingLevels"/> levels of
    /// its own (a patch wraps each value in two arrays), so that such a value reads back wherever it can be written.
    let internal parseUtf8Wrapped (wrappingLevels: int) (utf8: ReadOnlySpan<byte>) : Json =
        let mutable reader = Utf8JsonReader(utf8, readerOptionsFor (MaxDepth + wrappingLevels))
        try
            if not (reader.Read()) then raise (JsonException "The JSON text is empty.")
            let value = read &reader
            // The reader itself rejects anything but white space after the root value.
            if reader.Read() then raise (JsonException "Unexpected text after the JSON value.")
            value
        with :? InvalidOperationException as e ->
            // A string whose escapes name a lone UTF-16 surrogate, which no .NET string of Sesame's may hold.
            raise (JsonException($"The JSON text cannot be read: {e.Message}", e))

    /// Parses text written by toStoredUtf8, which may nest one level deeper than parseUtf8 accepts.
    let internal parseStoredUtf8 (utf8: ReadOnlySpan<byte>) : Json = parseUtf8Wrapped 1 utf8

    /// <summary>Parses UTF-8 JSON text (one value, nothing after it).</summary>
    /// <exception cref="System.Text.Json.JsonException">The text is not valid JSON, or nests deeper than <see cref="F:Sesame.JsonModule.MaxDepth"/>.</exception>
    let parseUtf8 (utf8: ReadOnlySpan<byte>) : Json = parseUtf8Wrapped 0 utf8

    /// <summary>Parses JSON text.</summary>
    /// <exception cref="System.Text.Json.JsonException">The text is not valid JSON.</exception>
    let parse (text: string) : Json =
        if isNull text then nullArg "text"
        parseUtf8 (ReadOnlySpan(Encoding.UTF8.GetBytes text))

    /// <summary>Parses JSON text, giving the parser's message on failure.</summary>
    let tryParse (text: string) : Result<Json, string> =
        try
            Ok(parse text)
        with
        | :? JsonException as e -> Error e.Message
        | :? InvalidOperationException as e -> Error e.Message

    let private write (writer: Utf8JsonWriter) (json: Json) = JsonValueConverter.WriteValue(writer, json)

    /// <summary>Writes a value to a <c>Utf8JsonWriter</c> (the writer is not flushed).</summary>
    let writeTo (writer: Utf8JsonWriter) (json: Json) = write writer json

    /// <summary>Writes compact UTF-8 JSON to a buffer writer.</summary>
    /// <exception cref="System.InvalidOperationException">The value nests deeper than <see cref="F:Sesame.JsonModule.MaxDepth"/>, so it could not be read back.</exception>
    let writeToBuffer (buffer: IBufferWriter<byte>) (json: Json) =
        use writer = new Utf8JsonWriter(buffer, writerOptions)
        write writer json
        writer.Flush()

    /// <summary>The compact UTF-8 JSON text of a value.</summary>
    /// <exception cref="System.InvalidOperationException">The value nests deeper than <see cref="F:Sesame.JsonModule.MaxDepth"/>, so it could not be read back.</exception>
    let toUtf8 (json: Json) : byte[] =
        use text = texts.Rent()
        write (text.Start()) json
        text.Finish().ToArray()

    /// What toUtf8 writes, for a session the memory store keeps (see storedWriterOptions).
    let internal toStoredUtf8 (json: Json) : byte[] =
        use text = storedTexts.Rent()
        write (text.Start()) json
        text.Finish().ToArray()

    /// <summary>The compact JSON text of a value.</summary>
    /// <exception cref="System.InvalidOperationException">The value nests deeper than <see cref="F:Sesame.JsonModule.MaxDepth"/>, so it could not be read back.</exception>
    let serialize (json: Json) : string =
        use text = texts.Rent()
        write (text.Start()) json
        Encoding.UTF8.GetString(text.Finish())

    /// <summary>Converts a <c>JsonNode</c> (<c>null</c> meaning JSON null).</summary>
    let ofJsonNode (node: JsonNode) : Json =
        match node with
        | null -> Json.Null
        | node ->
            use text = texts.Rent()
            node.WriteTo(text.Start())
            parseUtf8 (text.Finish())

    /// <summary>Converts to a new, mutable <c>JsonNode</c> (<c>null</c> for JSON null).</summary>
    let toJsonNode (json: Json) : JsonNode =
        use text = texts.Rent()
        write (text.Start()) json
        // The node copies the text: the buffer can go back.
        JsonNode.Parse(text.Finish(), documentOptions = JsonDocumentOptions(MaxDepth = MaxDepth + 1))

    /// <summary>Converts a <c>JsonElement</c>.</summary>
    let ofJsonElement (element: JsonElement) : Json =
        use text = texts.Rent()
        element.WriteTo(text.Start())
        parseUtf8 (text.Finish())

    /// <summary>Converts to a <c>JsonElement</c> that owns its memory.</summary>
    let toJsonElement (json: Json) : JsonElement =
        use text = texts.Rent()
        write (text.Start()) json
        // Parsed in place; the clone copies what it needs, so the buffer can go back.
        use document = JsonDocument.Parse(text.FinishMemory(), JsonDocumentOptions(MaxDepth = MaxDepth + 1))
        document.RootElement.Clone()

    /// <summary>
    /// Serializer options that handle F# records, unions, options, lists and maps
    /// (FSharp.SystemTextJson) and BigInteger (as a JSON number, every digit kept), with the same depth limit as
    /// Sesame's parser.
    /// A new instance each call, so callers may customise it.
    /// </summary>
    let createSerializerOptions () : JsonSerializerOptions =
        let options = JsonSerializerOptions(JsonSerializerDefaults.Web)
        options.MaxDepth <- MaxDepth
        options.Encoder <- JavaScriptEncoder.UnsafeRelaxedJsonEscaping
        // Sesame's own tree first: FSharp.SystemTextJson's converter would otherwise claim it as an F# union.
        options.Converters.Add(JsonValueConverter())
        options.Converters.Add(BigIntegerConverter())
        options.Converters.Add(JsonFSharpConverter())
        options

    /// The options used when none are given (private: a shared, mutable JsonSerializerOptions must not be reachable;
    /// callers who want to customise take their own from createSerializerOptions).
    let private defaultSerializerOptions = createSerializerOptions ()

    /// <summary>Encodes a .NET or F# value as JSON with the given serializer options.</summary>
    /// <exception cref="System.NotSupportedException">The value's type cannot be serialized.</exception>
    /// <exception cref="System.ArgumentException">A number has no JSON form (NaN, infinity).</exception>
    /// <exception cref="System.Text.Json.JsonException">The object graph has a cycle or is too deep.</exception>
    let encodeWith (options: JsonSerializerOptions) (value: 'value) : Json =
        match box value with
        | :? Json as json -> json
        | :? JsonNode as node -> ofJsonNode node
        | :? JsonElement as element -> ofJsonElement element
        | _ ->
            match BuiltInValues.tryEncode options value with
            | ValueSome json -> json
            | ValueNone -> parseUtf8 (ReadOnlySpan(JsonSerializer.SerializeToUtf8Bytes<'value>(value, options)))

    /// <summary>Encodes a .NET or F# value as JSON with the options <see cref="M:Sesame.JsonModule.createSerializerOptions"/> returns.</summary>
    let encode (value: 'value) : Json = encodeWith defaultSerializerOptions value

    /// <summary>Decodes JSON into a .NET or F# value with the given serializer options.</summary>
    /// <exception cref="System.Text.Json.JsonException">The JSON does not fit the type.</exception>
    let decodeWith<'value> (options: JsonSerializerOptions) (json: Json) : 'value =
        if Type.op_Equality (typeof<'value>, typeof<Json>) then
            unbox<'value>(box json)
        else
            match BuiltInValues.tryDecode<'value> options json with
            | ValueSome value -> value
            | ValueNone ->
                use text = texts.Rent()
                write (text.Start()) json
                JsonSerializer.Deserialize<'value>(text.Finish(), options)

    /// <summary>Decodes JSON into a .NET or F# value with the options <see cref="M:Sesame.JsonModule.createSerializerOptions"/> returns.</summary>
    let decode<'value> (json: Json) : 'value = decodeWith<'value> defaultSerializerOptions json
