namespace Sesame

open System
open System.Buffers
open System.Text.Json
open System.Threading

/// <summary>
/// A UTF-8 text buffer with a JSON writer on it, kept by a thread from one use to the next, so that writing a
/// tree through it allocates nothing that grows with the tree. Rented from <see cref="T:Sesame.JsonTextBuffers"/>;
/// disposing it gives it back, after which the text it gave is no longer valid.
/// </summary>
[<Sealed; AllowNullLiteral>]
type internal JsonTextBuffer(owner: JsonTextBuffers, options: JsonWriterOptions) =
    let text = ArrayBufferWriter<byte>(4096)
    let writer = new Utf8JsonWriter(text, options)

    member _.Capacity = text.Capacity

    /// The writer, reset onto the emptied buffer (also after a write that failed half way).
    member _.Start() : Utf8JsonWriter =
        text.ResetWrittenCount()
        writer.Reset(text)
        writer

    /// The text written since <c>Start</c>; valid until the buffer is started again or given back.
    member _.Finish() : ReadOnlySpan<byte> =
        writer.Flush()
        text.WrittenSpan

    /// <c>Finish</c>, as memory (for a parser that reads the text in place).
    member _.FinishMemory() : ReadOnlyMemory<byte> =
        writer.Flush()
        text.WrittenMemory

    interface IDisposable with
        member this.Dispose() = owner.Return this

/// <summary>Each thread's spare <see cref="T:Sesame.JsonTextBuffer"/> for one kind of writing (one set of writer options).</summary>
and [<Sealed>] internal JsonTextBuffers(options: JsonWriterOptions) =
    /// A thread keeps a buffer up to this size for its next text; a larger one is let go after use.
    static let retainedBytes = 256 * 1024

    let spare = new ThreadLocal<JsonTextBuffer>()

    /// The thread's buffer, or a new one while that is in use (say, by a converter that writes JSON while a
    /// value is being decoded).
    member this.Rent() : JsonTextBuffer =
        match spare.Value with
        | null -> new JsonTextBuffer(this, options)
        | buffer ->
            spare.Value <- null
            buffer

    member internal _.Return(buffer: JsonTextBuffer) = if buffer.Capacity <= retainedBytes then spare.Value <- buffer
