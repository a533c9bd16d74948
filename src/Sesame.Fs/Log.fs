namespace Sesame

open System
open Microsoft.Extensions.Logging

/// Sesame's log messages, with stable event ids (precompiled, so disabled levels cost nothing).
[<RequireQualifiedAccess>]
module internal Log =

    let private cookieRejected =
        LoggerMessage.Define<string>(LogLevel.Debug, EventId(1, "SessionCookieRejected"), "The session cookie was rejected ({Reason}); starting a new session.")

    let private sessionUnknown =
        LoggerMessage.Define(
            LogLevel.Debug,
            EventId(2, "SessionUnknown"),
            "The session cookie names no live session (expired, destroyed or never stored); starting a new session."
        )

    let private committed =
        LoggerMessage.Define<int, bool>(LogLevel.Debug, EventId(3, "SessionCommitted"), "Committed {UpdateCount} updates in one write (new session: {IsNew}).")

    let private commitFailed =
        LoggerMessage.Define(
            LogLevel.Error,
            EventId(4, "SessionCommitFailed"),
            "Committing the session failed; the request's session changes were not stored, unless the error says the store may have applied them (a timeout, a lost connection)."
        )

    let private sessionGone =
        LoggerMessage.Define<int>(
            LogLevel.Warning,
            EventId(5, "SessionGone"),
            "The session was destroyed or expired while this request ran; its {UpdateCount} updates were not stored."
        )

    let private cookieTooLate =
        LoggerMessage.Define(
            LogLevel.Warning,
            EventId(6, "SessionCookieAfterResponseStarted"),
            "A new session was first changed after the response had started: its changes are stored, but the client cannot get its cookie. Change the session before writing the response."
        )

    let private loadFailed = LoggerMessage.Define(LogLevel.Error, EventId(7, "SessionLoadFailed"), "Loading the session from the store failed.")

    let private unsharedKeys =
        LoggerMessage.Define<string>(
            LogLevel.Warning,
            EventId(8, "DataProtectionKeysNotShared"),
            "Sesame's store ({Store}) is shared by app instances, but Data Protection keys are not persisted to a shared location: each instance will reject the cookies the others issue. Configure services.AddDataProtection().PersistKeysTo...() with a location all instances share."
        )

    // What the store did for each request, with sizes and timings (debug), and the session only as its handle.
    let private loaded =
        LoggerMessage.Define<string, string, int64, float>(
            LogLevel.Debug,
            EventId(9, "SessionLoaded"),
            "Loaded session {SessionHandle}: {Outcome}, {SessionBytes} bytes, {ElapsedMilliseconds} ms."
        )

    let private stored =
        LoggerMessage.Define<string, string, int, int64, float>(
            LogLevel.Debug,
            EventId(10, "SessionStored"),
            "Stored a change of session {SessionHandle}: {Outcome}, {UpdateCount} updates, {PatchBytes} bytes of patch, {ElapsedMilliseconds} ms."
        )

    let private moved =
        LoggerMessage.Define<string, string, string, int, int64, float>(
            LogLevel.Debug,
            EventId(11, "SessionMoved"),
            "Moved session {PreviousHandle} to {SessionHandle}: {Outcome}, {UpdateCount} updates, {PatchBytes} bytes of patch, {ElapsedMilliseconds} ms."
        )

    let private deleted =
        LoggerMessage.Define<string, string, float>(
            LogLevel.Debug,
            EventId(12, "SessionDeleted"),
            "Deleted session {SessionHandle}: {Outcome}, {ElapsedMilliseconds} ms."
        )

    let private ended =
        LoggerMessage.Define<string, SessionEndReason, string>(
            LogLevel.Debug,
            EventId(13, "SessionEndedByStore"),
            "The {Store} store ended session {SessionHandle}: {Reason}."
        )

    let private handlerFailed =
        LoggerMessage.Define<string>(
            LogLevel.Error,
            EventId(14, "SessionEventHandlerFailed"),
            "The app's {EventName} session event handler failed; the request, or the store, goes on."
        )

    let private storeChanged =
        LoggerMessage.Define<string, string>(
            LogLevel.Debug,
            EventId(15, "SessionStoreInUse"),
            "Sessions live in the {Store} store ({StoreType}); metrics and traces: meter and activity source 'Sesame'."
        )

    let private handlersBehind =
        LoggerMessage.Define<int>(
            LogLevel.Warning,
            EventId(16, "SessionEventsDropping"),
            "Expiry or eviction events are being dropped: the app's handlers for them fell behind the store ({Capacity} may wait)."
        )

    let private handlersCaughtUp =
        LoggerMessage.Define<int64>(
            LogLevel.Warning,
            EventId(17, "SessionEventsDropped"),
            "{DroppedCount} expiry or eviction events were dropped while the app's handlers for them were behind the store."
        )

    let private handlersLeft =
        LoggerMessage.Define<int64>(
            LogLevel.Warning,
            EventId(18, "SessionEventsLeftAtStop"),
            "{LeftCount} expiry or eviction events were not handled before the app stopped: their handlers did not finish within the host's shutdown timeout."
        )

    let private signInJoined =
        LoggerMessage.Define(
            LogLevel.Information,
            EventId(19, "SessionSignInJoined"),
            "A sign-in found its session moved by another sign-in of the same user moments before (a login submitted twice); it joined the session that sign-in made, with this request's changes."
        )

    let private userSessionsLeft =
        LoggerMessage.Define<int, int>(
            LogLevel.Warning,
            EventId(20, "UserSessionsLeft"),
            "Ending a user's sessions stopped after {Rounds} rounds with {LeftCount} sessions still listed: they signed in, or moved to a new id, while it ran."
        )

    let private sealKeyMade =
        LoggerMessage.Define(
            LogLevel.Debug,
            EventId(21, "SealKeyMade"),
            "Sealing session tickets with a new key (the last one had sealed for an hour, or there was none yet)."
        )

    let private sealKeyRefused =
        LoggerMessage.Define(
            LogLevel.Warning,
            EventId(22, "SealKeyRefused"),
            "The key this app sealed session tickets with no longer opens with the Data Protection key ring (its key was revoked or removed): the tickets it sealed are refused, and new tickets get a new key."
        )

    let newSealKey (logger: ILogger) = sealKeyMade.Invoke(logger, null)
    let sealKeyNoLongerOpens (logger: ILogger) = sealKeyRefused.Invoke(logger, null)

    let keysNotShared (logger: ILogger) (store: string) = unsharedKeys.Invoke(logger, store, null)
    let sessionsLeft (logger: ILogger) (rounds: int) (left: int) = userSessionsLeft.Invoke(logger, rounds, left, null)

    let cookieRejectedBecause (logger: ILogger) (reason: string) = cookieRejected.Invoke(logger, reason, null)
    let unknownSession (logger: ILogger) = sessionUnknown.Invoke(logger, null)
    let signInJoinedMove (logger: ILogger) = signInJoined.Invoke(logger, null)
    let commitDone (logger: ILogger) (count: int) (isNew: bool) = committed.Invoke(logger, count, isNew, null)
    let commitError (logger: ILogger) (error: exn) = commitFailed.Invoke(logger, error)
    let gone (logger: ILogger) (count: int) = sessionGone.Invoke(logger, count, null)
    let cookieAfterStart (logger: ILogger) = cookieTooLate.Invoke(logger, null)
    let loadError (logger: ILogger) (error: exn) = loadFailed.Invoke(logger, error)
    let sessionLoaded (logger: ILogger) (handle: string) (outcome: string) (bytes: int64) (ms: float) = loaded.Invoke(logger, handle, outcome, bytes, ms, null)
    let sessionStored (logger: ILogger) (handle: string) (outcome: string) (updates: int) (bytes: int64) (ms: float) =
        stored.Invoke(logger, handle, outcome, updates, bytes, ms, null)
    let sessionMoved (logger: ILogger) (previous: string) (handle: string) (outcome: string) (updates: int) (bytes: int64) (ms: float) =
        moved.Invoke(logger, previous, handle, outcome, updates, bytes, ms, null)
    let sessionDeleted (logger: ILogger) (handle: string) (outcome: string) (ms: float) = deleted.Invoke(logger, handle, outcome, ms, null)
    let sessionEnded (logger: ILogger) (store: string) (reason: SessionEndReason) (handle: string) = ended.Invoke(logger, store, reason, handle, null)
    let eventHandlerFailed (logger: ILogger) (eventName: string) (error: exn) = handlerFailed.Invoke(logger, eventName, error)
    let storeInUse (logger: ILogger) (store: string) (storeType: string) = storeChanged.Invoke(logger, store, storeType, null)
    let eventsDropping (logger: ILogger) (capacity: int) = handlersBehind.Invoke(logger, capacity, null)
    let eventsDropped (logger: ILogger) (count: int64) = handlersCaughtUp.Invoke(logger, count, null)
    let eventsLeftAtStop (logger: ILogger) (count: int64) = handlersLeft.Invoke(logger, count, null)
