namespace Sesame

open System
open System.Buffers
open System.Text.Json
open System.Threading

/// <summary>
/// A growable byte buffer whose large arrays come from the shared <see cref="T:System.Buffers.ArrayPool`1"/>: writing a
/// large session (the JSON writer asks for six times a string's length, in case every character needs escaping) borrows
/// an array rather than allocating one on the large object heap, which only a full collection would free.
/// </summary>
[<Sealed; AllowNullLiteral>]
type internal PooledBufferWriter(initialBytes: int) =
    let own: byte[] = Array.zeroCreate initialBytes
    let mutable buffer = own
    let mutable written = 0

    /// The bytes written since the last reset.
    member _.WrittenSpan = ReadOnlySpan<byte>(buffer, 0, written)

    /// The bytes written since the last reset, as memory.
    member _.WrittenMemory = ReadOnlyMemory<byte>(buffer, 0, written)

    /// The number of bytes written since the last reset.
    member _.WrittenCount = written

    /// The size of the array in use.
    member _.Capacity = buffer.Length

    /// Empties the buffer (keeping its array).
    member _.Reset() = written <- 0

    /// Empties the buffer and gives a borrowed array back to the pool, going back to the buffer's own small one.
    member _.Release() =
        written <- 0
        if not (obj.ReferenceEquals(buffer, own)) then
            let borrowed = buffer
            buffer <- own
            ArrayPool<byte>.Shared.Return borrowed

    member private _.Ensure(sizeHint: int) =
        let wanted = max 1 sizeHint
        if buffer.Length - written < wanted then
            let next = ArrayPool<byte>.Shared.Rent(max (buffer.Length * 2) (written + wanted))
            Buffer.BlockCopy(buffer, 0, next, 0, written)
            if not (obj.ReferenceEquals(buffer, own)) then ArrayPool<byte>.Shared.Return buffer
            buffer <- next

    interface IBufferWriter<byte> with
        member _.Advance(count) =
            if count < 0 || written + count > buffer.Length then raise (ArgumentOutOfRangeException(nameof count))
            written <- written + count

        member this.GetMemory(sizeHint) =
            this.Ensure sizeHint
            Memory<byte>(buffer, written, buffer.Length - written)

        member this.GetSpan(sizeHint) =
            this.Ensure sizeHint
            Span<byte>(buffer, written, buffer.Length - written)

/// <summary>
/// A UTF-8 text buffer with a JSON writer on it, kept by a thread from one use to the next, so that writing a
/// tree through it allocates nothing that grows with the tree. Rented from <see cref="T:Sesame.JsonTextBuffers"/>;
/// disposing it gives it back, after which the text it gave is no longer valid.
/// </summary>
[<Sealed; AllowNullLiteral>]
type internal JsonTextBuffer(owner: JsonTextBuffers, options: JsonWriterOptions) =
    let text = PooledBufferWriter 4096
    let writer = new Utf8JsonWriter(text, options)

    member _.Capacity = text.Capacity

    /// Gives a large borrowed array back to the shared pool (the buffer keeps its own small one).
    member _.Release() = text.Release()

    /// The writer, reset onto the emptied buffer (also after a write that failed half way).
    member _.Start() : Utf8JsonWriter =
        text.Reset()
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
    /// A thread keeps a buffer up to this size for its next text; a larger array goes back to the shared pool after use.
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

    member internal _.Return(buffer: JsonTextBuffer) =
        if buffer.Capacity > retainedBytes then buffer.Release()
        spare.Value <- buffer
