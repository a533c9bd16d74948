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
            JsonMeasurer.writer <- new Utf8JsonWriter(JsonMeasurer.counter, Json.storedWriterOptions)
        let counter = JsonMeasurer.counter
        let writer = JsonMeasurer.writer
        counter.Reset()
        writer.Reset(counter)
        Json.writeTo writer json
        writer.Flush()
        counter.Count

/// <summary>The size of a tree as compact UTF-8 JSON, without keeping the text.</summary>
[<RequireQualifiedAccess>]
module JsonSize =

    /// <summary>The number of bytes <c>Json.toUtf8</c> would produce for the tree.</summary>
    let utf8Length (json: Json) : int64 = JsonMeasurer.Measure json
