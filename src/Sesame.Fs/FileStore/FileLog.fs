namespace Sesame

open System
open System.Buffers.Binary

/// The file store's on-disk format (described in the remarks of <see cref="T:Sesame.FileStore"/>).
[<RequireQualifiedAccess>]
module internal FileLog =

    let Magic = "SesameFS"B

    /// Version 2: records carry the last-seen time and a change of the tree and of the facts beside it; moves.
    /// Version 1 files (data patches only) are read, then compacted to version 2 when opened.
    [<Literal>]
    let FormatVersion = 2u

    /// The first version, still read.
    [<Literal>]
    let FormatVersion1 = 1u

    [<Literal>]
    let FileHeaderLength = 16

    [<Literal>]
    let RecordHeaderLength = 16

    /// Kind, expiry, last seen and id length.
    [<Literal>]
    let PayloadPrefixLength = 21

    /// Version 1's prefix: kind, expiry and id length. The shortest a valid record's payload can be.
    [<Literal>]
    let PayloadPrefixLengthV1 = 13

    /// Applies the patch to the stored session.
    [<Literal>]
    let KindPatch = 1uy

    /// Applies the patch to the empty object: the session was missing or expired when committed.
    [<Literal>]
    let KindCreate = 2uy

    [<Literal>]
    let KindDelete = 3uy

    /// Moves the expiry of the stored session (a load's slide).
    [<Literal>]
    let KindTouch = 4uy

    /// Moves a session to a new id with a change (rotation, sign-in): the record's id is the new one, its body
    /// the old id's length (int32), the old id (empty: a session created at the new id) and the change.
    [<Literal>]
    let KindMove = 5uy

    /// Well under 2 GiB, so a record's length always fits an int with room to spare.
    let MaxPayloadLength = Int32.MaxValue / 2

    /// The most bytes one write gathers; a larger backlog is written (and flushed) in several.
    let MaxBatchBytes = 16 * 1024 * 1024

    let fileHeader () =
        let header = Array.zeroCreate<byte> FileHeaderLength
        Magic.CopyTo(header, 0)
        BinaryPrimitives.WriteUInt32LittleEndian(Span(header, 8, 4), FormatVersion)
        header

    /// A payload of <c>bodyLength</c> bytes of body, its prefix and id written; gives it and where its body starts.
    let private payloadOf (kind: byte) (expires: int64) (lastSeen: int64) (id: string) (bodyLength: int) : struct (byte[] * int) =
        let idLength = Text.Encoding.UTF8.GetByteCount id
        let p = Array.zeroCreate<byte>(PayloadPrefixLength + idLength + bodyLength)
        p[0] <- kind
        BinaryPrimitives.WriteInt64LittleEndian(Span(p, 1, 8), expires)
        BinaryPrimitives.WriteInt64LittleEndian(Span(p, 9, 8), lastSeen)
        BinaryPrimitives.WriteInt32LittleEndian(Span(p, 17, 4), idLength)
        Text.Encoding.UTF8.GetBytes(id.AsSpan(), Span(p, PayloadPrefixLength, idLength)) |> ignore
        struct (p, PayloadPrefixLength + idLength)

    /// A record's payload: its prefix, the id (written as UTF-8) and the body.
    let payload (kind: byte) (expires: int64) (lastSeen: int64) (id: string) (body: byte[]) : byte[] =
        let struct (p, at) = payloadOf kind expires lastSeen id body.Length
        Buffer.BlockCopy(body, 0, p, at, body.Length)
        p

    // Each thread's text buffer for change bodies.
    let private changeTexts = JsonTextBuffers(Patch.writerOptions 1)

    /// The change a commit record carries, as JSON: <c>[data, meta]</c>, or <c>[data, meta, from, to, upgrade]</c> with a
    /// shape upgrade (each patch as <see cref="M:Sesame.PatchModule.toUtf8(Sesame.Patch)"/> writes it). Replay applies it
    /// with <c>SessionChange.ApplyTo</c>, as the commit did, so the upgrade's condition decides the same way.
    let changeBody (change: SessionChange) : byte[] =
        // Written through the thread's buffer in one pass (a commit makes one per record), one array level around the
        // patches: a value as deep as a patch allows fits, as readChange reads it.
        use text = changeTexts.Rent()
        let writer = text.Start()
        writer.WriteStartArray()
        Patch.writeTo writer change.Data
        Patch.writeTo writer change.Meta
        match change.Upgrade with
        | ValueSome u ->
            writer.WriteNumberValue u.From
            writer.WriteNumberValue u.To
            Patch.writeTo writer u.Data
        | ValueNone -> ()
        writer.WriteEndArray()
        text.Finish().ToArray()

    /// The fewest bytes an update takes in a change's record (<c>["remove",["k"]],</c> is 17).
    [<Literal>]
    let MinUpdateBytes = 16L

    /// <summary>
    /// Whether a commit's record holds the session whole (as a snapshot) rather than its change: when the request's
    /// updates are still as it recorded them (two or more, not folded yet) and the session's tree and facts take at most
    /// <see cref="MinUpdateBytes"/> per update, <paramref name="sessionBytes"/> now. The commit then skips the fold, whose
    /// cost grows with the updates, where the session's JSON is made after every commit anyway (it is the value the
    /// store holds). The record is no larger than the updates written as recorded; it can be larger than their folded
    /// change, where they cancel out, by at most <see cref="MinUpdateBytes"/> per update: a request that sets and
    /// removes a large value in a large session still records the small change.
    /// </summary>
    let recordsWhole (change: SessionChange) (sessionBytes: int64) : bool =
        match change.Data.Recorded with
        | null -> false
        | updates -> sessionBytes <= MinUpdateBytes * int64 updates.Length

    /// Reads what changeBody wrote.
    /// <exception cref="System.Text.Json.JsonException">The body is not a change.</exception>
    let readChange (body: ReadOnlySpan<byte>) : SessionChange =
        // The change's own array and the patch's two levels around each value.
        match Json.parseUtf8Wrapped 3 body with
        | Json.Array parts when parts.Length = 2 -> SessionChange(Patch.ofJsonUnchecked parts[0], Patch.ofJsonUnchecked parts[1])
        | Json.Array parts when parts.Length = 5 ->
            match parts[2], parts[3] with
            | Json.Number from, Json.Number upTo ->
                match from.Int64Value, upTo.Int64Value with
                | ValueSome f, ValueSome t when f >= 0L && t >= 0L && f <= int64 Int32.MaxValue && t <= int64 Int32.MaxValue ->
                    SessionChange(
                        Patch.ofJsonUnchecked parts[0],
                        Patch.ofJsonUnchecked parts[1],
                        ValueSome { From = int f; To = int t; Data = Patch.ofJsonUnchecked parts[4] }
                    )
                | _ -> raise (Text.Json.JsonException "A change's shape versions are out of range.")
            | _ -> raise (Text.Json.JsonException "A change's shape versions are not numbers.")
        | _ -> raise (Text.Json.JsonException "Not a change: an array of two or five parts was expected.")

    /// The change that sets a whole session: what a compacted file holds for each.
    let snapshotChange (session: StoredSession) =
        SessionChange(Patch.foldChecked [| Update.set SessionPath.root session.Data |], Patch.foldChecked [| Update.set SessionPath.root session.Meta |])

    /// What a snapshot's change body holds around the tree and the facts: <c>[[["set",[],</c>, <c>]],[["set",[],</c> and
    /// <c>]]]</c>, the bytes changeBody writes for snapshotChange (a test holds them to it). Written out, so that opening
    /// a file, which reads snapshots, compiles none of the patch writer while the app waits for it.
    let snapshotFrame = struct ("[[[\"set\",[],"B, "]],[[\"set\",[],"B, "]]]"B)

    /// The payload of a record of the given kind whose change sets the whole tree and facts (as a compacted file's
    /// records, kind 2, do), written from the JSON of its tree and facts: the bytes changeBody would write for it.
    let snapshotPayload (kind: byte) (expires: int64) (lastSeen: int64) (id: string) (data: ReadOnlySpan<byte>) (meta: ReadOnlySpan<byte>) : byte[] =
        let struct (before, between, after) = snapshotFrame
        let struct (p, at) = payloadOf kind expires lastSeen id (before.Length + data.Length + between.Length + meta.Length + after.Length)
        let body = Span(p, at, p.Length - at)
        ReadOnlySpan(before).CopyTo body
        data.CopyTo(body.Slice before.Length)
        ReadOnlySpan(between).CopyTo(body.Slice(before.Length + data.Length))
        meta.CopyTo(body.Slice(before.Length + data.Length + between.Length))
        ReadOnlySpan(after).CopyTo(body.Slice(body.Length - after.Length))
        p

    /// The end of the JSON object at <c>at</c>, read (so checked) as JSON; -1 when there is none there.
    let private objectEnd (body: ReadOnlySpan<byte>) (at: int) =
        if at >= body.Length || body[at] <> byte '{' then
            -1
        else
            let mutable reader = Text.Json.Utf8JsonReader(body.Slice at, Text.Json.JsonReaderOptions(MaxDepth = Json.MaxDepth + 1))
            try
                if reader.Read() && reader.TrySkip() then at + int reader.BytesConsumed else -1
            with :? Text.Json.JsonException ->
                -1

    /// Where the tree and the facts are in a change body that sets the whole session (as a compacted file's records
    /// do): the start and length of each, when the body is exactly <c>[[["set",[],TREE]],[["set",[],FACTS]]]</c> with two
    /// objects as JSON that reads; <c>ValueNone</c> for any other body (it is then parsed as a change).
    let trySnapshotParts (body: ReadOnlySpan<byte>) : struct (int * int * int * int) voption =
        let struct (before, between, after) = snapshotFrame
        if not (body.StartsWith(ReadOnlySpan before)) then
            ValueNone
        else
            let dataAt = before.Length
            let dataEnd = objectEnd body dataAt
            if dataEnd < 0 || not (body.Slice(dataEnd).StartsWith(ReadOnlySpan between)) then
                ValueNone
            else
                let metaAt = dataEnd + between.Length
                let metaEnd = objectEnd body metaAt
                if metaEnd < 0 || metaEnd + after.Length <> body.Length || not (body.Slice(metaEnd).SequenceEqual(ReadOnlySpan after)) then
                    ValueNone
                else
                    ValueSome(struct (dataAt, dataEnd - dataAt, metaAt, metaEnd - metaAt))

    /// Frames a payload into <c>dest</c> at <c>at</c>; gives the record's length.
    let frame (dest: byte[]) (at: int) (durableEnd: int64) (payload: byte[]) : int =
        let length = RecordHeaderLength + payload.Length
        BinaryPrimitives.WriteUInt32LittleEndian(Span(dest, at, 4), uint32 payload.Length)
        BinaryPrimitives.WriteInt64LittleEndian(Span(dest, at + 8, 8), durableEnd)
        Buffer.BlockCopy(payload, 0, dest, at + RecordHeaderLength, payload.Length)
        BinaryPrimitives.WriteUInt32LittleEndian(Span(dest, at + 4, 4), Crc32C.OfRecord(ReadOnlySpan(dest, at, length)))
        length

    /// What a snapshot record adds to a session's tree and facts: framing, id and the <c>[[["set",[],…]],[["set",[],…]]]</c> around them.
    let snapshotOverhead =
        let struct (before, between, after) = snapshotFrame
        RecordHeaderLength + PayloadPrefixLength + before.Length + between.Length + after.Length

    /// The bytes a session takes in a freshly compacted file, its tree and facts being <paramref name="size"/> bytes of JSON.
    let snapshotBytes (idLength: int) (size: int64) = int64 (snapshotOverhead + idLength) + size
