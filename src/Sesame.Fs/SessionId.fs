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
