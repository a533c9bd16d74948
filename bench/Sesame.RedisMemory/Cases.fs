/// The sessions measured: each case is a family of sessions (session i's JSON, its facts), chosen to sit below, at
/// and above Redis's hash-max-listpack-entries (128 by default) and hash-max-listpack-value (64 bytes by default).
module Sesame.RedisMemory.Cases

open System
open Sesame

/// A browser's user agent as Sesame keeps it in a signed-in session's device facts (Chrome on Windows, 111 characters).
let userAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"

/// One kind of session.
type Case = {
    /// Its row's name.
    Name: string
    /// What it is, for the report.
    Note: string
    /// Session i's tree.
    Json: int -> string
    /// Whether the session is signed in (bound to a user, with the facts Sesame's sign-in records).
    SignedIn: bool
}

/// The number of hash fields the Redis store makes for a tree: one per node (a non-empty object or array and
/// each of its members, a leaf), as RedisLayout writes them.
let rec nodeCount (json: Json) : int =
    match json with
    | Json.Object o when o.Count > 0 -> 1 + (o |> Seq.sumBy (fun (KeyValue(_, v)) -> nodeCount v))
    | Json.Array items when items.Length > 0 -> 1 + (items |> Seq.sumBy nodeCount)
    | _ -> 1

/// The fields beside a new anonymous session's tree: #v, #s, #t, #x, and the facts tree { "created": ms } (2 nodes).
let anonymousExtraFields = 6

/// A few small nodes: a user's id and name, a visit counter, the last page, a one-line cart.
let private small (i: int) =
    $"""{{"user":{{"id":{i},"name":"Visitor {i}"}},"visits":{i % 97},"lastPage":"/p/{i % 1000}","cart":[{{"sku":"SKU-{i % 100000:D5}","qty":{1 + i % 5}}}]}}"""

/// A session of `viewed` product ids (5-digit numbers) besides a user, a counter and the last page.
let private viewing (count: int) (i: int) =
    let ids = String.Join(",", Seq.init count (fun k -> string (10000 + (i * 31 + k * 7) % 90000)))
    $"""{{"user":{{"id":{i},"name":"Visitor {i}"}},"visits":{i % 97},"lastPage":"/p/{i % 1000}","viewed":[{ids}]}}"""

/// How many viewed ids make a new anonymous session's hash exactly `fields` fields.
let private viewedFor (fields: int) =
    let base' = nodeCount (Json.parse (viewing 0 0)) + anonymousExtraFields
    // An empty array is one leaf; with ids it is the array's node plus one node per id.
    fields - base'

/// The small session with a note whose JSON text (quotes included) is exactly `bytes` long.
let private noted (bytes: int) (i: int) =
    let text = $"note {i} " + String('x', bytes)
    let note = text.Substring(0, bytes - 2)
    $"""{{"user":{{"id":{i},"name":"Visitor {i}"}},"visits":{i % 97},"lastPage":"/p/{i % 1000}","note":"{note}"}}"""

/// Every case, in the report's order, for Redis's hash-max-listpack-entries and hash-max-listpack-value.
let all (entries: int) (value: int) : Case list = [
    { Name = "small"; Note = "a few small nodes (a user, a counter, a one-line cart): below both limits"; Json = small; SignedIn = false }
    {
        Name = $"{entries} fields"
        Note = $"product ids viewed: exactly {entries} fields (at the entries limit), every value short"
        Json = viewing (viewedFor entries)
        SignedIn = false
    }
    {
        Name = $"{entries + 1} fields"
        Note = $"one more id: {entries + 1} fields (above the entries limit)"
        Json = viewing (viewedFor (entries + 1))
        SignedIn = false
    }
    {
        Name = $"{value}-byte value"
        Note = $"the small session with a note of {value} bytes of JSON (at the value limit)"
        Json = noted value
        SignedIn = false
    }
    { Name = $"{value + 1}-byte value"; Note = "the same note one byte longer (above the value limit)"; Json = noted (value + 1); SignedIn = false }
    {
        Name = "1 KB"
        Note = "the load test's ~1 KB session (a user, a cart of seven items, flags, a history, searches), anonymous"
        Json = Sesame.LoadTest.MemoryUse.sessionJson
        SignedIn = false
    }
    {
        Name = "1 KB signed in"
        Note = "the same, signed in: facts user and device (a 111-character user agent), the user's index"
        Json = Sesame.LoadTest.MemoryUse.sessionJson
        SignedIn = true
    }
]
