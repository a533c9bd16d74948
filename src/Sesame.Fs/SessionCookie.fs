namespace Sesame

open System
open System.Security.Cryptography
open System.Threading
open Microsoft.AspNetCore.DataProtection
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Http.Features
open Microsoft.Extensions.Logging

/// One cookie value that Data Protection has validated: the exact text and its hash, the ticket it
/// carries, and the timestamp until which it may be trusted again without decrypting it.
[<Sealed; AllowNullLiteral>]
type private ValidatedCookie(value: string, hash: int, ticket: SessionTicket, trustedUntil: int64) =
    member _.Value = value
    member _.Hash = hash
    member _.Ticket = ticket
    member _.TrustedUntil = trustedUntil

/// <summary>
/// The session cookie: the session ticket (its id and when it was created), sealed with a MAC under a key that ASP.NET
/// Core Data Protection protects (<see cref="T:Sesame.TicketSeal"/>), or protected (encrypted and signed) by Data
/// Protection on its own, as <see cref="P:Sesame.SesameOptions.TicketFormat"/> says; either is read whichever is
/// written. A client can forge neither. Whatever a client sends that is not a ticket Sesame made is treated as "no
/// session yet". With the header transport (<see cref="P:Sesame.SesameOptions.Transport"/>) the same ticket travels
/// in a header instead of, or beside, the cookie.
/// </summary>
/// <remarks>
/// Opening a ticket costs cryptography (a MAC, about 1 µs, for a sealed one; several µs of Data Protection for a
/// protected one), and a visitor sends the same cookie with every request. So the values that open successfully are
/// remembered for a short while: a request that sends exactly such a value gets the same ticket without opening it
/// again. A value this app has just issued is not: most new sessions never come back (crawlers, floods), and each
/// value remembered outlived the young generation only to be displaced in an older one: under a flood of new sessions
/// most of the collector's collections were of the older generations. The cache cannot make a cookie valid that would
/// be refused, except one whose Data Protection key is revoked after it was validated, and then for at most
/// <c>trustLifetime</c>. It holds at most <c>cacheSlots</c> values (an attacker who mints many sessions only displaces
/// entries). A value is compared with a cached one only when their 32-bit string hashes agree, and those hashes are of a sealed value's tag
/// (a MAC) or of a protected value whole, keyed with a secret random seed per process: a client cannot make a guess reach
/// the comparison, so how long a lookup takes says nothing about the cached cookies. (A constant-time comparison would do
/// the same at several times the cost of the whole lookup.)
/// </remarks>
[<Sealed>]
type internal SessionCookie(protector: IDataProtector, seal: TicketSeal, options: SesameOptions, time: TimeProvider, logger: ILogger) =

    /// A protected ticket is about 180 characters, a sealed one about 250; anything far longer is not one of ours and
    /// is not worth opening.
    static let maxValueLength = 512

    /// A power of two; each value has one slot, chosen by its (per-process randomized) string hash.
    static let cacheSlots = 4096

    /// How long a validated value is trusted without decrypting it again.
    static let trustLifetime = TimeSpan.FromMinutes 1.0

    let useCookie = options.Transport.HasFlag SessionTransport.Cookie
    let useHeader = options.Transport.HasFlag SessionTransport.Header
    let headerName = options.HeaderName

    do
        if not (useCookie || useHeader) then
            invalidOp $"SesameOptions.Transport is {options.Transport}: choose Cookie, Header or CookieAndHeader, or the session could never reach the client."
        if not (Enum.IsDefined options.TicketFormat) then
            invalidOp $"SesameOptions.TicketFormat is {int options.TicketFormat}: choose TicketFormat.Sealed (the default) or TicketFormat.Protected."
        if useHeader && String.IsNullOrWhiteSpace headerName then
            invalidOp "SesameOptions.HeaderName is empty: name the header that carries the session (default X-Session-Token)."

    let cache: ValidatedCookie[] = Array.zeroCreate cacheSlots
    let trustTicks = int64 (trustLifetime.TotalSeconds * float time.TimestampFrequency)

    /// String hashes are randomized per process (Marvin with a secret seed).
    let slotOf (hash: int) = hash &&& (cacheSlots - 1)

    /// A value's hash for the cache: of a sealed value's tag (after its last dot), a MAC under the app's key, so no client
    /// can aim at a slot or at a hash it does not already hold the value for; hashing all of a sealed value (about 250
    /// characters) cost more than the rest of a lookup. A protected value (no dot) is hashed whole, whatever its
    /// protector's output ends with.
    let hashOf (value: ReadOnlySpan<char>) =
        match value.LastIndexOf '.' with
        | -1 -> String.GetHashCode value
        | dot -> String.GetHashCode(value.Slice(dot + 1))

    /// Remembers a value that opened, trusted for trustLifetime, and no longer than the seal key
    /// it was sealed with is (<c>keyTrustedUntil</c>; Int64.MaxValue for a protected value), so that revoking a key
    /// refuses its values within trustLifetime whichever cache holds them.
    let remember (value: string) (ticket: SessionTicket) (keyTrustedUntil: int64) =
        let hash = hashOf (value.AsSpan())
        let until = min (time.GetTimestamp() + trustTicks) keyTrustedUntil
        Volatile.Write(&cache[slotOf hash], ValidatedCookie(value, hash, ticket, until))

    /// The ticket of a value remembered and still trusted: the value is a span, so that a cookie found in place in the
    /// request's header is not copied for it.
    let tryRecall (value: ReadOnlySpan<char>) =
        let hash = hashOf value
        match Volatile.Read(&cache[slotOf hash]) with
        | known when not (isNull known) && known.Hash = hash && known.TrustedUntil > time.GetTimestamp() && known.Value.AsSpan().SequenceEqual value ->
            ValueSome known.Ticket
        | _ -> ValueNone

    let sealed' = options.TicketFormat = TicketFormat.Sealed

    let opened (where: string) (value: string) (text: string) (keyTrustedUntil: int64) =
        match SessionTicket.tryParse text with
        | ValueSome ticket ->
            remember value ticket keyTrustedUntil
            ValueSome ticket
        | ValueNone ->
            Log.cookieRejectedBecause logger $"{where}its content is not a session ticket"
            ValueNone

    let unseal (where: string) (value: string) =
        let mutable reason = null
        let mutable keyTrustedUntil = 0L
        match seal.TryOpen(value, &reason, &keyTrustedUntil) with
        | null ->
            Log.cookieRejectedBecause logger $"{where}{reason}"
            ValueNone
        | text -> opened where value text keyTrustedUntil

    let unprotect (where: string) (value: string) =
        try
            opened where value (protector.Unprotect value) Int64.MaxValue
        with
        | :? CryptographicException ->
            Log.cookieRejectedBecause logger $"{where}tampered, malformed, or protected with a key this app does not have"
            ValueNone
        | :? FormatException ->
            Log.cookieRejectedBecause logger $"{where}not base64url"
            ValueNone

    /// Reads the ticket in <c>length</c> characters of <c>text</c> from <c>start</c>: the whole of a value, or a cookie's
    /// value where it is in the request's header.
    let read (where: string) (text: string) (start: int) (length: int) =
        if length = 0 then
            ValueNone
        elif length > maxValueLength then
            Log.cookieRejectedBecause logger $"{where}{length} characters, too long to be a session ticket"
            ValueNone
        else
            match tryRecall (text.AsSpan(start, length)) with
            | ValueSome ticket -> ValueSome ticket
            | ValueNone ->
                let value = if length = text.Length then text else text.Substring(start, length)
                if TicketSeal.IsSealed value then unseal where value else unprotect where value

    let readValue (where: string) (value: string) = if isNull value then ValueNone else read where value 0 value.Length

    let fromCollection (request: HttpRequest) = readValue "" request.Cookies[options.Cookie.Name]

    /// The session cookie's value, found in place in the Cookie header when it is in the plain form browsers send and no
    /// one has given the request cookies of their own (a feature set by the app or a test); otherwise from Request.Cookies.
    let readCookie (request: HttpRequest) =
        if not (isNull (RequestFeatures.get<IRequestCookiesFeature> request.HttpContext.Features)) then
            fromCollection request
        else
            let cookies = request.Headers.Cookie
            match cookies.Count with
            | 0 -> ValueNone
            | 1 when not (isNull cookies[0]) ->
                let header = cookies[0]
                match CookieHeader.find header options.Cookie.Name with
                | struct (CookieHeader.NotPlain, _) -> fromCollection request
                | struct (start, length) -> read "" header start length
            | _ -> fromCollection request

    let varyBy = [
        if useCookie then "Cookie"
        if useHeader then headerName
    ]

    /// Log reasons name the header when the ticket came in one (the cookie's are as they always were).
    let headerReason = $"sent in the {headerName} header: "

    /// The purpose string isolates Sesame's protected payloads from every other Data Protection user.
    static member Purpose = "Sesame.SessionCookie.v1"

    /// <summary>
    /// The session ticket the request carries, or nothing (logged at debug level with the reason): in its session
    /// header when the header transport is on and the request has one, otherwise in its cookie when the cookie
    /// transport is on.
    /// </summary>
    member _.TryRead(request: HttpRequest) : SessionTicket voption =
        let header = if useHeader then request.Headers[headerName] else Microsoft.Extensions.Primitives.StringValues.Empty
        if header.Count > 1 then
            Log.cookieRejectedBecause logger $"{headerReason}sent {header.Count} times"
            ValueNone
        elif header.Count = 1 && not (String.IsNullOrEmpty header[0]) then
            readValue headerReason header[0]
        elif useCookie then
            readCookie request
        else
            ValueNone

    /// <summary>Gives the client a session ticket: the cookie, and the session header, as the transport says.</summary>
    member this.Write(context: HttpContext, ticket: SessionTicket) =
        let text = SessionTicket.format ticket
        let value = if sealed' then seal.Seal text else protector.Protect text
        if useCookie then context.Response.Cookies.Append(options.Cookie.Name, value, options.Cookie.Build context)
        if useHeader then context.Response.Headers[headerName] <- value

    /// <summary>Whether the response carries a ticket already: the session cookie among its Set-Cookie headers, the
    /// session header set, as the transport says.</summary>
    member _.IsSent(context: HttpContext) =
        let headers = context.Response.Headers
        let cookieSent () =
            let prefix = options.Cookie.Name + "="
            headers.SetCookie |> Seq.exists (fun value -> not (isNull value) && value.StartsWith(prefix, StringComparison.Ordinal))
        (not useCookie || cookieSent ()) && (not useHeader || not (String.IsNullOrEmpty(string headers[headerName])))

    /// <summary>Tells the client to drop its ticket: the cookie expires, the session header comes blank.</summary>
    member this.Expire(context: HttpContext) =
        if useCookie then context.Response.Cookies.Delete(options.Cookie.Name, options.Cookie.Build context)
        if useHeader then context.Response.Headers[headerName] <- ""

    /// <summary>The request headers a response that used the session varies by: <c>Cookie</c>, the session header, or both.</summary>
    member _.VaryBy: string list = varyBy
