namespace Sesame

open System
open System.Buffers
open System.Globalization
open System.Text

/// <summary>
/// The names of a tree's nodes in the stored form Sesame's server-side stores share (a Redis hash's fields, a
/// PostgreSQL table's rows): a path is its segments, each a mark and its text, so a store can find, replace and
/// remove a node without reading its parent. Public for stores that keep sessions the same way.
/// </summary>
/// <remarks>
/// A key segment is <see cref="F:Sesame.NodePath.KeyMark"/> and the key, escaped by <c>escapeKey</c>; an index
/// segment is <see cref="F:Sesame.NodePath.IndexMark"/> and the index in decimal. The root is the empty name.
/// </remarks>
[<RequireQualifiedAccess>]
module NodePath =

    /// <summary>Starts a key segment in a node's name (and an entry in an object node's list of members).</summary>
    [<Literal>]
    let KeyMark = '\u0001'

    /// <summary>Starts an index segment in a node's name.</summary>
    [<Literal>]
    let IndexMark = '\u0002'

    /// Printable ASCII but the quote and the backslash: a key of these alone is its own name and its own JSON text, and
    /// almost every key is one (checked vectorized, rather than a character at a time).
    let private plainKeyChars =
        SearchValues.Create(
            ReadOnlySpan<char>(
                [|
                    for c in ' ' .. '~' do
                        if c <> '"' && c <> '\\' then c
                |]
            )
        )

    /// Whether a key is its own name and its own JSON text (see plainKeyChars).
    let private isPlainKey (key: string) = key.AsSpan().IndexOfAnyExcept plainKeyChars < 0

    /// <summary>
    /// A key as it appears in node names: unchanged, except that control characters (the marks among them), the
    /// backslash and unpaired surrogates become <c>\xxxx</c> (four hex digits). So it holds no mark and no NUL, and it
    /// is valid UTF-8 for any .NET string; independent of any JSON encoder, so a key's name never changes with the runtime.
    /// </summary>
    let escapeKey (key: string) : string =
        let plain (c: char) = c >= ' ' && c <> '\\' && not (Char.IsSurrogate c)
        let mutable simple = isPlainKey key
        if not simple then
            simple <- true
            for c in key do
                if not (plain c) then simple <- false
        if simple then
            key
        else
            let text = StringBuilder(key.Length + 8)
            let mutable i = 0
            while i < key.Length do
                let c = key[i]
                if Char.IsHighSurrogate c && i + 1 < key.Length && Char.IsLowSurrogate key[i + 1] then
                    text.Append(c).Append(key[i + 1]) |> ignore
                    i <- i + 2
                else
                    if plain c then text.Append c |> ignore else text.Append('\\').Append((int c).ToString("x4", CultureInfo.InvariantCulture)) |> ignore
                    i <- i + 1
            text.ToString()

    /// <summary>The key a name segment was escaped from, or <c>None</c> when its text holds an invalid escape.</summary>
    let tryUnescapeKey (text: string) : string option =
        if text.IndexOf '\\' < 0 then
            Some text
        else
            let key = StringBuilder(text.Length)
            let mutable valid = true
            let mutable i = 0
            while valid && i < text.Length do
                if text[i] = '\\' then
                    if i + 4 >= text.Length then
                        valid <- false
                    else
                        match Int32.TryParse(text.AsSpan(i + 1, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture) with
                        | true, code -> key.Append(char code) |> ignore
                        | _ -> valid <- false
                    i <- i + 5
                else
                    key.Append text[i] |> ignore
                    i <- i + 1
            if valid then Some(key.ToString()) else None

    /// <summary>The bytes a member with this key adds to compact JSON besides its value (<c>"key":</c>), exactly as
    /// Sesame's own writer writes it.</summary>
    let keyCost (key: string) : int64 =
        // Printable ASCII other than the quote and the backslash is written as it is.
        if isPlainKey key then
            int64 key.Length + 3L
        else
            // {"key":null} is the key's escaped text plus 9 bytes, of which "": is 3.
            JsonSize.utf8Length (Json.object [ key, Json.Null ]) - 6L

    /// <summary>The nodes a value takes in the stored form: one per leaf and per non-empty object or array (an empty
    /// one is a leaf).</summary>
    let rec nodeCount (json: Json) : int =
        match json with
        | Json.Object o when o.Count > 0 ->
            let mutable count = 1
            for KeyValue(_, child) in o do
                count <- count + nodeCount child
            count
        | Json.Array items when items.Length > 0 ->
            let mutable count = 1
            for item in items do
                count <- count + nodeCount item
            count
        | _ -> 1

    let private keyMarkText = string KeyMark
    let private indexMarkText = string IndexMark

    /// The names of the first array indexes, made once: most updates to an array reach one of its first items.
    let private indexNames = Array.init 64 (fun i -> indexMarkText + i.ToString(CultureInfo.InvariantCulture))

    /// <summary>A segment's part of a node's name.</summary>
    let segmentName (segment: Segment) : string =
        match segment with
        | Segment.Key key -> String.Concat(keyMarkText, escapeKey key)
        | Segment.Index index when index >= 0 && index < indexNames.Length -> indexNames[index]
        | Segment.Index index -> String.Concat(indexMarkText, index.ToString(CultureInfo.InvariantCulture))

    /// <summary>A segment's part of a node's name and the bytes its key adds to compact JSON (see segmentName and
    /// segmentCost), with one look at the key.</summary>
    /// <remarks>A key named lately on this thread gives the name made then (see KeyNames).</remarks>
    let segmentNameAndCost (segment: Segment) : struct (string * int64) =
        match segment with
        | Segment.Key key ->
            let kept = KeyNames.ForThisThread
            let mutable slot = 0
            let mutable cost = 0L
            match kept.Find(key, &slot, &cost) with
            | null ->
                let struct (name, cost) =
                    if isPlainKey key then
                        struct (String.Concat(keyMarkText, key), int64 key.Length + 3L)
                    else
                        struct (String.Concat(keyMarkText, escapeKey key), keyCost key)
                kept.Keep(slot, key, name, cost)
                struct (name, cost)
            | name -> struct (name, cost)
        | Segment.Index _ -> struct (segmentName segment, 0L)

    /// <summary>The bytes a segment's key adds to compact JSON (an index adds none).</summary>
    let segmentCost (segment: Segment) : int64 =
        match segment with
        | Segment.Key key -> keyCost key
        | Segment.Index _ -> 0L
