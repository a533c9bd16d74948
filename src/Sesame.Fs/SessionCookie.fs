namespace Sesame

open System
open System.Security.Cryptography
open Microsoft.AspNetCore.DataProtection
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.Logging

/// <summary>
/// The session cookie: the session id, protected (encrypted and signed) with ASP.NET Core Data
/// Protection, so a client can neither read nor forge one. Whatever a client sends that is not a
/// cookie Sesame made is treated as "no session yet".
/// </summary>
[<Sealed>]
type internal SessionCookie(protector: IDataProtector, options: SesameOptions, logger: ILogger) =

    /// A protected id is about 120 characters; anything far longer is not one of ours and is not worth decrypting.
    static let maxValueLength = 512

    /// The purpose string isolates Sesame's protected payloads from every other Data Protection user.
    static member Purpose = "Sesame.SessionCookie.v1"

    /// <summary>The session ticket the request's cookie carries, or nothing (logged at debug level with the reason).</summary>
    member _.TryRead(request: HttpRequest) : SessionTicket voption =
        match request.Cookies[options.CookieName] with
        | null
        | "" -> ValueNone
        | value when value.Length > maxValueLength ->
            Log.cookieRejectedBecause logger $"{value.Length} characters, too long to be a session cookie"
            ValueNone
        | value ->
            try
                match SessionTicket.tryParse (protector.Unprotect value) with
                | ValueSome ticket -> ValueSome ticket
                | ValueNone ->
                    Log.cookieRejectedBecause logger "its content is not a session ticket"
                    ValueNone
            with
            | :? CryptographicException ->
                Log.cookieRejectedBecause logger "tampered, malformed, or protected with a key this app does not have"
                ValueNone
            | :? FormatException ->
                Log.cookieRejectedBecause logger "not base64url"
                ValueNone

    member private _.CookieOptions(request: HttpRequest) =
        CookieOptions(
            Path = options.CookiePath,
            Domain = options.CookieDomain,
            SameSite = options.SameSite,
            HttpOnly = options.HttpOnly,
            Secure =
                (match options.SecurePolicy with
                 | CookieSecurePolicy.Always -> true
                 | CookieSecurePolicy.None -> false
                 | _ -> request.IsHttps),
            MaxAge = options.CookieMaxAge
        )

    /// <summary>Adds the cookie for a session ticket to the response.</summary>
    member this.Write(context: HttpContext, ticket: SessionTicket) =
        context.Response.Cookies.Append(options.CookieName, protector.Protect(SessionTicket.format ticket), this.CookieOptions context.Request)

    /// <summary>Tells the client to drop its cookie.</summary>
    member this.Expire(context: HttpContext) =
        context.Response.Cookies.Delete(options.CookieName, this.CookieOptions context.Request)
