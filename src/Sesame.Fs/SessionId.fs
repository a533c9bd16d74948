namespace Sesame

open System
open System.Security.Cryptography

/// <summary>Session ids: 192 random bits from the operating system's CSPRNG, as 32 base64url characters.</summary>
[<RequireQualifiedAccess>]
module SessionId =

    /// <summary>The number of random bytes in an id (24 bytes: 192 bits).</summary>
    [<Literal>]
    let RandomBytes = 24

    /// <summary>The length of an id's text (32 characters).</summary>
    [<Literal>]
    let Length = 32

    /// <summary>A new id from the CSPRNG.</summary>
    let create () : string =
        let bytes = RandomNumberGenerator.GetBytes RandomBytes
        Convert.ToBase64String(bytes).Replace('+', '-').Replace('/', '_')

    /// <summary>Whether the text has the shape of an id Sesame made (length and alphabet); says nothing of whether it exists.</summary>
    let isWellFormed (text: string) =
        not (isNull text)
        && text.Length = Length
        && text |> Seq.forall (fun c -> Char.IsAsciiLetterOrDigit c || c = '-' || c = '_')

/// <summary>What the session cookie carries, protected: the session id and when the session was created
/// (so an absolute lifetime holds whatever the store does).</summary>
[<Struct; NoComparison>]
type SessionTicket =
    {
        /// The session id.
        Id: string
        /// When the session was created.
        Created: DateTimeOffset
    }

/// <summary>The ticket's text form, inside the protected cookie: <c>id.createdUnixMilliseconds</c>.</summary>
[<RequireQualifiedAccess>]
module SessionTicket =

    /// <summary>The text of a ticket.</summary>
    let format (ticket: SessionTicket) = $"{ticket.Id}.{ticket.Created.ToUnixTimeMilliseconds()}"

    /// <summary>Reads a ticket's text, or nothing when it is not one.</summary>
    let tryParse (text: string) : SessionTicket voption =
        match text with
        | null -> ValueNone
        | text ->
            let dot = text.IndexOf '.'
            if dot <> SessionId.Length then ValueNone
            else
                let id = text.Substring(0, dot)
                match Int64.TryParse(text.AsSpan(dot + 1), Globalization.NumberStyles.None, Globalization.CultureInfo.InvariantCulture) with
                | true, ms when SessionId.isWellFormed id && ms <= DateTimeOffset.MaxValue.ToUnixTimeMilliseconds() ->
                    ValueSome { Id = id; Created = DateTimeOffset.FromUnixTimeMilliseconds ms }
                | _ -> ValueNone
