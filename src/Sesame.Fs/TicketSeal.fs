namespace Sesame

open System
open System.Buffers.Text
open System.Security.Cryptography
open System.Text
open System.Threading
open Microsoft.AspNetCore.DataProtection
open Microsoft.Extensions.Logging

/// A seal key: its 256-bit secret, the secret as Data Protection protected it (what every ticket it seals carries), and
/// until when it is trusted without opening that text again.
[<Sealed; AllowNullLiteral>]
type internal SealKey(secret: byte[], wrapped: string, hash: int, trustedUntil: int64, renewAt: int64) =
    member _.Secret = secret
    member _.Wrapped = wrapped
    /// The wrapped text's string hash (per-process randomized), its slot in the table of opened keys.
    member _.Hash = hash
    member _.TrustedUntil = trustedUntil
    /// When the app stops sealing with it (a key of its own; others' keys are only opened).
    member _.RenewAt = renewAt
    /// The same key, trusted until another time.
    member _.TrustedTill(until: int64) = SealKey(secret, wrapped, hash, until, renewAt)

/// <summary>
/// Sealed session tickets (<see cref="F:Sesame.TicketFormat.Sealed"/>): <c>key.ticket.tag</c>, where <c>key</c> is a
/// random 256-bit key protected with Data Protection (base64url), <c>ticket</c> the ticket's text in clear, and
/// <c>tag</c> the first 128 bits of the HMAC-SHA256 of the ticket's text under the key (base64url). Data Protection's
/// own output is base64url, which has no dot, so a sealed ticket is told from a protected one by its dots.
/// </summary>
/// <remarks>
/// <para><b>Why.</b> Data Protection derives fresh keys for every payload it protects: about 10 µs to protect a ticket
/// and 8 µs to open one, the largest part of what a new session costs the app, and of a returning visit whose cookie is
/// not among those validated lately. A seal key is opened once per minute per key, and a ticket then costs one MAC.</para>
/// <para><b>Why it is as safe.</b> A tag can be made only with the key's secret, which only the key ring opens; without
/// it no ticket can be forged or changed, and a key another key ring protected opens nothing. Tags are compared in
/// constant time. The ticket is not secret: its id is what the store knows the session by, and a client that holds the
/// ticket holds the session. A key this app or another instance sealed with is trusted for a minute after it was last
/// opened, and a value the cookie's cache remembers (<c>SessionCookie</c>) no longer than its key: revoking the Data
/// Protection key that protects it refuses its tickets within a minute of Data Protection refusing it, and this app
/// then seals with a new key. The app's own key is looked at first, so keys of other instances or hours cannot put it
/// out of the table. A key value that does not open is not kept, so a client that sends made-up keys pays Data
/// Protection's cost per request, as it does with made-up protected tickets.</para>
/// </remarks>
[<Sealed>]
type internal TicketSeal(protector: IDataProtector, time: TimeProvider, logger: ILogger) =

    /// The table of keys opened lately: a power of two, each key in one of the two slots its text's hash gives.
    static let keySlots = 256

    static let secretBytes = 32

    /// The tag's length: HMAC-SHA256 cut to 128 bits (as RFC 4868 cuts it), 22 base64url characters.
    static let tagBytes = 16

    static let tagChars = 22

    /// A key's longest text (Data Protection's output for 32 bytes is about 180 characters).
    static let longestWrapped = 400

    /// A ticket's longest text (an id and a time in milliseconds).
    static let longestTicket = 64

    /// How long a key is trusted without opening it again.
    static let trustLifetime = TimeSpan.FromMinutes 1.0

    /// How long the app seals with one key of its own.
    static let sealLifetime = TimeSpan.FromHours 1.0

    /// Each thread's HMAC of the last secret it used (an IncrementalHash keeps its keyed state: about half the cost of
    /// a one-shot HMAC, which sets the key up again every time).
    [<ThreadStatic; DefaultValue>]
    static val mutable private hasherSecret: byte[]

    [<ThreadStatic; DefaultValue>]
    static val mutable private hasher: IncrementalHash

    /// Each thread's bytes for a ticket's text (64), a full HMAC (32), a tag sent and a tag expected (16 each).
    [<ThreadStatic; DefaultValue>]
    static val mutable private scratch: byte[]

    let keys: SealKey[] = Array.zeroCreate keySlots
    let trustTicks = int64 (trustLifetime.TotalSeconds * float time.TimestampFrequency)
    let sealTicks = int64 (sealLifetime.TotalSeconds * float time.TimestampFrequency)
    let renewing = obj ()

    [<VolatileField>]
    let mutable sealing: SealKey = null

    static let hasherFor (secret: byte[]) =
        if not (obj.ReferenceEquals(TicketSeal.hasherSecret, secret)) then
            if not (isNull TicketSeal.hasher) then TicketSeal.hasher.Dispose()
            TicketSeal.hasher <- IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, secret)
            TicketSeal.hasherSecret <- secret
        TicketSeal.hasher

    static let scratchBytes () =
        let mutable bytes = TicketSeal.scratch
        if isNull bytes then
            bytes <- Array.zeroCreate (longestTicket + 32 + 2 * tagBytes)
            TicketSeal.scratch <- bytes
        bytes

    /// The tag of a ticket's text (ASCII, at most 64 characters) under a secret: the thread's scratch bytes from
    /// <c>at</c>.
    static let tagOf (secret: byte[]) (ticket: ReadOnlySpan<char>) (at: int) : Span<byte> =
        let scratch = scratchBytes ()
        let length = Encoding.ASCII.GetBytes(ticket, Span(scratch, 0, longestTicket))
        let hmac = hasherFor secret
        hmac.AppendData(ReadOnlySpan(scratch, 0, length))
        hmac.GetHashAndReset(Span(scratch, longestTicket, 32)) |> ignore
        let tag = Span(scratch, at, tagBytes)
        Span(scratch, longestTicket, tagBytes).CopyTo tag
        tag

    /// Decodes a tag's 22 characters of the alphabet into its 16 bytes; false when the last has bits set past them
    /// (its last character then is none of A, Q, g, w, and the decoder would throw).
    static let decodeTag (text: ReadOnlySpan<char>) (tag: Span<byte>) =
        let mutable written = 0
        match text[text.Length - 1] with
        | 'A'
        | 'Q'
        | 'g'
        | 'w' -> Base64Url.TryDecodeFromChars(text, tag, &written) && written = tagBytes
        | _ -> false

    /// Where a tag made goes in the scratch bytes, and a tag sent.
    static let madeAt = longestTicket + 32

    static let sentAt = madeAt + tagBytes

    /// The first of a key's two slots: the pair its text's hash falls in (two, so that two keys in use whose hashes
    /// meet do not keep putting each other out).
    let pairOf (hash: int) = hash &&& (keySlots - 2)

    static let isKey (known: SealKey) (hash: int) (wrapped: string) =
        not (isNull known) && known.Hash = hash && String.Equals(known.Wrapped, wrapped, StringComparison.Ordinal)

    /// The key of the text held in the table, trusted or not, or null.
    let held (hash: int) (wrapped: string) =
        let at = pairOf hash
        match Volatile.Read(&keys[at]) with
        | known when isKey known hash wrapped -> known
        | _ ->
            match Volatile.Read(&keys[at + 1]) with
            | known when isKey known hash wrapped -> known
            | _ -> null

    /// Keeps a key in its pair: where it is already, or in a free slot, or in place of the one trusted the shorter while.
    let keep (key: SealKey) =
        let at = pairOf key.Hash
        let first = Volatile.Read(&keys[at])
        let second = Volatile.Read(&keys[at + 1])
        let slot =
            if isNull first || isKey first key.Hash key.Wrapped then at
            elif isNull second || isKey second key.Hash key.Wrapped then at + 1
            elif first.TrustedUntil <= second.TrustedUntil then at
            else at + 1
        Volatile.Write(&keys[slot], key)

    /// The secret a key's text protects, or null when it does not open with this key ring (or is not one).
    let unwrap (wrapped: string) =
        try
            let bytes = Base64Url.DecodeFromChars(wrapped.AsSpan())
            // One text per key: another text that decodes to the same bytes is not the key's.
            if not (String.Equals(Base64Url.EncodeToString(ReadOnlySpan bytes), wrapped, StringComparison.Ordinal)) then
                null
            else
                match protector.Unprotect bytes with
                | secret when secret.Length = secretBytes -> secret
                | _ -> null
        with
        | :? CryptographicException
        | :? FormatException -> null

    /// The key of a sealed ticket: the app's own while trusted, or one of the table while trusted, or opened and kept;
    /// null when it does not open.
    let keyOf (wrapped: string) =
        let now = time.GetTimestamp()
        match sealing with
        | own when not (isNull own) && own.TrustedUntil > now && String.Equals(own.Wrapped, wrapped, StringComparison.Ordinal) -> own
        | _ ->
            let hash = wrapped.GetHashCode()
            match held hash wrapped with
            | known when not (isNull known) && known.TrustedUntil > now -> known
            | known ->
                match unwrap wrapped with
                | null -> null
                | secret ->
                    // The same key opened again keeps its secret array, and with it the threads' HMAC state.
                    let key = SealKey((if isNull known then secret else known.Secret), wrapped, hash, now + trustTicks, Int64.MaxValue)
                    keep key
                    key

    let newKey (now: int64) =
        Log.newSealKey logger
        let secret = RandomNumberGenerator.GetBytes secretBytes
        let wrapped = Base64Url.EncodeToString(ReadOnlySpan(protector.Protect secret))
        let key = SealKey(secret, wrapped, wrapped.GetHashCode(), now + trustTicks, now + sealTicks)
        keep key
        key

    /// The key the app seals with now: its own, opened again once its trust has run out (a revoked key ring key makes a
    /// new one), and renewed once it has sealed for an hour.
    let sealingKey () =
        let now = time.GetTimestamp()
        match sealing with
        | key when not (isNull key) && key.TrustedUntil > now && key.RenewAt > now -> key
        | _ ->
            lock renewing (fun () ->
                let now = time.GetTimestamp()
                let key =
                    match sealing with
                    | key when not (isNull key) && key.TrustedUntil > now && key.RenewAt > now -> key
                    | key when not (isNull key) && key.RenewAt > now ->
                        if isNull (unwrap key.Wrapped) then
                            Log.sealKeyNoLongerOpens logger
                            newKey now
                        else
                            let trusted = key.TrustedTill(now + trustTicks)
                            keep trusted
                            trusted
                    | _ -> newKey now
                sealing <- key
                key)

    /// The purpose of the protector that protects seal keys (Data Protection isolates each purpose's payloads).
    static member Purpose = "Sesame.SessionTicket.SealKey.v1"

    /// <summary>Whether a ticket value has a sealed ticket's shape (dots; Data Protection's base64url has none).</summary>
    static member IsSealed(value: string) = value.IndexOf '.' >= 0

    /// <summary>Seals a ticket's text (ASCII, at most 64 characters).</summary>
    member _.Seal(ticket: string) : string =
        if ticket.Length > longestTicket then invalidArg (nameof ticket) "A ticket's text is at most 64 characters."
        let key = sealingKey ()
        let tag = tagOf key.Secret (ticket.AsSpan()) madeAt
        String.Concat(key.Wrapped, ".", ticket, ".", Base64Url.EncodeToString(Span<byte>.op_Implicit tag))

    /// <summary>The ticket text a sealed value carries, and until when its key is trusted without being checked against
    /// the key ring again (so that a cache of opened values trusts none longer); or null with the reason it opens
    /// nothing.</summary>
    member _.TryOpen(value: string, reason: outref<string>, trustedUntil: outref<int64>) : string =
        let first = value.IndexOf '.'
        let last = value.LastIndexOf '.'
        let ticketLength = last - first - 1
        if first <= 0 || ticketLength <= 0 || ticketLength > longestTicket || first > longestWrapped || value.Length - last - 1 <> tagChars then
            reason <- "not a sealed ticket"
            null
        else
            let ticket = value.AsSpan(first + 1, ticketLength)
            let sentText = value.AsSpan(last + 1)
            let sent = Span(scratchBytes (), sentAt, tagBytes)
            // Checked before the key is opened, so that a value of the wrong shape costs no cryptography: an ASCII
            // ticket, a key and a tag of base64url's alphabet, the tag's 22 characters exactly 16 bytes.
            let wellFormed =
                Ascii.IsValid ticket
                // base64url only: the decoder would also take white space and padding, giving one key or tag several texts.
                && SessionId.isBase64Url (value.AsSpan(0, first))
                && SessionId.isBase64Url sentText
                && decodeTag sentText sent
            if not wellFormed then
                reason <- "not a sealed ticket"
                null
            else
                match keyOf (value.Substring(0, first)) with
                | null ->
                    reason <- "its seal key is malformed, or protected with a key this app does not have"
                    null
                | key ->
                    let expected = tagOf key.Secret ticket madeAt
                    if CryptographicOperations.FixedTimeEquals(Span<byte>.op_Implicit expected, Span<byte>.op_Implicit sent) then
                        reason <- null
                        trustedUntil <- key.TrustedUntil
                        ticket.ToString()
                    else
                        reason <- "tampered: its seal does not match"
                        null
