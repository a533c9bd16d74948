namespace Sesame

open System
open System.Buffers.Binary

/// The file store's on-disk format (described in the remarks of <see cref="T:Sesame.FileStore"/>).
[<RequireQualifiedAccess>]
module internal FileLog =

    let Magic = "SesameFS"B

    [<Literal>]
    let FormatVersion = 1u

    [<Literal>]
    let FileHeaderLength = 16

    [<Literal>]
    let RecordHeaderLength = 16

    /// Kind, expiry and id length.
    [<Literal>]
    let PayloadPrefixLength = 13

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

    /// Well under 2 GiB, so a record's length always fits an int with room to spare.
    let MaxPayloadLength = Int32.MaxValue / 2

    /// The most bytes one write gathers; a larger backlog is written (and flushed) in several.
    let MaxBatchBytes = 16 * 1024 * 1024

    let fileHeader () =
        let header = Array.zeroCreate<byte> FileHeaderLength
        Magic.CopyTo(header, 0)
        BinaryPrimitives.WriteUInt32LittleEndian(Span(header, 8, 4), FormatVersion)
        header

    let payload (kind: byte) (expires: int64) (id: byte[]) (patch: byte[]) : byte[] =
        let p = Array.zeroCreate<byte> (PayloadPrefixLength + id.Length + patch.Length)
        p[0] <- kind
        BinaryPrimitives.WriteInt64LittleEndian(Span(p, 1, 8), expires)
        BinaryPrimitives.WriteInt32LittleEndian(Span(p, 9, 4), id.Length)
        Buffer.BlockCopy(id, 0, p, PayloadPrefixLength, id.Length)
        Buffer.BlockCopy(patch, 0, p, PayloadPrefixLength + id.Length, patch.Length)
        p

    /// Frames a payload into <c>dest</c> at <c>at</c>; gives the record's length.
    let frame (dest: byte[]) (at: int) (durableEnd: int64) (payload: byte[]) : int =
        let length = RecordHeaderLength + payload.Length
        BinaryPrimitives.WriteUInt32LittleEndian(Span(dest, at, 4), uint32 payload.Length)
        BinaryPrimitives.WriteInt64LittleEndian(Span(dest, at + 8, 8), durableEnd)
        Buffer.BlockCopy(payload, 0, dest, at + RecordHeaderLength, payload.Length)
        BinaryPrimitives.WriteUInt32LittleEndian(Span(dest, at + 4, 4), Crc32C.OfRecord(ReadOnlySpan(dest, at, length)))
        length

    /// What a snapshot record adds to a session's JSON: framing, id and the <c>[["set",[],…]]</c> around it.
    let snapshotOverhead =
        RecordHeaderLength + PayloadPrefixLength + (Patch.toUtf8 (Patch.fold [ Update.set Path.root Json.Null ])).Length - 4

    /// The bytes a session takes in a freshly compacted file.
    let snapshotBytes (idLength: int) (size: int64) = int64 (snapshotOverhead + idLength) + size
