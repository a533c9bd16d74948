namespace Sesame

open System
open System.Buffers.Binary
open System.Collections.Generic
open System.Text
open System.Text.Json
open Microsoft.Extensions.Logging
open Microsoft.Win32.SafeHandles

/// A session as replay rebuilds it.
[<Sealed; AllowNullLiteral>]
type internal ReplayedSession(session: StoredSession, expires: int64, lastSeen: int64) =
    member val Session = session with get, set
    member val Expires = expires with get, set
    member val LastSeen = lastSeen with get, set

/// Rebuilding the sessions from the file on open.
module internal FileReplay =

    let private corrupt (path: string) (offset: int64) (why: string) =
        SessionStoreException $"The session file '{path}' holds a record it cannot use at byte offset {offset}: {why}. The file was left as it is."

    let private applyRecord
        (logger: ILogger)
        (path: string)
        (version: uint32)
        (sessions: Dictionary<string, ReplayedSession>)
        (offset: int64)
        (buffer: byte[])
        (at: int)
        (length: int)
        =
        let kind = buffer[at]
        let expires = BinaryPrimitives.ReadInt64LittleEndian(ReadOnlySpan(buffer, at + 1, 8))
        let prefix, lastSeen, idLength =
            if version = FileLog.FormatVersion1 then
                // Version 1 kept no last-seen time: the record's expiry is the closest bound there is.
                FileLog.PayloadPrefixLengthV1, 0L, BinaryPrimitives.ReadInt32LittleEndian(ReadOnlySpan(buffer, at + 9, 4))
            elif length < FileLog.PayloadPrefixLength then
                raise (corrupt path offset "it is shorter than a record's prefix")
            else
                FileLog.PayloadPrefixLength,
                BinaryPrimitives.ReadInt64LittleEndian(ReadOnlySpan(buffer, at + 9, 8)),
                BinaryPrimitives.ReadInt32LittleEndian(ReadOnlySpan(buffer, at + 17, 4))
        if idLength < 0 || idLength > length - prefix then raise (corrupt path offset "its id length is out of range")
        let id = Encoding.UTF8.GetString(buffer, at + prefix, idLength)
        let bodyAt = at + prefix + idLength
        let bodyLength = length - prefix - idLength
        let invalid (e: exn) =
            SessionStoreException(
                $"The session file '{path}' holds a record it cannot use at byte offset {offset}: its change is not valid ({e.Message}). The file was left as it is.",
                e
            )
        let readChange (from: int) (count: int) =
            try
                if version = FileLog.FormatVersion1 then
                    SessionChange(Patch.parseUtf8 (ReadOnlySpan(buffer, from, count)))
                else
                    FileLog.readChange (ReadOnlySpan(buffer, from, count))
            with :? JsonException as e ->
                raise (invalid e)
        let apply (change: SessionChange) (before: StoredSession) =
            let after =
                try
                    change.ApplyTo before
                with :? PathConflictException as e ->
                    raise (
                        SessionStoreException(
                            $"The session file '{path}' holds a record it cannot use at byte offset {offset}: its change does not fit the session ({e.Message}). The file was left as it is.",
                            e
                        )
                    )
            if isNull after then raise (corrupt path offset "its shape upgrade does not fit the session")
            after
        match kind with
        | FileLog.KindCreate -> sessions[id] <- ReplayedSession(apply (readChange bodyAt bodyLength) null, expires, lastSeen)
        | FileLog.KindPatch ->
            let change = readChange bodyAt bodyLength
            match sessions.TryGetValue id with
            | true, session ->
                session.Session <- apply change session.Session
                session.Expires <- expires
                session.LastSeen <- lastSeen
            | _ ->
                FileStoreLog.mismatch logger offset path
                sessions[id] <- ReplayedSession(apply change null, expires, lastSeen)
        | FileLog.KindMove when version <> FileLog.FormatVersion1 ->
            if bodyLength < 4 then raise (corrupt path offset "its old id is missing")
            let fromLength = BinaryPrimitives.ReadInt32LittleEndian(ReadOnlySpan(buffer, bodyAt, 4))
            if fromLength < 0 || fromLength > bodyLength - 4 then raise (corrupt path offset "its old id length is out of range")
            let fromId = Encoding.UTF8.GetString(buffer, bodyAt + 4, fromLength)
            let change = readChange (bodyAt + 4 + fromLength) (bodyLength - 4 - fromLength)
            let before =
                if fromLength = 0 then
                    null
                else
                    match sessions.TryGetValue fromId with
                    | true, session -> session.Session
                    | _ ->
                        FileStoreLog.mismatch logger offset path
                        null
            sessions.Remove fromId |> ignore
            sessions[id] <- ReplayedSession(apply change before, expires, lastSeen)
        | FileLog.KindDelete -> sessions.Remove id |> ignore
        | FileLog.KindTouch ->
            match sessions.TryGetValue id with
            | true, session ->
                session.Expires <- expires
                session.LastSeen <- lastSeen
            | _ -> ()
        | other -> raise (corrupt path offset $"its kind {other} is unknown (written by a newer Sesame?)")

    /// Checks the header, replays every record, and cuts a torn tail. Gives the sessions, the file's length and its format version.
    let run (logger: ILogger) (path: string) (handle: SafeFileHandle) : Dictionary<string, ReplayedSession> * int64 * uint32 =
        let sessions = Dictionary<string, ReplayedSession>(StringComparer.Ordinal)
        let length = IO.RandomAccess.GetLength handle
        let expected = FileLog.fileHeader ()
        let header = Array.zeroCreate<byte>(int (min length (int64 FileLog.FileHeaderLength)))
        if header.Length > 0 then IO.RandomAccess.Read(handle, Span header, 0L) |> ignore
        if length < int64 FileLog.FileHeaderLength then
            // A new file, or one whose creation was cut short: nothing was ever committed to it.
            if not (MemoryExtensions.SequenceEqual(ReadOnlySpan(header), ReadOnlySpan(expected, 0, header.Length))) then
                raise (
                    SessionStoreException
                        $"The file '{path}' is not a Sesame session file (its first bytes are not a Sesame header). The file was left as it is."
                )
            IO.RandomAccess.Write(handle, ReadOnlySpan expected, 0L)
            IO.RandomAccess.FlushToDisk handle
            sessions, int64 FileLog.FileHeaderLength, FileLog.FormatVersion
        elif not (MemoryExtensions.SequenceEqual(ReadOnlySpan(header, 0, 8), ReadOnlySpan(expected, 0, 8))) then
            raise (
                SessionStoreException $"The file '{path}' is not a Sesame session file (its first bytes are not a Sesame header). The file was left as it is."
            )
        else
            let version = BinaryPrimitives.ReadUInt32LittleEndian(ReadOnlySpan(header, 8, 4))
            if version <> FileLog.FormatVersion && version <> FileLog.FormatVersion1 then
                raise (
                    SessionStoreException
                        $"The session file '{path}' has format version {version}; this Sesame reads versions 1 and {FileLog.FormatVersion}. The file was left as it is."
                )
            let reader = LogReader(handle, length)
            let mutable offset = int64 FileLog.FileHeaderLength
            let mutable reading = true
            while reading && offset < length do
                let payloadLength = reader.TryRecord offset
                if payloadLength < 0 then
                    reading <- false
                else
                    let at = reader.Fetch(offset, FileLog.RecordHeaderLength + payloadLength)
                    applyRecord logger path version sessions offset reader.Buffer (at + FileLog.RecordHeaderLength) payloadLength
                    offset <- offset + int64 (FileLog.RecordHeaderLength + payloadLength)
            if offset < length then
                // The record at `offset` is torn or corrupt. Every record names the end of what was on
                // disk when it was written; a valid record after this one that names a point past it
                // proves this one had been flushed: that is damage, not an interrupted write.
                let bad = offset
                let mutable candidate = bad + 1L
                let mutable proof = -1L
                while proof < 0L && candidate < length do
                    let payloadLength = reader.TryRecord candidate
                    if payloadLength < 0 then candidate <- candidate + 1L
                    elif reader.DurableEnd candidate > bad then proof <- candidate
                    else candidate <- candidate + int64 (FileLog.RecordHeaderLength + payloadLength)
                if proof >= 0L then
                    raise (
                        SessionStoreException
                            $"The session file '{path}' is corrupt at byte offset {bad}: the record there fails its length or checksum check, yet the valid record at byte offset {proof} shows it had been flushed to disk, so it is damage, not an interrupted write. The file was left as it is; restore it from a backup or move it aside."
                    )
                IO.RandomAccess.SetLength(handle, bad)
                IO.RandomAccess.FlushToDisk handle
                FileStoreLog.cutTornTail logger (length - bad) bad path
            sessions, offset, version

    /// The sessions still live at <c>t</c>, as the store holds them: what they read is what the file holds.
    /// They enter the eviction order as returning sessions (a file does not record which sessions came back; those
    /// that lived through a restart are taken to be established), least recently seen first, so that past the
    /// returning segment's share the least recently seen are the first to go.
    let live (t: int64) (maxSessions: int) (replayed: Dictionary<string, ReplayedSession>) : FileSessions =
        let sessions = FileSessions maxSessions
        let alive = [|
            for KeyValue(id, replayedSession) in replayed do
                if replayedSession.Expires > t then struct (id, replayedSession)
        |]
        Array.sortInPlaceBy (fun (struct (_, r: ReplayedSession)) -> r.LastSeen) alive
        for struct (id, replayedSession) in alive do
            let idBytes = Encoding.UTF8.GetBytes id
            let session = FileSession(id, idBytes)
            let stored = replayedSession.Session
            session.Latest <- stored
            session.Visible <- stored
            session.LatestExpires <- replayedSession.Expires
            session.VisibleExpires <- replayedSession.Expires
            session.FileExpires <- replayedSession.Expires
            session.LastSeen <- replayedSession.LastSeen
            sessions.Add(id, session, FileLog.snapshotBytes idBytes.Length (FileLog.sizeOf stored))
            sessions.SetHeldBytes(session, FileSessionMemory.ofSession id.Length stored)
            sessions.Policy.Admit(session.Node, true)
            match SessionMeta.userOf stored.Meta with
            | Some user -> sessions.Index(id, session, user)
            | None -> ()
        sessions
