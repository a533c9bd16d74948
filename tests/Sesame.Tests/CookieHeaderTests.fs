/// The session cookie found in place in the Cookie header (CookieHeader): the same value as ASP.NET Core's
/// Request.Cookies for every header it reads, and Request.Cookies itself for every header it leaves.
module Sesame.Tests.CookieHeaderTests

open System
open System.Collections.Generic
open Microsoft.AspNetCore.DataProtection
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Http.Features
open Microsoft.Extensions.Logging.Abstractions
open Microsoft.Extensions.Primitives
open Expecto
open FsCheck
open FsCheck.FSharp
open Sesame
open Sesame.Tests.Generators

/// What ASP.NET Core's Request.Cookies gives for one cookie of a header.
let private aspNetCookie (header: StringValues) (name: string) =
    let context = DefaultHttpContext()
    context.Request.Headers.Cookie <- header
    context.Request.Cookies[name]

/// Names and values of the plain form: the session cookie's name in several cases, other names, values like a ticket's.
let private plainNames = [ "sesame"; "SESAME"; "Sesame"; "a"; "_ga"; "x-y" ]
let private plainValues = [ "CfDJ8abc.Zz-_09.tag"; "v"; "1"; "a=b"; "=="; "!#$&'()*+-./:<=>?@[]^_`{|}~" ]

/// Names and values of other forms: no token, escaped, quoted, empty, with blanks, commas, backslashes or non-ASCII.
let private oddNames = [ "se same"; "\"sesame\""; "sesame%20"; "s=e"; ""; "sésame" ]
let private oddValues = [ ""; "\"quoted\""; "\"half"; "a%2Eb"; "%"; "a,b"; "a b"; "a\\b"; "é"; "a\tb"; "a;b" ]

let private plainSeparators = [ "; "; ";"; " ; "; ";  "; "\t;\t" ]
let private oddSeparators = [ ";;"; ","; ", "; " "; "; ;" ]

/// Headers of one to five pairs: half of them in the plain form, the rest with odd pieces here and there.
let private headers = gen {
    let! plainOnly = Gen.elements [ true; false ]
    let oddChance = if plainOnly then 0 else 1
    let piece (plain: string list) (odd: string list) = Gen.frequency [ 4, Gen.elements plain; oddChance, Gen.elements odd ]
    let! count = Gen.choose (1, 5)
    let! pairs =
        Gen.listOfLength
            count
            (Gen.frequency [
                8, Gen.map2 (fun name value -> $"{name}={value}") (piece plainNames oddNames) (piece plainValues oddValues)
                oddChance, Gen.elements [ "novalue"; "="; " "; "sesame" ]
            ])
    let! between = Gen.listOfLength count (piece plainSeparators oddSeparators)
    let! lead = Gen.frequency [ 6, Gen.constant ""; 1, Gen.elements [ " "; "\t" ]; oddChance, Gen.constant ";" ]
    let! trail = Gen.frequency [ 6, Gen.constant ""; 1, Gen.constant " "; oddChance, Gen.elements [ ";"; "; " ] ]
    let body = List.zip pairs between |> List.mapi (fun i (pair, sep) -> if i = 0 then pair else sep + pair) |> String.concat ""
    return lead + body + trail
}

/// A cookie collection of the app's own (as middleware or a test may give a request).
type private OwnCookies(cookies: IDictionary<string, string>) =
    interface IRequestCookieCollection with
        member _.Item
            with get key =
                match cookies.TryGetValue key with
                | true, value -> value
                | _ -> null
        member _.Count = cookies.Count
        member _.Keys = cookies.Keys
        member _.ContainsKey key = cookies.ContainsKey key
        member _.TryGetValue(key, value) = cookies.TryGetValue(key, &value)
        member _.GetEnumerator() = cookies.GetEnumerator()
        member _.GetEnumerator() : Collections.IEnumerator = cookies.GetEnumerator()

/// A SessionCookie over an ephemeral key ring, and a value it issued for a new ticket.
let private issuing () =
    let options = SesameOptions()
    let provider = EphemeralDataProtectionProvider() :> IDataProtectionProvider
    let seal = TicketSeal(provider.CreateProtector TicketSeal.Purpose, TimeProvider.System, NullLogger.Instance)
    let cookie = SessionCookie(provider.CreateProtector SessionCookie.Purpose, seal, options, TimeProvider.System, NullLogger.Instance)
    let issue () =
        // As a new session's commit makes it: its creation to the millisecond the ticket's text keeps.
        let ticket = SessionTicket.create (SessionId.create ()) DateTimeOffset.UtcNow
        let context = DefaultHttpContext()
        cookie.Write(context, ticket)
        let header = string context.Response.Headers.SetCookie
        ticket, header.Substring(options.Cookie.Name.Length + 1, header.IndexOf ';' - options.Cookie.Name.Length - 1)
    cookie, issue

let private read (cookie: SessionCookie) (configure: HttpContext -> unit) =
    let context = DefaultHttpContext()
    configure context
    cookie.TryRead context.Request

[<Tests>]
let tests =
    testList "Cookie header" [
        testGuardedLawWith 3000 "every header read in place gives the session cookie ASP.NET Core's Request.Cookies gives"
        <| fun () ->
            let mutable plain = 0
            let mutable found = 0
            let mutable left = 0
            let property =
                Prop.forAll (Arb.fromGen headers) (fun header ->
                    let expected = aspNetCookie (StringValues header) "sesame"
                    match CookieHeader.find header "sesame" with
                    | struct (CookieHeader.NotPlain, _) ->
                        left <- left + 1
                        true
                    | struct (start, length) ->
                        plain <- plain + 1
                        let inPlace = if length = 0 then null else header.Substring(start, length)
                        if not (isNull inPlace) then found <- found + 1
                        claim (inPlace = expected) (fun () -> $"[{header}]: in place %A{inPlace}, Request.Cookies %A{expected}"))
            property,
            fun () ->
                Expect.isGreaterThan plain 1000 "A third of the headers or more are read in place."
                Expect.isGreaterThan found 500 "Many of them hold the session cookie."
                Expect.isGreaterThan left 1000 "A third or more are left to Request.Cookies."

        test "the forms browsers send are read in place" {
            for header, expected in
                [
                    "sesame=CfDJ8abc.t-_9.tag", "CfDJ8abc.t-_9.tag"
                    "a=1; sesame=v; b=2", "v"
                    "a=1;sesame=v", "v"
                    "SESAME=v", "v"
                    "sesame=v1; sesame=v2", "v2"
                    "a=1; b=2", null
                ] do
                match CookieHeader.find header "sesame" with
                | struct (CookieHeader.NotPlain, _) -> failtest $"[{header}] is in the plain form."
                | struct (start, length) ->
                    let value = if length = 0 then null else header.Substring(start, length)
                    Expect.equal value expected header
                    Expect.equal value (aspNetCookie (StringValues header) "sesame") $"[{header}] as Request.Cookies reads it"
        }

        test "a ticket opens from a plain header, and from the forms left to Request.Cookies" {
            let cookie, issue = issuing ()
            let ticket, value = issue ()
            let opens (header: StringValues) = read cookie (fun c -> c.Request.Headers.Cookie <- header)
            Expect.equal (opens (StringValues $"_ga=1; sesame={value}; theme=dark")) (ValueSome ticket) "Among other cookies."
            // ASP.NET Core unescapes a value: an escaped dot is the same value to it.
            let escaped = value.Replace(".", "%2E")
            Expect.equal (opens (StringValues $"sesame={escaped}")) (ValueSome ticket) "With its dots escaped."
            Expect.equal (opens (StringValues [| "_ga=1"; $"sesame={value}" |])) (ValueSome ticket) "In the second of two Cookie headers."
            Expect.equal (opens (StringValues $"sesame=\"{value}\"")) ValueNone "Quoted, it is another value to ASP.NET Core, and opens nothing."
            Expect.equal (opens (StringValues $"sesame={value}x")) ValueNone "With a character more, nothing."
        }

        test "cookies the app gave the request are read rather than the header" {
            let cookie, issue = issuing ()
            let inHeader, headerValue = issue ()
            let given, givenValue = issue ()
            let ticket =
                read cookie (fun c ->
                    c.Request.Headers.Cookie <- StringValues $"sesame={headerValue}"
                    let cookies = OwnCookies(Dictionary(dict [ "sesame", givenValue ]))
                    c.Features.Set<IRequestCookiesFeature>(RequestCookiesFeature(cookies)))
            Expect.equal ticket (ValueSome given) "The app's cookies name the session."
            Expect.notEqual ticket (ValueSome inHeader) "Not the header's."
        }

        test "cookies the app gave a request without a Cookie header are read" {
            let cookie, issue = issuing ()
            let given, givenValue = issue ()
            let ticket =
                read cookie (fun c ->
                    let cookies = OwnCookies(Dictionary(dict [ "sesame", givenValue ]))
                    c.Features.Set<IRequestCookiesFeature>(RequestCookiesFeature(cookies)))
            Expect.equal ticket (ValueSome given) "The app's cookies name the session, with no header at all."
        }

        test "a Cookie header whose one value is null or empty names no session, and raises nothing" {
            let cookie, _ = issuing ()
            for header in [ StringValues([| null |]); StringValues ""; StringValues([| null; null |]); StringValues([| ""; "" |]) ] do
                Expect.equal (read cookie (fun c -> c.Request.Headers.Cookie <- header)) ValueNone $"%A{header.ToArray()}"
        }
    ]
