namespace Sesame

open System
open System.Buffers.Binary
open Microsoft.Win32.SafeHandles

/// Reads a file by offset through one buffer, refilled as reading moves on.
[<Sealed>]
type internal LogReader(handle: SafeFileHandle, length: int64) =
    let mutable buffer: byte[] = Array.zeroCreate (1 <<< 20)
    let mutable start = 0L
    let mutable count = 0

    member _.Buffer = buffer

    /// Makes bytes [offset, offset + n) readable in Buffer; gives the index of the first.
    member _.Fetch(offset: int64, n: int) : int =
        if offset >= start && offset + int64 n <= start + int64 count then
            int (offset - start)
        else
            if buffer.Length < n then buffer <- Array.zeroCreate (max n (buffer.Length * 2))
            let wanted = int (min (int64 buffer.Length) (length - offset))
            let mutable got = 0
            let mutable atEnd = false
            while got < wanted && not atEnd do
                let read = IO.RandomAccess.Read(handle, Span(buffer, got, wanted - got), offset + int64 got)
                if read = 0 then atEnd <- true else got <- got + read
            start <- offset
            count <- got
            if got < n then raise (IO.EndOfStreamException "The session file shrank while it was being read.")
            0

    /// The payload length of the valid record at <c>offset</c>, or -1 when there is none there.
    member this.TryRecord(offset: int64) : int =
        if length - offset < int64 (FileLog.RecordHeaderLength + FileLog.PayloadPrefixLengthV1) then
            -1
        else
            let i = this.Fetch(offset, FileLog.RecordHeaderLength)
            let payloadLength = BinaryPrimitives.ReadUInt32LittleEndian(ReadOnlySpan(buffer, i, 4))
            let durableEnd = BinaryPrimitives.ReadInt64LittleEndian(ReadOnlySpan(buffer, i + 8, 8))
            if
                payloadLength < uint32 FileLog.PayloadPrefixLengthV1
                || payloadLength > uint32 FileLog.MaxPayloadLength
                || int64 payloadLength > length - offset - int64 FileLog.RecordHeaderLength
                || durableEnd < int64 FileLog.FileHeaderLength
                || durableEnd > offset
            then
                -1
            else
                let n = FileLog.RecordHeaderLength + int payloadLength
                let i = this.Fetch(offset, n)
                let stored = BinaryPrimitives.ReadUInt32LittleEndian(ReadOnlySpan(buffer, i + 4, 4))
                if Crc32C.OfRecord(ReadOnlySpan(buffer, i, n)) = stored then int payloadLength else -1

    /// The durable-end field of the record at <c>offset</c> (which must be valid).
    member this.DurableEnd(offset: int64) : int64 =
        let i = this.Fetch(offset, FileLog.RecordHeaderLength)
        BinaryPrimitives.ReadInt64LittleEndian(ReadOnlySpan(buffer, i + 8, 8))
