namespace Sesame

open System
open System.Buffers
open System.Text.Json

/// A buffer writer that only counts: it hands out one scratch buffer again and again, so
/// measuring a tree allocates nothing that grows with it.
[<Sealed>]
type internal CountingBufferWriter() =
    let scratch: byte[] = Array.zeroCreate 4096
    // A long string makes the writer ask for six times its length: that space is borrowed from the shared pool.
    let mutable borrowed: byte[] = null
    let mutable count = 0L

    let space (sizeHint: int) =
        if sizeHint <= scratch.Length then
            scratch
        else
            if isNull borrowed || borrowed.Length < sizeHint then
                if not (isNull borrowed) then ArrayPool<byte>.Shared.Return borrowed
                borrowed <- ArrayPool<byte>.Shared.Rent sizeHint
            borrowed

    member _.Count = count

    member _.Reset() =
        count <- 0L
        if not (isNull borrowed) then
            ArrayPool<byte>.Shared.Return borrowed
            borrowed <- null

    interface IBufferWriter<byte> with
        member _.Advance(n) = count <- count + int64 n
        member _.GetMemory(sizeHint) = Memory(space sizeHint)
        member _.GetSpan(sizeHint) = Span(space sizeHint)

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
        let count = counter.Count
        // Gives back what a long string borrowed.
        counter.Reset()
        count

/// <summary>The size of a tree as compact UTF-8 JSON, without keeping the text.</summary>
[<RequireQualifiedAccess>]
module JsonSize =

    /// The bytes of a string written as a JSON string. Printable ASCII without quote or backslash is written as it is
    /// (the common case, counted here); anything else is measured by the writer itself, so the count is always what
    /// the writer produces (its escaping of control and non-ASCII characters is its own business).
    let internal stringLength (text: string) : int64 =
        let mutable plain = true
        let mutable i = 0
        while plain && i < text.Length do
            let c = text[i]
            plain <- c >= ' ' && c <= '~' && c <> '"' && c <> '\\'
            i <- i + 1
        if plain then int64 text.Length + 2L else JsonMeasurer.Measure(Json.String text)

    let rec private walk (json: Json) : int64 =
        match json with
        | Json.Null -> 4L
        | Json.Bool true -> 4L
        | Json.Bool false -> 5L
        | Json.Number n -> int64 n.Text.Length // a number's text is ASCII, written as it is
        | Json.String s -> stringLength s
        | Json.Array items ->
            let mutable total = 2L + int64 (max 0 (items.Length - 1))
            for item in items do
                total <- total + walk item
            total
        | Json.Object o ->
            let properties = o.Properties
            // Braces, a colon per property and a comma between properties.
            let mutable total = 2L + int64 properties.Length + int64 (max 0 (properties.Length - 1))
            for property in properties do
                total <- total + stringLength property.Key + walk property.Value
            total

    /// <summary>The number of bytes <c>Json.toUtf8</c> would produce for the tree.</summary>
    /// <remarks>Counted by walking the tree: no text is written for the common case, so it costs a fraction of writing it.</remarks>
    let utf8Length (json: Json) : int64 = walk json
