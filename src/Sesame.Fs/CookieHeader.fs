namespace Sesame

open System
open System.Buffers

/// <summary>
/// Finds one cookie's value in a request's <c>Cookie</c> header in place, as ASP.NET Core's <c>Request.Cookies</c> would
/// find it, without the collection, the dictionary and the copy of every value that <c>Request.Cookies</c> makes for each
/// request: the session cookie is a few hundred characters, and a request that sends it would copy it only for the
/// cookie cache to compare it with what it holds.
/// </summary>
/// <remarks>
/// Only a header in the plain form browsers send is read here: <c>name=value</c> pairs split by <c>;</c> and blanks, each
/// name a token and each value one or more cookie octets with no <c>%</c> (which ASP.NET Core would unescape). In that
/// form ASP.NET Core's parser gives each pair as it is, names compared ignoring case, the last of a name winning. Any
/// other header (quotes, commas, an empty value or pair, escapes, anything else) is left to <c>Request.Cookies</c>.
/// </remarks>
module internal CookieHeader =

    /// An HTTP token's characters (RFC 9110), less <c>%</c>: a cookie name.
    let private nameChars = SearchValues.Create("!#$&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

    /// Cookie octets (RFC 6265), less <c>%</c>: a cookie value.
    let private valueChars = SearchValues.Create("!#$&'()*+-./0123456789:<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~")

    /// The header is in another form: ask Request.Cookies.
    [<Literal>]
    let NotPlain = -1

    let private skipBlanks (header: string) (at: int) =
        let mutable i = at
        while i < header.Length && (header[i] = ' ' || header[i] = '\t') do
            i <- i + 1
        i

    /// <summary>
    /// Where the value of the cookie <paramref name="name"/> is in <paramref name="header"/>: its start and length; a
    /// length of 0 when the header, in the plain form, has no such cookie; a start of <c>NotPlain</c> when the header is
    /// in another form.
    /// </summary>
    let find (header: string) (name: string) : struct (int * int) =
        let mutable start = 0
        let mutable length = 0
        let mutable plain = true
        let mutable i = skipBlanks header 0
        let mutable more = i < header.Length
        if not more then plain <- false
        while plain && more do
            let nameLength =
                match header.AsSpan(i).IndexOfAnyExcept nameChars with
                | -1 -> header.Length - i
                | n -> n
            let equals = i + nameLength
            if nameLength = 0 || equals >= header.Length || header[equals] <> '=' then
                plain <- false
            else
                let valueStart = equals + 1
                let valueLength =
                    match header.AsSpan(valueStart).IndexOfAnyExcept valueChars with
                    | -1 -> header.Length - valueStart
                    | n -> n
                if valueLength = 0 then
                    plain <- false
                else
                    if header.AsSpan(i, nameLength).Equals(name.AsSpan(), StringComparison.OrdinalIgnoreCase) then
                        start <- valueStart
                        length <- valueLength
                    let after = skipBlanks header (valueStart + valueLength)
                    if after = header.Length then
                        more <- false
                    elif header[after] = ';' then
                        i <- skipBlanks header (after + 1)
                        // A pair must follow a separator: "a=1;" and "a=1;;b=2" are for Request.Cookies.
                        if i = header.Length then plain <- false
                    else
                        plain <- false
        if plain then struct (start, length) else struct (NotPlain, 0)
