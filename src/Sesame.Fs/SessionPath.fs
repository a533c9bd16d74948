namespace Sesame

open System
open System.Collections.Immutable
open System.Text

/// <summary>One step of a path: an object key or an array index.</summary>
[<RequireQualifiedAccess>]
type Segment =
    /// A key of an object.
    | Key of key: string
    /// A zero-based index of an array.
    | Index of index: int

/// <summary>
/// Where a value lives in a session tree: a list of segments from the root. Written as text
/// like <c>cart.items[2].qty</c>; a key holding <c>.</c>, <c>[</c>, <c>]</c>, <c>"</c>, a control
/// character or nothing at all is written in brackets as a JSON string: <c>user["first.name"]</c>.
/// </summary>
type SessionPath = private {
    segments: Segment list
    // Derived from the segments, so equality and order are still the segments': kept so that checking an update
    // neither counts the list nor scans its keys again (a parsed literal is made once, the parse cache giving it back).
    /// How many segments.
    depth: int
    /// Whether a key holds a lone UTF-16 surrogate (see LoneSurrogates).
    loneSurrogate: bool
} with

    /// A path of these segments (checked by the caller).
    static member internal OfList(segments: Segment list) : SessionPath =
        let mutable depth = 0
        let mutable lone = false
        for segment in segments do
            depth <- depth + 1
            match segment with
            | Segment.Key key when not lone -> lone <- LoneSurrogates.has key
            | _ -> ()
        { segments = segments; depth = depth; loneSurrogate = lone }

    /// The segments, root first.
    member this.Segments = this.segments

    /// How many segments the path has.
    member internal this.Depth = this.depth

    /// Whether a key of the path holds a lone UTF-16 surrogate, which JSON text cannot hold.
    member internal this.HasLoneSurrogate = this.loneSurrogate

    /// Whether this is the root (the whole session).
    member this.IsRoot = List.isEmpty this.segments

    /// <summary>The root: the whole session. Build paths from data with <see cref="M:Sesame.SessionPath.Key(System.String)"/>
    /// and <see cref="M:Sesame.SessionPath.Index(System.Int32)"/>, so a key from user input is always one key, whatever it holds.</summary>
    static member Root: SessionPath = SessionPath.OfList []

    /// <summary>The path one object key below this one. The key is data: dots, brackets and quotes in it are part of the key.</summary>
    /// <exception cref="System.ArgumentException">The key is null, or the path would have more than 1,024 segments.</exception>
    member this.Key(key: string) : SessionPath =
        if isNull key then nullArg "key"
        if this.depth >= 1024 then invalidArg "key" "A path may have at most 1024 segments."
        { segments = this.segments @ [ Segment.Key key ]; depth = this.depth + 1; loneSurrogate = this.loneSurrogate || LoneSurrogates.has key }

    /// <summary>The path one array index below this one.</summary>
    /// <exception cref="System.ArgumentException">The index is negative, or the path would have more than 1,024 segments.</exception>
    member this.Index(index: int) : SessionPath =
        if index < 0 then invalidArg "index" $"Array index {index} is negative."
        if this.depth >= 1024 then invalidArg "index" "A path may have at most 1024 segments."
        { this with segments = this.segments @ [ Segment.Index index ]; depth = this.depth + 1 }

    /// <summary>A path of object keys from the root, each key taken as data (it may hold any character).</summary>
    /// <exception cref="System.ArgumentException">A key is null, or there are more than 1,024 keys.</exception>
    static member OfKeys([<ParamArray>] keys: string[]) : SessionPath =
        if isNull keys then nullArg "keys"
        if keys.Length > 1024 then invalidArg "keys" $"A path may have at most 1024 segments; this one has {keys.Length}."
        if keys |> Array.exists isNull then invalidArg "keys" "A key cannot be null."
        SessionPath.OfList [ for key in keys -> Segment.Key key ]

    /// The canonical text of the path (the empty string for the root).
    override this.ToString() =
        let text = StringBuilder()
        let needsBrackets (key: string) =
            key.Length = 0 || key |> Seq.exists (fun c -> c = '.' || c = '[' || c = ']' || c = '"' || c = '\\' || Char.IsControl c || Char.IsWhiteSpace c)
        for segment in this.segments do
            match segment with
            | Segment.Key key when needsBrackets key -> text.Append('[').Append(System.Text.Json.JsonSerializer.Serialize key).Append(']') |> ignore
            | Segment.Key key ->
                if text.Length > 0 then text.Append '.' |> ignore
                text.Append key |> ignore
            | Segment.Index i -> text.Append('[').Append(i).Append(']') |> ignore
        text.ToString()

/// <summary>
/// A path that cannot be followed in a tree: it crosses a value that is not a container of
/// the right kind, an index is past the end of an array, or a number was expected.
/// </summary>
type PathConflictException(path: SessionPath, message: string) =
    inherit InvalidOperationException(message)

    /// The path the operation was given.
    member _.Path = path

/// <summary>Parsing paths and reading and changing a tree through them (a lens).</summary>
/// <remarks>
/// <para>Reading a path that does not exist gives nothing.</para>
/// <para>Setting creates what is missing on the way: an object for a key, an array for index 0.
/// Setting index <c>n</c> of an array of <c>n</c> items appends; a larger index is a
/// <see cref="T:Sesame.PathConflictException"/>. So is a path that crosses a value that is not a
/// container of the right kind (a key into an array, an index into an object, anything into a
/// string): nothing is replaced silently.</para>
/// <para>Removing something that is not there does nothing. Removing an array item shifts the items after it.</para>
/// </remarks>
[<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module SessionPath =

    /// <summary>The most segments a path may have (the same as <see cref="F:Sesame.JsonModule.MaxDepth"/>).</summary>
    [<Literal>]
    let MaxSegments = Json.MaxDepth

    /// <summary>The longest path text accepted, in characters (16,384).</summary>
    [<Literal>]
    let MaxTextLength = 16384

    /// The root: the whole session.
    let root = SessionPath.Root

    /// <summary>A path from segments.</summary>
    /// <exception cref="System.ArgumentException">An index is negative, a key is null, or there are more than <see cref="F:Sesame.SessionPathModule.MaxSegments"/> segments.</exception>
    let ofSegments (segments: seq<Segment>) =
        let segments = List.ofSeq segments
        if segments.Length > MaxSegments then invalidArg "segments" $"A path may have at most {MaxSegments} segments; this one has {segments.Length}."
        for segment in segments do
            match segment with
            | Segment.Index i when i < 0 -> invalidArg "segments" $"Array index {i} is negative."
            | Segment.Key null -> invalidArg "segments" "A key cannot be null."
            | _ -> ()
        SessionPath.OfList segments

    /// <summary>A path of object keys (so keys may hold any character).</summary>
    let ofKeys (keys: seq<string>) = ofSegments (Seq.map Segment.Key keys)

    /// The path one level below.
    let child (segment: Segment) (path: SessionPath) = ofSegments (path.Segments @ [ segment ])

    let private isBareKeyChar (c: char) = not (c = '.' || c = '[' || c = ']' || c = '"' || c = '\\' || Char.IsControl c || Char.IsWhiteSpace c)

    /// <summary>Parses path text, or says what is wrong and where.</summary>
    let tryParse (text: string) : Result<SessionPath, string> =
        if isNull text then
            Error "The path is null."
        elif text.Length = 0 then
            Error "The path is empty; name a key, e.g. \"cart.items[2].qty\"."
        elif text.Length > MaxTextLength then
            Error $"The path is {text.Length} characters long; at most {MaxTextLength} are accepted."
        else
            let segments = ResizeArray<Segment>()
            let mutable i = 0
            let mutable error = None
            let fail message = if error.IsNone then error <- Some message
            let bareKey () =
                let start = i
                while i < text.Length && isBareKeyChar text[i] do
                    i <- i + 1
                if i = start then fail $"Expected a key at position {start} of \"{text}\"." else segments.Add(Segment.Key(text.Substring(start, i - start)))
            let bracket () =
                // text[i] = '['
                i <- i + 1
                if i < text.Length && text[i] = '"' then
                    // A JSON string: find its closing quote, honouring escapes.
                    let start = i
                    i <- i + 1
                    while i < text.Length && text[i] <> '"' do
                        i <- i + (if text[i] = '\\' then 2 else 1)
                    if i >= text.Length then
                        fail $"Unterminated quoted key starting at position {start} of \"{text}\"."
                    else
                        i <- i + 1
                        try
                            segments.Add(Segment.Key(System.Text.Json.JsonSerializer.Deserialize<string>(text.Substring(start, i - start))))
                        with _ ->
                            fail $"Invalid escape in the quoted key at position {start} of \"{text}\"."
                else
                    let start = i
                    while i < text.Length && Char.IsAsciiDigit text[i] do
                        i <- i + 1
                    if i = start then
                        fail $"Expected an index or a quoted key at position {start} of \"{text}\"."
                    elif i - start > 1 && text[start] = '0' then
                        fail $"Index at position {start} of \"{text}\" has a leading zero."
                    else
                        match Int32.TryParse(text.AsSpan(start, i - start)) with
                        | true, index -> segments.Add(Segment.Index index)
                        | _ -> fail $"Index at position {start} of \"{text}\" is too large."
                if error.IsNone then if i < text.Length && text[i] = ']' then i <- i + 1 else fail $"Expected ']' at position {i} of \"{text}\"."
            if text[0] = '[' then bracket () else bareKey ()
            while error.IsNone && i < text.Length do
                match text[i] with
                | '.' ->
                    i <- i + 1
                    bareKey ()
                | '[' -> bracket ()
                | c -> fail $"Unexpected '{c}' at position {i} of \"{text}\"; keys holding it must be quoted, e.g. [\"a.b\"]."
                if segments.Count > MaxSegments then fail $"The path has more than {MaxSegments} segments."
            match error with
            | Some message -> Error message
            | None -> Ok(SessionPath.OfList(List.ofSeq segments))

    /// Paths in handlers are mostly literals: each text is parsed once (paths are immutable). Bounded, so
    /// paths built from client input cannot grow it.
    let private parsed = Collections.Concurrent.ConcurrentDictionary<string, SessionPath>(StringComparer.Ordinal)

    [<Literal>]
    let private MaxCached = 4096

    /// <summary>Parses path text like <c>cart.items[2].qty</c> or <c>user["first.name"]</c>.</summary>
    /// <remarks>The paths of the texts a program uses are kept (up to 4,096 of them), so a literal is parsed once.</remarks>
    /// <exception cref="System.ArgumentException">The text is not a path; the message says where.</exception>
    let parse (text: string) : SessionPath =
        match (if isNull text then false, Unchecked.defaultof<_> else parsed.TryGetValue text) with
        | true, path -> path
        | _ ->
            match tryParse text with
            | Ok path ->
                if parsed.Count < MaxCached then parsed.TryAdd(text, path) |> ignore
                path
            | Error message -> invalidArg "path" message

    /// <summary>Whether <paramref name="prefix"/> is the same path as, or an ancestor of, <paramref name="path"/>.</summary>
    let isPrefixOf (prefix: SessionPath) (path: SessionPath) =
        let rec loop a b =
            match a, b with
            | [], _ -> true
            | x :: xs, y :: ys when x = y -> loop xs ys
            | _ -> false
        loop prefix.Segments path.Segments

    /// The segments of <paramref name="path"/> below <paramref name="prefix"/> (which must be a prefix).
    let internal relativeTo (prefix: SessionPath) (path: SessionPath) =
        let segments = List.skip prefix.Depth path.Segments
        // Below a path without a lone surrogate there is none either.
        if path.HasLoneSurrogate then SessionPath.OfList segments else { segments = segments; depth = path.Depth - prefix.Depth; loneSurrogate = false }

    let internal conflict (path: SessionPath) (depth: int) (what: string) =
        let at = SessionPath.OfList(List.truncate depth path.Segments)
        let where = if at.IsRoot then "the root" else $"'{at}'"
        raise (PathConflictException(path, $"Cannot follow '{path}': {where} {what}."))

    let internal describe (json: Json) =
        match json with
        | Json.Null -> "is null"
        | Json.Bool _ -> "is a boolean"
        | Json.Number _ -> "is a number"
        | Json.String _ -> "is a string"
        | Json.Array items -> $"is an array of {items.Length} items"
        | Json.Object _ -> "is an object"

    /// <summary>
    /// The general lens: replaces the value at <paramref name="path"/> with <c>change</c> of the
    /// current one (<c>ValueNone</c> when missing; returning <c>ValueNone</c> removes it).
    /// Missing containers are created only when <c>change</c> produces a value.
    /// </summary>
    /// <exception cref="T:Sesame.PathConflictException">The path crosses a value of the wrong kind, or an index is past the end.</exception>
    let internal modify (path: SessionPath) (change: Json voption -> Json voption) (node: Json voption) : Json voption =
        let rec go depth segments (node: Json voption) =
            match segments with
            | [] -> change node
            | Segment.Key key :: rest ->
                match node with
                | ValueNone ->
                    match go (depth + 1) rest ValueNone with
                    | ValueNone -> ValueNone
                    | ValueSome child -> ValueSome(Json.Object(JsonObject.Empty.Add(key, child)))
                | ValueSome(Json.Object o as current) ->
                    let before = o.Find key
                    match go (depth + 1) rest before, before with
                    | ValueNone, ValueNone -> ValueSome current
                    | ValueNone, ValueSome _ -> ValueSome(Json.Object(o.Remove key))
                    | ValueSome after, ValueSome b when obj.ReferenceEquals(after, b) -> ValueSome current
                    | ValueSome after, _ -> ValueSome(Json.Object(o.Add(key, after)))
                | ValueSome other -> conflict path depth $"{describe other}, not an object with key \"{key}\""
            | Segment.Index index :: rest ->
                match node with
                | ValueNone ->
                    match go (depth + 1) rest ValueNone with
                    | ValueNone -> ValueNone
                    | ValueSome _ when index > 0 -> conflict path depth $"is missing, so index {index} is past the end"
                    | ValueSome child -> ValueSome(Json.Array(ImmutableArray.Create child))
                | ValueSome(Json.Array items as current) ->
                    if index < items.Length then
                        let before = items[index]
                        match go (depth + 1) rest (ValueSome before) with
                        | ValueNone -> ValueSome(Json.Array(items.RemoveAt index))
                        | ValueSome after when obj.ReferenceEquals(after, before) -> ValueSome current
                        | ValueSome after -> ValueSome(Json.Array(items.SetItem(index, after)))
                    else
                        match go (depth + 1) rest ValueNone with
                        | ValueNone -> ValueSome current
                        | ValueSome _ when index > items.Length -> conflict path depth $"{describe (Json.Array items)}, so index {index} is past the end"
                        | ValueSome after -> ValueSome(Json.Array(items.Add after))
                | ValueSome other -> conflict path depth $"{describe other}, not an array"
        go 0 path.Segments node

    /// <summary>The value at a path, or <c>None</c> if there is none (including when the path crosses a value of the wrong kind).</summary>
    let tryGet (path: SessionPath) (json: Json) : Json option =
        let rec go segments (node: Json) =
            match segments, node with
            | [], _ -> Some node
            | Segment.Key key :: rest, Json.Object o ->
                match o.Find key with
                | ValueSome child -> go rest child
                | ValueNone -> None
            | Segment.Index i :: rest, Json.Array items when i < items.Length -> go rest items[i]
            | _ -> None
        go path.Segments json

    /// <summary>A copy of the tree with <paramref name="value"/> at <paramref name="path"/>, creating missing containers.</summary>
    /// <exception cref="T:Sesame.PathConflictException">The path crosses a value of the wrong kind, or an index is past the end.</exception>
    let set (path: SessionPath) (value: Json) (json: Json) : Json =
        match modify path (fun _ -> ValueSome value) (ValueSome json) with
        | ValueSome result -> result
        | ValueNone -> json

    /// <summary>A copy of the tree without the value at <paramref name="path"/>; the tree itself when there is nothing there.
    /// Removing the root gives the empty object.</summary>
    let remove (path: SessionPath) (json: Json) : Json =
        if path.IsRoot then
            Json.emptyObject
        else
            try
                match modify path (fun _ -> ValueNone) (ValueSome json) with
                | ValueSome result -> result
                | ValueNone -> json
            with :? PathConflictException ->
                // Nothing lives below a value of the wrong kind, so there is nothing to remove.
                json
