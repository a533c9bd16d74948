namespace Sesame

open System
open System.Buffers
open System.Text.Json

/// A buffer writer that only counts: it hands out one scratch buffer again and again, so
/// measuring a tree allocates nothing that grows with it.
[<Sealed>]
type internal CountingBufferWriter() =
    let scratch: byte[] = Array.zeroCreate 4096
    let mutable count = 0L
    member _.Count = count
    member _.Reset() = count <- 0L

    interface IBufferWriter<byte> with
        member _.Advance(n) = count <- count + int64 n
        member _.GetMemory(sizeHint) = if sizeHint <= scratch.Length then Memory scratch else Memory(Array.zeroCreate sizeHint)
        member _.GetSpan(sizeHint) = if sizeHint <= scratch.Length then Span scratch else Span(Array.zeroCreate sizeHint)

/// A text buffer and its writer, reused: writing a tree through it allocates nothing that grows with the tree.
/// Two kinds, by depth limit: <c>Json.MaxDepth</c> exactly as <c>Json.toUtf8</c> writes, and one level more for
/// stored sessions (an empty object or array set at the deepest path sits there; it is the limit the size check
/// has always used, and <c>JsonSize.parseStored</c> reads that level back).
[<Sealed; AllowNullLiteral>]
type internal JsonTextBuffer private (maxDepth: int) =
    static let optionsFor (maxDepth: int) =
        JsonWriterOptions(Encoder = Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping, MaxDepth = maxDepth, SkipValidation = true)

    /// A thread keeps one buffer of each kind up to this size for its next tree; a larger one is let go after use.
    static let retainedBytes = 256 * 1024

    [<ThreadStatic; DefaultValue>]
    static val mutable private spareStored: JsonTextBuffer

    [<ThreadStatic; DefaultValue>]
    static val mutable private sparePlain: JsonTextBuffer

    let text = ArrayBufferWriter<byte>(4096)
    let writer = new Utf8JsonWriter(text, optionsFor maxDepth)

    /// The writer options of stored sessions.
    static member StoredOptions = optionsFor (Json.MaxDepth + 1)

    /// The thread's buffer of the kind, or a new one when it is in use (say, a converter that reads a
    /// session while a value of it is being decoded).
    static member Rent(stored: bool) =
        let spare = if stored then JsonTextBuffer.spareStored else JsonTextBuffer.sparePlain
        if isNull spare then
            JsonTextBuffer(if stored then Json.MaxDepth + 1 else Json.MaxDepth)
        else
            if stored then JsonTextBuffer.spareStored <- null else JsonTextBuffer.sparePlain <- null
            spare

    /// Gives the buffer back to the thread, unless a huge tree made it too big to keep.
    static member Return(buffer: JsonTextBuffer) =
        if buffer.Capacity <= retainedBytes then
            if buffer.MaxDepth > Json.MaxDepth then JsonTextBuffer.spareStored <- buffer else JsonTextBuffer.sparePlain <- buffer

    member _.MaxDepth = maxDepth

    member _.Capacity = text.Capacity

    /// Writes the tree as compact UTF-8 JSON; the span is valid until the buffer is written again.
    member _.Write(json: Json) : ReadOnlySpan<byte> =
        text.ResetWrittenCount()
        writer.Reset(text)
        Json.writeTo writer json
        writer.Flush()
        text.WrittenSpan

/// One counter and its writer per thread, reused for every measurement.
[<Sealed; AbstractClass>]
type internal JsonMeasurer =
    [<ThreadStatic; DefaultValue>]
    static val mutable private counter: CountingBufferWriter

    [<ThreadStatic; DefaultValue>]
    static val mutable private writer: Utf8JsonWriter

    static member Measure(json: Json) : int64 =
        if obj.ReferenceEquals(JsonMeasurer.counter, null) then
            JsonMeasurer.counter <- CountingBufferWriter()
            JsonMeasurer.writer <- new Utf8JsonWriter(JsonMeasurer.counter, JsonTextBuffer.StoredOptions)
        let counter = JsonMeasurer.counter
        let writer = JsonMeasurer.writer
        counter.Reset()
        writer.Reset(counter)
        Json.writeTo writer json
        writer.Flush()
        counter.Count

/// <summary>The size of a tree as compact UTF-8 JSON, without keeping the text; and the text itself, without waste.</summary>
[<RequireQualifiedAccess>]
module JsonSize =

    /// <summary>The number of bytes <c>Json.toUtf8</c> would produce for the tree.</summary>
    let utf8Length (json: Json) : int64 = JsonMeasurer.Measure json

    /// <summary>
    /// The compact UTF-8 JSON of a tree (what <c>Json.toUtf8</c> produces) in an array of exactly its
    /// length, written through a buffer the thread reuses: the array is the only allocation that grows with the tree.
    /// </summary>
    let internal toUtf8 (json: Json) : byte[] =
        let buffer = JsonTextBuffer.Rent true
        try
            (buffer.Write json).ToArray()
        finally
            JsonTextBuffer.Return buffer

    /// <summary>Parses text written by <see cref="M:Sesame.JsonSize.toUtf8(Sesame.Json)"/>, which may nest one level deeper than <c>Json.parseUtf8</c> accepts.</summary>
    let internal parseStored (utf8: ReadOnlySpan<byte>) : Json = Json.parseUtf8Wrapped 1 utf8

    /// <summary>What <c>Json.decodeWith</c> gives, with the text written through a reused buffer instead of a new one.</summary>
    let internal decodeWith<'value> (serializerOptions: JsonSerializerOptions) (json: Json) : 'value =
        if typeof<'value> = typeof<Json> then
            unbox<'value> (box json)
        else
            let buffer = JsonTextBuffer.Rent false
            try
                JsonSerializer.Deserialize<'value>(buffer.Write json, serializerOptions)
            finally
                JsonTextBuffer.Return buffer
