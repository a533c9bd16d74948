namespace Sesame

open System
open Microsoft.Win32.SafeHandles

/// Appends framed records to a file through one buffer.
[<Sealed>]
type internal RecordWriter(handle: SafeFileHandle, start: int64, durableEnd: int64, syncEachChunk: bool) =
    let mutable chunk: byte[] = Array.zeroCreate (1 <<< 20)
    let mutable used = 0
    let mutable written = start

    /// The end of what was appended so far.
    member _.Position = written + int64 used

    member _.Flush() =
        if used > 0 then
            IO.RandomAccess.Write(handle, ReadOnlySpan(chunk, 0, used), written)
            written <- written + int64 used
            used <- 0
            // Flushing a big file in one go stalls the small flushes of concurrent commits behind it
            // (they share the file system's journal); a megabyte at a time keeps each stall short.
            if syncEachChunk then IO.RandomAccess.FlushToDisk handle

    member this.Append(payload: byte[]) =
        let length = FileLog.RecordHeaderLength + payload.Length
        if used + length > chunk.Length then
            this.Flush()
            if length > chunk.Length then chunk <- Array.zeroCreate length
        used <- used + FileLog.frame chunk used durableEnd payload
