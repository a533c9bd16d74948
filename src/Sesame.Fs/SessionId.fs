namespace Sesame

open System
open System.Security.Cryptography

/// <summary>
/// Session ids: 192 random bits from the operating system's CSPRNG (drawn a block at a time, BufferedRandom), as 32
/// base64url characters. A signed-in session's id has its first character chosen by its user (186 random bits remain),
/// so that a store can keep a user's sessions together: on Redis Cluster, in the hash slot of the user's index.
/// </summary>
[<RequireQualifiedAccess>]
module internal SessionId =

    /// <summary>The number of random bytes in an id (24 bytes: 192 bits).</summary>
    [<Literal>]
    let RandomBytes = 24

    /// <summary>The length of an id's text (32 characters).</summary>
    [<Literal>]
    let Length = 32

    /// <summary>base64url's 64 characters, in the order of the 6-bit values they stand for: what ids are written in.</summary>
    [<Literal>]
    let Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

    let private alphabetValues = Buffers.SearchValues.Create Alphabet

    /// <summary>Whether every character of a text is one of base64url's (an id's, a sealed ticket's key and tag).</summary>
    let isBase64Url (text: ReadOnlySpan<char>) = text.IndexOfAnyExcept alphabetValues < 0

    /// <summary>A new id from the CSPRNG.</summary>
    let create () : string = BufferedRandom.Base64Url RandomBytes

    /// <summary>The first character of every id of a user's sessions: 6 bits of the SHA-256 of the user id.</summary>
    let shardOf (userId: string) : char = Alphabet[int (SHA256.HashData(Text.Encoding.UTF8.GetBytes userId)[0] &&& 63uy)]

    /// <summary>A new id for a session of <paramref name="userId"/>: random, but for its first character, <see cref="M:Sesame.SessionId.shardOf(System.String)"/>.</summary>
    let createFor (userId: string) : string =
        let id = create ()
        String(shardOf userId, 1) + id.Substring 1

    /// <summary>Whether the text has the shape of an id Sesame made (length and alphabet); says nothing of whether it exists.</summary>
    let isWellFormed (text: string) = not (isNull text) && text.Length = Length && isBase64Url (text.AsSpan())

/// <summary>What the session cookie carries, sealed or protected (TicketFormat): the session id and when the session was created
/// (so an absolute lifetime holds whatever the store does).</summary>
[<Struct; NoComparison>]
type internal SessionTicket = {
    /// The session id.
    Id: string
    /// When the session was created.
    Created: DateTimeOffset
}

/// <summary>The ticket's text form, inside the cookie: <c>id.createdUnixMilliseconds</c>.</summary>
[<RequireQualifiedAccess>]
module internal SessionTicket =

    /// <summary>A new session's ticket, created at <c>now</c> to the millisecond its text keeps: the ticket a request
    /// issues is then the very one its cookie brings back.</summary>
    let create (id: string) (now: DateTimeOffset) : SessionTicket = { Id = id; Created = DateTimeOffset.FromUnixTimeMilliseconds(now.ToUnixTimeMilliseconds()) }

    /// <summary>The text of a ticket.</summary>
    let format (ticket: SessionTicket) = ticket.Id + "." + ticket.Created.ToUnixTimeMilliseconds().ToString(Globalization.CultureInfo.InvariantCulture)

    /// <summary>Reads a ticket's text, or nothing when it is not one.</summary>
    let tryParse (text: string) : SessionTicket voption =
        match text with
        | null -> ValueNone
        | text ->
            let dot = text.IndexOf '.'
            if dot <> SessionId.Length then
                ValueNone
            else
                let id = text.Substring(0, dot)
                // Negative before 1970: an app's clock may read so (a test's fake clock), and its sessions must be found again.
                match Int64.TryParse(text.AsSpan(dot + 1), Globalization.NumberStyles.AllowLeadingSign, Globalization.CultureInfo.InvariantCulture) with
                | true, ms when
                    SessionId.isWellFormed id
                    && text[dot + 1] <> '+'
                    && ms >= DateTimeOffset.MinValue.ToUnixTimeMilliseconds()
                    && ms <= DateTimeOffset.MaxValue.ToUnixTimeMilliseconds()
                    ->
                    ValueSome { Id = id; Created = DateTimeOffset.FromUnixTimeMilliseconds ms }
                | _ -> ValueNone
