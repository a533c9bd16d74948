namespace Sesame

open System
open System.Buffers
open System.Text.Json

/// Each thread's scratch space for reading a new session's value from its record.
[<AbstractClass; Sealed>]
type internal CreatedValueBuffers =
    /// Where each key a new session's change sets starts and ends in the text written, to find a key set twice.
    [<ThreadStatic; DefaultValue>]
    static val mutable private keys: int[]

    static member Keys
        with get () = CreatedValueBuffers.keys
        and set (value: int[]) = CreatedValueBuffers.keys <- value

/// The value a record creates, read straight from the record's JSON where it can be (most records of a large file are
/// new sessions: replay holds them without parsing a tree).
module internal CreatedValue =
    let private openBrace = "{"B
    let private closeBrace = "}"B
    let private comma = ","B
    let private colon = ":"B
    let private setName = "set"B
    let private incrementName = "increment"B

    /// Whether the reader is at an update's operation that trySetKeys takes (set, or increment, which it notes).
    let private isSetOrIncrement (reader: byref<Utf8JsonReader>) (incrementing: byref<bool>) =
        incrementing <- reader.ValueTextEquals(ReadOnlySpan incrementName)
        incrementing || reader.ValueTextEquals(ReadOnlySpan setName)

    /// The most keys a new session's change may set for <c>trySetKeys</c> to write it.
    [<Literal>]
    let private MaxSimpleKeys = 32

    /// Writes the object that a patch of sets and increments of distinct top-level keys makes of the empty object, from
    /// the patch's own JSON (a key and its value are written as the patch holds them, which is how the writer writes
    /// them; an increment of a key the empty object lacks makes the number it adds, as a new visitor's counter does);
    /// false for any other patch (it is then applied as a change). The reader is at the patch's start.
    let private trySetKeys (body: ReadOnlySpan<byte>) (reader: byref<Utf8JsonReader>) (output: ArrayBufferWriter<byte>) : bool =
        if isNull CreatedValueBuffers.Keys then CreatedValueBuffers.Keys <- Array.zeroCreate (2 * MaxSimpleKeys)
        let keys = CreatedValueBuffers.Keys
        let start = output.WrittenCount
        let mutable ok = reader.TokenType = JsonTokenType.StartArray
        let mutable count = 0
        if ok then output.Write(ReadOnlySpan openBrace)
        let mutable reading = ok
        let mutable incrementing = false
        while reading do
            if not (reader.Read()) then
                ok <- false
                reading <- false
            elif reader.TokenType = JsonTokenType.EndArray then
                reading <- false
            elif
                count < MaxSimpleKeys
                && reader.TokenType = JsonTokenType.StartArray
                && reader.Read()
                && reader.TokenType = JsonTokenType.String
                && isSetOrIncrement &reader &incrementing
                && reader.Read()
                && reader.TokenType = JsonTokenType.StartArray
                && reader.Read()
                && reader.TokenType = JsonTokenType.String
                && not reader.ValueIsEscaped
            then
                let keyAt = int reader.TokenStartIndex
                let keyEnd = int reader.BytesConsumed
                if reader.Read() && reader.TokenType = JsonTokenType.EndArray && reader.Read() then
                    let valueAt = int reader.TokenStartIndex
                    let skipped =
                        match reader.TokenType with
                        | JsonTokenType.StartObject
                        | JsonTokenType.StartArray -> not incrementing && reader.TrySkip()
                        | JsonTokenType.Number -> true
                        | JsonTokenType.String
                        | JsonTokenType.True
                        | JsonTokenType.False
                        | JsonTokenType.Null -> not incrementing
                        | _ -> false
                    let valueEnd = int reader.BytesConsumed
                    if skipped && reader.Read() && reader.TokenType = JsonTokenType.EndArray then
                        let mutable seen = false
                        let mutable i = 0
                        while not seen && i < count do
                            seen <- output.WrittenSpan.Slice(keys[2 * i], keys[2 * i + 1] - keys[2 * i]).SequenceEqual(body.Slice(keyAt, keyEnd - keyAt))
                            i <- i + 1
                        if seen then
                            ok <- false
                            reading <- false
                        else
                            if count > 0 then output.Write(ReadOnlySpan comma)
                            keys[2 * count] <- output.WrittenCount
                            output.Write(body.Slice(keyAt, keyEnd - keyAt))
                            keys[2 * count + 1] <- output.WrittenCount
                            output.Write(ReadOnlySpan colon)
                            output.Write(body.Slice(valueAt, valueEnd - valueAt))
                            count <- count + 1
                    else
                        ok <- false
                        reading <- false
                else
                    ok <- false
                    reading <- false
            else
                ok <- false
                reading <- false
        if ok then output.Write(ReadOnlySpan closeBrace)
        ok && output.WrittenCount > start

    /// Writes into <c>output</c> (emptied first) the value a new session's change makes when it only sets or increments
    /// distinct top-level keys of the tree and of the facts (what a first request's commit holds, such as a new
    /// visitor's counter and its creation fact), from the change's JSON, without building a tree; gives the tree's
    /// length in what it wrote, or -1 for any other change, or for text that does not read as JSON.
    let private trySimpleCreate (body: ReadOnlySpan<byte>) (version: uint32) (output: ArrayBufferWriter<byte>) : int =
        output.ResetWrittenCount()
        let mutable reader = Utf8JsonReader(body, JsonReaderOptions(MaxDepth = Json.MaxDepth + 3))
        try
            if version = FileLog.FormatVersion1 then
                // A version 1 change is the data patch alone: the session has no facts, which the store writes as {}.
                if reader.Read() && trySetKeys body &reader output && not (reader.Read()) then
                    let dataLength = output.WrittenCount
                    output.Write(ReadOnlySpan openBrace)
                    output.Write(ReadOnlySpan closeBrace)
                    dataLength
                else
                    -1
            elif reader.Read() && reader.TokenType = JsonTokenType.StartArray && reader.Read() && trySetKeys body &reader output then
                let dataLength = output.WrittenCount
                if reader.Read() && trySetKeys body &reader output && reader.Read() && reader.TokenType = JsonTokenType.EndArray && not (reader.Read()) then
                    dataLength
                else
                    -1
            else
                -1
        with :? JsonException ->
            -1

    /// Writes into <c>output</c> (emptied first) the value a record creates, read straight from the record when it sets
    /// the whole session (as a compacted file's records do, and a new session's first commit does) or only sets or
    /// increments top-level keys (as a new session's first commit did before it recorded the session whole); gives the
    /// tree's length in what it wrote, or -1 when the record is a change to apply to the empty session. (Written there,
    /// not as a SessionText, so that the ring copies it from there: most sessions of a file are held in the ring.)
    let write (body: ReadOnlySpan<byte>) (version: uint32) (output: ArrayBufferWriter<byte>) : int =
        match (if version = FileLog.FormatVersion1 then ValueNone else FileLog.trySnapshotParts body) with
        | ValueSome(struct (dataAt, dataLength, metaAt, metaLength)) ->
            output.ResetWrittenCount()
            output.Write(body.Slice(dataAt, dataLength))
            output.Write(body.Slice(metaAt, metaLength))
            dataLength
        | ValueNone -> trySimpleCreate body version output
