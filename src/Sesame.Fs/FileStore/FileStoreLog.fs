namespace Sesame

open Microsoft.Extensions.Logging

/// The file store's log messages, with stable event ids (101 to 111).
[<RequireQualifiedAccess>]
module internal FileStoreLog =

    let private opened =
        LoggerMessage.Define<string, int, int64, int64>(
            LogLevel.Information,
            EventId(101, "FileStoreOpened"),
            "Opened the session file {SessionPath}: {SessionCount} live sessions, {FileBytes} bytes, replayed in {ElapsedMs} ms."
        )

    let private tornTail =
        LoggerMessage.Define<int64, int64, string>(
            LogLevel.Warning,
            EventId(102, "FileStoreTornTailCut"),
            "Dropped {DroppedBytes} bytes of a torn tail at byte offset {Offset} of {SessionPath}: the last write was interrupted (a crash or power cut before it was flushed). Every record before it is kept."
        )

    let private compacted =
        LoggerMessage.Define<string, int64, int64, int, int64, float>(
            LogLevel.Information,
            EventId(103, "FileStoreCompacted"),
            "Compacted {SessionPath} from {BytesBefore} to {BytesAfter} bytes ({SessionCount} sessions) in {ElapsedMs} ms; commits waited on it for {HeldMs} ms."
        )

    let private compactionFailed =
        LoggerMessage.Define<string>(
            LogLevel.Error,
            EventId(104, "FileStoreCompactionFailed"),
            "Compacting {SessionPath} failed; the store keeps appending to the file as it is."
        )

    let private writeFailed =
        LoggerMessage.Define<string>(
            LogLevel.Critical,
            EventId(105, "FileStoreWriteFailed"),
            "Writing to {SessionPath} failed; the store accepts no more changes until it is reopened."
        )

    let private replayMismatch =
        LoggerMessage.Define<int64, string>(
            LogLevel.Warning,
            EventId(106, "FileStoreReplayMismatch"),
            "The record at byte offset {Offset} of {SessionPath} changes a session the file does not hold; it was applied to an empty session."
        )

    let private noDirectorySync =
        LoggerMessage.Define<string>(
            LogLevel.Debug,
            EventId(107, "FileStoreNoDirectorySync"),
            "This platform cannot flush the directory of {SessionPath}; a compacted file relies on the file system to make its rename durable."
        )

    let private staleTempDeleted =
        LoggerMessage.Define<string>(
            LogLevel.Information,
            EventId(108, "FileStoreStaleCompactionDeleted"),
            "Deleted {TempPath}, left by a compaction that did not finish."
        )

    let private closed =
        LoggerMessage.Define<string, int64>(LogLevel.Debug, EventId(109, "FileStoreClosed"), "Closed the session file {SessionPath} at {FileBytes} bytes.")

    let private cutBackFailed =
        LoggerMessage.Define<string, int64>(
            LogLevel.Critical,
            EventId(110, "FileStoreCutBackFailed"),
            "After a failed write, {SessionPath} could not be cut back to {FileBytes} bytes: records of commits reported failed may be in it, and come back when it is reopened."
        )

    let private reportFailed =
        LoggerMessage.Define<string>(
            LogLevel.Error,
            EventId(111, "FileStoreEndReportFailed"),
            "Reporting a session that {SessionPath}'s store ended (evicted, or over its user's limit) failed; the session is ended all the same."
        )

    let openedFile (logger: ILogger) path count bytes ms = opened.Invoke(logger, path, count, bytes, ms, null)
    let cutTornTail (logger: ILogger) dropped offset path = tornTail.Invoke(logger, dropped, offset, path, null)
    let compactedFile (logger: ILogger) path before after count ms held = compacted.Invoke(logger, path, before, after, count, ms, held, null)
    let compactionError (logger: ILogger) path (error: exn) = compactionFailed.Invoke(logger, path, error)
    let writeError (logger: ILogger) path (error: exn) = writeFailed.Invoke(logger, path, error)
    let mismatch (logger: ILogger) offset path = replayMismatch.Invoke(logger, offset, path, null)
    let directorySyncUnavailable (logger: ILogger) path = noDirectorySync.Invoke(logger, path, null)
    let deletedStaleTemp (logger: ILogger) path = staleTempDeleted.Invoke(logger, path, null)
    let closedFile (logger: ILogger) path bytes = closed.Invoke(logger, path, bytes, null)
    let cutBackError (logger: ILogger) path bytes (error: exn) = cutBackFailed.Invoke(logger, path, bytes, error)
    let reportError (logger: ILogger) path (error: exn) = reportFailed.Invoke(logger, path, error)
