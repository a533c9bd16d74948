namespace Sesame

open System
open System.Text.Encodings.Web
open System.Text.Json
open System.Text.Json.Serialization
open System.Text.Json.Serialization.Metadata

/// <summary>
/// Integers, booleans and strings converted between .NET and Sesame's tree directly, when the serializer options leave
/// them to System.Text.Json's own converters: the same value as writing the JSON out and reading it back through the
/// serializer, without doing either. A typed read or write of a counter, a flag or a name is most of what a request does
/// with its session, and the round trip through the serializer cost more than the rest of such a read.
/// </summary>
/// <remarks>
/// Only what the built-in converter would surely give is converted here: an integer whose JSON text is an integer in the
/// type's range, a boolean, a string that is one and holds no lone surrogate (written, under no encoder or one of
/// System.Text.Json's). Anything else (a number with a fraction or an exponent, a number in a string, null, a converter
/// or an encoder of the app's) goes through the serializer, which gives the value or the error it always gave.
/// </remarks>
module internal BuiltInValues =

    /// What one serializer options instance does with one type: whether System.Text.Json's own converter reads it, and
    /// whether it also writes it as it is (not a number written as a string, JsonNumberHandling.WriteAsString; a string
    /// only escaped, by no encoder or one of System.Text.Json's, never changed by an encoder of the app's).
    [<Sealed; AllowNullLiteral>]
    type private Verdict(options: JsonSerializerOptions, reads: bool, writes: bool) =
        member _.Options = options
        member _.Reads = reads
        member _.Writes = writes

    /// The verdict on the options last asked about for the type: an app has one SesameOptions.SerializerOptions. Options
    /// used in turn with others get their verdict made again each time (tens of ns, well under the serializer's trip).
    [<AbstractClass; Sealed>]
    type private Last<'value> =
        static member val Verdict: Verdict = null with get, set

    /// The encoders that only escape what they write, so that the text reads back to the same string.
    let private escapingOnly (encoder: JavaScriptEncoder) =
        isNull encoder || obj.ReferenceEquals(encoder, JavaScriptEncoder.Default) || obj.ReferenceEquals(encoder, JavaScriptEncoder.UnsafeRelaxedJsonEscaping)

    let private judge<'value> (options: JsonSerializerOptions) (builtIn: JsonConverter) =
        try
            // As the serializer itself does before its first use of the options (it then fills in the default resolver).
            if not options.IsReadOnly then options.MakeReadOnly(populateMissingResolver = true)
            let info = options.GetTypeInfo typeof<'value>
            let reads = info.Converter.GetType() = builtIn.GetType()
            let handling = if info.NumberHandling.HasValue then info.NumberHandling.Value else options.NumberHandling
            let writes = reads && not (handling.HasFlag JsonNumberHandling.WriteAsString) && escapingOnly options.Encoder
            Verdict(options, reads, writes)
        with _ ->
            // Options that cannot give the type's contract: the serializer says so, with its own error.
            Verdict(options, false, false)

    let private verdict<'value> (options: JsonSerializerOptions) (builtIn: JsonConverter) =
        match Last<'value>.Verdict with
        | last when not (isNull last) && obj.ReferenceEquals(last.Options, options) -> last
        | _ ->
            let made = judge<'value> options builtIn
            Last<'value>.Verdict <- made
            made

    let inline private isType<'value, 'known> () = Type.op_Equality (typeof<'value>, typeof<'known>)

    /// Strings longer than this go through the serializer, which refuses those past its own limit (about 166 million
    /// characters); no session holds one anywhere near this long.
    let private maxDirectLength = 16 * 1024 * 1024

    /// A string that converts as it is: not null, within the length above, and no lone surrogate (not text JSON holds).
    let private plainText (text: string) = not (isNull text) && text.Length <= maxDirectLength && not (LoneSurrogates.has text)

    /// The value of <paramref name="json"/> as System.Text.Json's own converter for <typeparamref name="value"/> would read
    /// it under <paramref name="options"/>, when it surely would; otherwise none (the caller asks the serializer).
    let tryDecode<'value> (options: JsonSerializerOptions) (json: Json) : 'value voption =
        if isType<'value, int64>() then
            match json with
            | Json.Number n ->
                match n.Int64Value with
                | ValueSome v when (verdict<int64> options JsonMetadataServices.Int64Converter).Reads -> ValueSome(unbox<'value>(box v))
                | _ -> ValueNone
            | _ -> ValueNone
        elif isType<'value, int>() then
            match json with
            | Json.Number n ->
                match n.Int64Value with
                | ValueSome v when v >= int64 Int32.MinValue && v <= int64 Int32.MaxValue && (verdict<int> options JsonMetadataServices.Int32Converter).Reads ->
                    ValueSome(unbox<'value>(box (int v)))
                | _ -> ValueNone
            | _ -> ValueNone
        elif isType<'value, bool>() then
            match json with
            | Json.Bool b when (verdict<bool> options JsonMetadataServices.BooleanConverter).Reads -> ValueSome(unbox<'value>(box b))
            | _ -> ValueNone
        elif isType<'value, string>() then
            match json with
            // A tree made by hand may hold null or a lone surrogate, which the serializer's text would not carry as it is.
            | Json.String text when plainText text && (verdict<string> options JsonMetadataServices.StringConverter).Reads -> ValueSome(unbox<'value>(box text))
            | _ -> ValueNone
        else
            ValueNone

    /// <paramref name="value"/> as the tree that System.Text.Json's own converter would write for it under
    /// <paramref name="options"/>, parsed back, when it surely would be; otherwise none (the caller asks the serializer).
    let tryEncode<'value> (options: JsonSerializerOptions) (value: 'value) : Json voption =
        if isType<'value, int64>() then
            if (verdict<int64> options JsonMetadataServices.Int64Converter).Writes then
                ValueSome(Json.Number(JsonNumber.OfInt64(unbox<int64>(box value))))
            else
                ValueNone
        elif isType<'value, int>() then
            if (verdict<int> options JsonMetadataServices.Int32Converter).Writes then
                ValueSome(Json.Number(JsonNumber.OfInt64(int64 (unbox<int>(box value)))))
            else
                ValueNone
        elif isType<'value, bool>() then
            if (verdict<bool> options JsonMetadataServices.BooleanConverter).Writes then ValueSome(Json.Bool(unbox<bool>(box value))) else ValueNone
        elif isType<'value, string>() then
            match unbox<string>(box value) with
            // Null, a lone surrogate or an over-long string: the serializer decides what becomes of it.
            | text when plainText text && (verdict<string> options JsonMetadataServices.StringConverter).Writes -> ValueSome(Json.String text)
            | _ -> ValueNone
        else
            ValueNone
