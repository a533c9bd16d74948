namespace Sesame

open System
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging
open Microsoft.Win32.SafeHandles

/// The session file commits are appended to now (a compaction swaps in its successor): how much of it is
/// written and how much flushed, and the write failure that stopped the store, if any. Changed by the writer
/// thread only.
[<Sealed>]
type internal ActiveFile(path: string, opened: SafeFileHandle, openedLength: int64) =
    let mutable handle = opened
    let mutable length = openedLength
    let mutable durableLength = openedLength
    let mutable faulted: exn = null
    /// The path the handle was opened at: a compaction's file, once renamed over this one, was opened at PATH.compacting.
    let mutable openedAt = path

    /// The error of a write to the handle, naming the file by its path (a compacted file's handle names the old one),
    /// with the operating system's error code (what tells a full disk) kept.
    let named (e: IO.IOException) : exn = if openedAt = path then e else IO.IOException(e.Message.Replace(openedAt, path), e.HResult)

    /// Files are opened exclusively: an advisory flock on Unix (FileShare.None); on Windows a share
    /// mode that still lets a compaction rename over the open file.
    static member Share = if OperatingSystem.IsWindows() then IO.FileShare.Delete else IO.FileShare.None

    /// Opens (or creates) the file and its directory for this process alone; a file another process or
    /// store holds is a <see cref="T:Sesame.SessionStoreException"/> saying so.
    static member OpenExclusive(path: string) : SafeFileHandle =
        try
            IO.Directory.CreateDirectory(IO.Path.GetDirectoryName path) |> ignore
            IO.File.OpenHandle(path, IO.FileMode.OpenOrCreate, IO.FileAccess.ReadWrite, ActiveFile.Share, IO.FileOptions.None)
        with
        | :? IO.IOException as e when not (e :? IO.FileNotFoundException || e :? IO.DirectoryNotFoundException || e :? IO.PathTooLongException) ->
            // EWOULDBLOCK from flock on Linux (11) and macOS (35); ERROR_SHARING_VIOLATION or ERROR_LOCK_VIOLATION on Windows.
            let code = e.HResult &&& 0xFFFF
            let inUse = if OperatingSystem.IsWindows() then code = 32 || code = 33 else code = 11 || code = 35
            if inUse then
                raise (
                    SessionStoreException($"The session file '{path}' is in use by another process or another FileStore; one store owns a file at a time.", e)
                )
            raise (SessionStoreException($"The session file '{path}' cannot be opened: {e.Message}", e))
        | :? UnauthorizedAccessException as e -> raise (SessionStoreException($"The session file '{path}' cannot be opened: {e.Message}", e))

    member _.Path = path

    /// The end of what was written (read by any thread).
    member _.Length = Volatile.Read &length

    /// The end of what was flushed to disk.
    member _.DurableLength = durableLength

    /// The write failure after which the store accepts no more changes; null while there is none.
    member _.Faulted
        with get () = faulted
        and set (error: exn) = faulted <- error

    /// What a change refused after a failed write fails with.
    member _.FailedError() =
        SessionStoreException(
            $"Writing to the session file '{path}' failed ({faulted.Message}); the store accepts no more changes until it is reopened.",
            faulted
        )

    /// What a change or a compaction asked of a closed store fails with.
    member _.ClosedError() = ObjectDisposedException("FileStore", $"The file store on '{path}' is closed.")

    /// Writes the bytes at the end of the file.
    member _.Append(bytes: ReadOnlySpan<byte>) =
        try
            IO.RandomAccess.Write(handle, bytes, length)
        with :? IO.IOException as e ->
            raise (named e)
        Volatile.Write(&length, length + int64 bytes.Length)

    /// Flushes everything written to disk.
    member _.Flush() =
        try
            IO.RandomAccess.FlushToDisk handle
        with :? IO.IOException as e ->
            raise (named e)
        durableLength <- length

    /// Cuts the file back to <paramref name="end"/> after a write or flush failed past it, and flushes the cut. A write
    /// cut short (a full disk) leaves whole records of its batch before the point it failed at, and a failed flush may
    /// still have put them on disk: replay would keep them, bringing back commits that were reported failed.
    member _.CutBack(``end``: int64) =
        try
            IO.RandomAccess.SetLength(handle, ``end``)
            IO.RandomAccess.FlushToDisk handle
        with :? IO.IOException as e ->
            raise (named e)
        Volatile.Write(&length, ``end``)
        durableLength <- min durableLength ``end``

    /// Goes on with a compacted file, flushed to its end, that has been renamed over this one from <paramref name="nextPath"/>.
    member _.Replace(next: SafeFileHandle, nextPath: string, nextLength: int64) =
        let old = handle
        handle <- next
        openedAt <- nextPath
        Volatile.Write(&length, nextLength)
        durableLength <- nextLength
        // Closing the last handle of the replaced file frees its blocks, which can take tens of
        // milliseconds (longer with discard): do it off the writer. Its path names the new file already.
        Task.Run(fun () -> old.Dispose()) |> ignore

    /// Flushes what is written but not flushed (unless writing failed), and closes the file.
    member this.Close(logger: ILogger) =
        if isNull faulted && durableLength < length then
            try
                this.Flush()
            with e ->
                FileStoreLog.writeError logger path e
        FileStoreLog.closedFile logger path length
        handle.Dispose()
