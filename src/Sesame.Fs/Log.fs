namespace Sesame

open System
open Microsoft.Extensions.Logging

/// Sesame's log messages, with stable event ids (precompiled, so disabled levels cost nothing).
[<RequireQualifiedAccess>]
module internal Log =

    let private cookieRejected =
        LoggerMessage.Define<string>(LogLevel.Debug, EventId(1, "SessionCookieRejected"), "The session cookie was rejected ({Reason}); starting a new session.")

    let private sessionUnknown =
        LoggerMessage.Define(LogLevel.Debug, EventId(2, "SessionUnknown"), "The session cookie names no live session (expired, destroyed or never stored); starting a new session.")

    let private committed =
        LoggerMessage.Define<int, bool>(LogLevel.Debug, EventId(3, "SessionCommitted"), "Committed {UpdateCount} updates in one write (new session: {IsNew}).")

    let private commitFailed =
        LoggerMessage.Define(LogLevel.Error, EventId(4, "SessionCommitFailed"), "Committing the session failed; the request's session changes were not stored.")

    let private sessionGone =
        LoggerMessage.Define<int>(LogLevel.Warning, EventId(5, "SessionGone"), "The session was destroyed or expired while this request ran; its {UpdateCount} updates were not stored.")

    let private cookieTooLate =
        LoggerMessage.Define(LogLevel.Warning, EventId(6, "SessionCookieAfterResponseStarted"), "A new session was first changed after the response had started: its changes are stored, but the client cannot get its cookie. Change the session before writing the response.")

    let private loadFailed =
        LoggerMessage.Define(LogLevel.Error, EventId(7, "SessionLoadFailed"), "Loading the session from the store failed.")

    let private unsharedKeys =
        LoggerMessage.Define<string>(LogLevel.Warning, EventId(8, "DataProtectionKeysNotShared"), "Sesame's store ({Store}) is shared by app instances, but Data Protection keys are not persisted to a shared location: each instance will reject the cookies the others issue. Configure services.AddDataProtection().PersistKeysTo...() with a location all instances share.")

    let keysNotShared (logger: ILogger) (store: string) = unsharedKeys.Invoke(logger, store, null)

    let cookieRejectedBecause (logger: ILogger) (reason: string) = cookieRejected.Invoke(logger, reason, null)
    let unknownSession (logger: ILogger) = sessionUnknown.Invoke(logger, null)
    let commitDone (logger: ILogger) (count: int) (isNew: bool) = committed.Invoke(logger, count, isNew, null)
    let commitError (logger: ILogger) (error: exn) = commitFailed.Invoke(logger, error)
    let gone (logger: ILogger) (count: int) = sessionGone.Invoke(logger, count, null)
    let cookieAfterStart (logger: ILogger) = cookieTooLate.Invoke(logger, null)
    let loadError (logger: ILogger) (error: exn) = loadFailed.Invoke(logger, error)
