namespace Sesame

open System

/// <summary>
/// Where the session ticket (the session id, sealed or protected: <see cref="T:Sesame.TicketFormat"/>) travels between client and server: a
/// cookie for browsers, a request and response header for APIs, single-page apps and mobile clients, or both.
/// </summary>
/// <remarks>
/// A browser sends a cookie with every request to the site, including requests another site makes it send, so a
/// cookie session needs CSRF protection (SameSite, antiforgery tokens) and can be <c>HttpOnly</c>, out of scripts' reach.
/// A header is sent only by code that chooses to send it, so a header session is not exposed to CSRF that way; but the
/// client's code holds the ticket, so a script injected into the page can read it and send it anywhere (XSS matters more).
/// </remarks>
[<Flags>]
type SessionTransport =
    /// The session cookie (<see cref="P:Sesame.SesameOptions.Cookie"/>): the default.
    | Cookie = 1
    /// The header <see cref="P:Sesame.SesameOptions.HeaderName"/>: read from requests, and sent in the response that
    /// creates or moves the session (blank in the one that destroys it).
    | Header = 2
    /// Both: a request's header wins when it has one, otherwise its cookie; responses carry both.
    | CookieAndHeader = 3
