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

/// One counter, one text buffer and their writers per thread, reused for every tree written.
[<Sealed; AbstractClass>]
type internal JsonMeasurer =
    [<ThreadStatic; DefaultValue>]
    static val mutable private counter: CountingBufferWriter

    [<ThreadStatic; DefaultValue>]
    static val mutable private writer: Utf8JsonWriter

    [<ThreadStatic; DefaultValue>]
    static val mutable private text: ArrayBufferWriter<byte>

    [<ThreadStatic; DefaultValue>]
    static val mutable private textWriter: Utf8JsonWriter

    /// A thread keeps a text buffer up to this size for the next tree; a larger one is let go after use.
    static member private RetainedTextBytes = 256 * 1024

    /// One level past <c>Json.MaxDepth</c> (an empty object or array set at the deepest path sits there),
    /// the limit the size check has always used; <c>JsonSize.parseStored</c> reads that level back.
    static member internal Options =
        JsonWriterOptions(Encoder = Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping, MaxDepth = Json.MaxDepth + 1, SkipValidation = true)

    static member Measure(json: Json) : int64 =
        if obj.ReferenceEquals(JsonMeasurer.counter, null) then
            JsonMeasurer.counter <- CountingBufferWriter()
            JsonMeasurer.writer <- new Utf8JsonWriter(JsonMeasurer.counter, JsonMeasurer.Options)
        let counter = JsonMeasurer.counter
        let writer = JsonMeasurer.writer
        counter.Reset()
        writer.Reset(counter)
        Json.writeTo writer json
        writer.Flush()
        counter.Count

    static member ToExactArray(json: Json) : byte[] =
        if obj.ReferenceEquals(JsonMeasurer.text, null) then
            JsonMeasurer.text <- ArrayBufferWriter<byte>(4096)
            JsonMeasurer.textWriter <- new Utf8JsonWriter(JsonMeasurer.text, JsonMeasurer.Options)
        let text = JsonMeasurer.text
        let writer = JsonMeasurer.textWriter
        text.ResetWrittenCount()
        writer.Reset(text)
        try
            Json.writeTo writer json
            writer.Flush()
            text.WrittenSpan.ToArray()
        finally
            if text.Capacity > JsonMeasurer.RetainedTextBytes then
                JsonMeasurer.text <- null
                JsonMeasurer.textWriter <- null

/// <summary>The size of a tree as compact UTF-8 JSON, without keeping the text; and the text itself, without waste.</summary>
[<RequireQualifiedAccess>]
module JsonSize =

    /// <summary>The number of bytes <c>Json.toUtf8</c> would produce for the tree.</summary>
    let utf8Length (json: Json) : int64 = JsonMeasurer.Measure json

    /// <summary>
    /// The compact UTF-8 JSON of a tree (what <c>Json.toUtf8</c> produces) in an array of exactly its
    /// length, written through a buffer the thread reuses: the array is the only allocation that grows with the tree.
    /// </summary>
    let internal toUtf8 (json: Json) : byte[] = JsonMeasurer.ToExactArray json

    /// <summary>Parses text written by <see cref="M:Sesame.JsonSize.toUtf8(Sesame.Json)"/>, which may nest one level deeper than <c>Json.parseUtf8</c> accepts.</summary>
    let internal parseStored (utf8: ReadOnlySpan<byte>) : Json = Json.parseUtf8Wrapped 1 utf8
