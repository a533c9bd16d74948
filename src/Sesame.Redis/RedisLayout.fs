namespace Sesame.Redis

open System
open System.Buffers
open System.Collections.Generic
open System.Collections.Immutable
open System.Globalization
open System.Text
open Sesame
open StackExchange.Redis

/// A stored session that cannot be read back: says why.
exception internal InvalidLayout of reason: string

/// <summary>
/// The stored form of a session: one Redis hash, one field per node of the JSON tree (the
/// layout is described at the top of Commit.lua). This module turns patches into the commit
/// script's arguments and a hash's fields back into a tree; it never goes through Lua's cjson.
/// </summary>
[<RequireQualifiedAccess>]
module internal RedisLayout =

    /// Starts a key segment in a field name (and an entry in an object node).
    [<Literal>]
    let KeyMark = '\u0001'

    /// Starts an index segment in a field name.
    [<Literal>]
    let IndexMark = '\u0002'

    /// Separates a member's key from its cost in an object node.
    [<Literal>]
    let CostMark = '\u0003'

    /// The field holding the format version.
    [<Literal>]
    let VersionField = "#v"

    /// The field holding the session's size in bytes of compact JSON.
    [<Literal>]
    let SizeField = "#s"

    /// The format this code writes and reads.
    [<Literal>]
    let FormatVersion = "1"

    let private utf8 = UTF8Encoding(false, true)

    let inline private value (text: string) = RedisValue.op_Implicit text

    /// <summary>
    /// A key as it appears in field names: unchanged, except that control characters, the
    /// backslash and unpaired surrogates become <c>\xxxx</c> (four hex digits). So it holds no
    /// byte the layout uses as a mark, and it is valid UTF-8 for any .NET string. Independent
    /// of any JSON encoder, so a key's field name never changes with the runtime.
    /// </summary>
    let escapeKey (key: string) : string =
        let plain (c: char) = c >= ' ' && c <> '\\' && not (Char.IsSurrogate c)
        if key |> Seq.forall plain then
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
                    if plain c then text.Append c |> ignore
                    else text.Append('\\').Append((int c).ToString("x4", CultureInfo.InvariantCulture)) |> ignore
                    i <- i + 1
            text.ToString()

    /// The inverse of escapeKey.
    let unescapeKey (text: string) : string =
        if text.IndexOf '\\' < 0 then
            text
        else
            let key = StringBuilder(text.Length)
            let mutable i = 0
            while i < text.Length do
                if text[i] = '\\' then
                    match Int32.TryParse(text.AsSpan(min (i + 1) text.Length, min 4 (text.Length - i - 1)), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture) with
                    | true, code when i + 4 < text.Length -> key.Append(char code) |> ignore
                    | _ -> raise (InvalidLayout "a key has an invalid escape")
                    i <- i + 5
                else
                    key.Append text[i] |> ignore
                    i <- i + 1
            key.ToString()

    /// The bytes a member with this key adds to compact JSON besides its value: "key": (with
    /// Sesame's own writer, so escaping counts exactly as it will be written).
    let keyCost (key: string) : int64 =
        // {"key":null} is the key's escaped text plus 9 bytes, of which "": is 3.
        JsonSize.utf8Length (Json.object [ key, Json.Null ]) - 6L

    let private segmentField (segment: Segment) =
        match segment with
        | Segment.Key key -> string KeyMark + escapeKey key
        | Segment.Index index -> string IndexMark + index.ToString(CultureInfo.InvariantCulture)

    let private segmentCost (segment: Segment) =
        match segment with
        | Segment.Key key -> keyCost key
        | Segment.Index _ -> 0L

    /// Adds the nodes of a value, their field names relative to the value's own field.
    let rec private addNodes (arguments: ResizeArray<RedisValue>) (relative: string) (json: Json) : int =
        match json with
        | Json.Object o when o.Count > 0 ->
            let names = Array.zeroCreate o.Count
            let node = StringBuilder("O")
            let mutable i = 0
            for KeyValue(key, _) in o do
                names[i] <- escapeKey key
                node.Append(KeyMark).Append(names[i]).Append(CostMark).Append(keyCost key) |> ignore
                i <- i + 1
            arguments.Add(value relative)
            arguments.Add(value (node.ToString()))
            let mutable count = 1
            i <- 0
            for KeyValue(_, child) in o do
                count <- count + addNodes arguments (relative + string KeyMark + names[i]) child
                i <- i + 1
            count
        | Json.Array items when items.Length > 0 ->
            arguments.Add(value relative)
            arguments.Add(value ("A" + items.Length.ToString(CultureInfo.InvariantCulture)))
            let mutable count = 1
            for i in 0 .. items.Length - 1 do
                count <- count + addNodes arguments (relative + string IndexMark + i.ToString(CultureInfo.InvariantCulture)) items[i]
            count
        | leaf ->
            arguments.Add(value relative)
            arguments.Add(RedisValue.op_Implicit (Json.toUtf8 leaf))
            1

    let private addPath (arguments: ResizeArray<RedisValue>) (path: Path) =
        arguments.Add(RedisValue.op_Implicit (int64 path.Segments.Length))
        for segment in path.Segments do
            arguments.Add(value (segmentField segment))
            arguments.Add(RedisValue.op_Implicit (segmentCost segment))

    /// A commit's time to live in milliseconds; -1 (never expire) when it is too far away to matter.
    let ttlMilliseconds (idleTimeout: TimeSpan) : int64 =
        // 10^14 ms is over 3,000 years; Redis refuses expiry times that overflow.
        if idleTimeout.TotalMilliseconds >= 1e14 then -1L
        else max 0L (int64 (Math.Ceiling idleTimeout.TotalMilliseconds))

    /// <summary>The commit script's ARGV for one patch (see Commit.lua).</summary>
    let commitArguments (patch: Patch) (options: CommitOptions) : RedisValue[] =
        let arguments = ResizeArray<RedisValue>(8 + 8 * patch.Updates.Length)
        arguments.Add(value (if options.MustExist then "1" else "0"))
        arguments.Add(RedisValue.op_Implicit (ttlMilliseconds options.IdleTimeout))
        arguments.Add(RedisValue.op_Implicit (int64 options.MaxSizeBytes))
        arguments.Add(RedisValue.op_Implicit (int64 patch.Updates.Length))
        // 's' sets the value at the path; 'a' appends it to the array there.
        let addValue (op: string) (path: Path) (json: Json) =
            arguments.Add(value op)
            addPath arguments path
            let countAt = arguments.Count
            arguments.Add(RedisValue.Null)
            arguments.Add(RedisValue.op_Implicit (JsonSize.utf8Length json))
            let count = addNodes arguments "" json
            arguments[countAt] <- RedisValue.op_Implicit (int64 count)
        for update in patch.Updates do
            match update with
            | Update.Set(path, json) -> addValue "s" path json
            | Update.Append(path, json) -> addValue "a" path json
            // As Update.apply does: removing the root clears the session.
            | Update.Remove path when path.IsRoot -> addValue "s" path Json.emptyObject
            // A remove of an array index is a conflict, which the script reports in its turn.
            | Update.Remove path ->
                arguments.Add(value "r")
                addPath arguments path
            | Update.Increment(path, by) ->
                arguments.Add(value "i")
                addPath arguments path
                arguments.Add(value by.Text)
        arguments.ToArray()

    /// How Sesame's Path module describes a node in a conflict, from the node's stored form.
    let private describe (kind: string) =
        match kind with
        | "n" -> "is null"
        | "t"
        | "f" -> "is a boolean"
        | "\"" -> "is a string"
        | "[" -> "is an array of 0 items"
        | "{"
        | "O" -> "is an object"
        | k when k.StartsWith 'A' -> $"is an array of {k.Substring 1} items"
        | _ -> "is a number"

    let private holds (kind: string) =
        match kind with
        | "n" -> "null"
        | "t"
        | "f" -> "a boolean"
        | "\"" -> "a string"
        | "{"
        | "O" -> "an object"
        | "["
        | "A" -> "an array"
        | k when k.StartsWith 'A' -> "an array"
        | _ -> "a number"

    /// <summary>The conflict the commit script reported, with the message Sesame's own apply gives.</summary>
    let conflict (patch: Patch) (update: int) (code: string) (depth: int) (info: string) : PathConflictException =
        let update = List.item (update - 1) patch.Updates
        let path = update.Path
        let follow (what: string) =
            let at = Path.ofSegments (List.truncate depth path.Segments)
            let where = if at.IsRoot then "the root" else $"'{at}'"
            PathConflictException(path, $"Cannot follow '{path}': {where} {what}.")
        let index () =
            match List.item depth path.Segments with
            | Segment.Index i -> i
            | Segment.Key _ -> -1
        match code with
        | "kind" ->
            match List.item depth path.Segments with
            | Segment.Key key -> follow $"{describe info}, not an object with key \"{key}\""
            | Segment.Index _ -> follow $"{describe info}, not an array"
        | "missing" -> follow $"is missing, so index {index ()} is past the end"
        | "past" -> follow $"is an array of {info} items, so index {index ()} is past the end"
        | "notnumber" -> PathConflictException(path, $"Cannot increment '{path}': it holds {holds info}, not a number.")
        | "notarray" -> PathConflictException(path, $"Cannot append to '{path}': it holds {holds info}, not an array.")
        | "overflow" ->
            let why =
                match update with
                | Update.Increment(_, by) ->
                    try
                        JsonNumber.Add(JsonNumber.Parse info, by) |> ignore
                        "the sum cannot be computed exactly."
                    with e ->
                        e.Message
                | _ -> "the sum cannot be computed exactly."
            PathConflictException(path, $"Cannot increment '{path}': {why}")
        | _ -> PathConflictException(path, $"Cannot remove '{path}': an update removes object keys only; set the array without the item instead.")

    /// <summary>
    /// Reads reply values through one reusable buffer: <c>RedisValue.CopyTo</c> gives the bytes of
    /// any value (3.x keeps values of up to 8 bytes inline and canonical numbers as numbers), so
    /// no value becomes a <c>byte[]</c> of its own on the way to its string or its parsed leaf.
    /// </summary>
    [<Sealed>]
    type private ValueReader() =
        let mutable buffer = ArrayPool<byte>.Shared.Rent 256

        /// Copies the value's bytes into the buffer; returns how many there are.
        member _.Fill(value: RedisValue) : int =
            let length = value.GetByteCount()
            if length > buffer.Length then
                ArrayPool<byte>.Shared.Return buffer
                buffer <- ArrayPool<byte>.Shared.Rent length
            value.CopyTo(Span buffer)

        /// The bytes the last Fill copied.
        member _.Bytes(length: int) = ReadOnlySpan(buffer, 0, length)

        /// The first byte the last Fill copied.
        member _.First = buffer[0]

        /// The bytes the last Fill copied, as strict UTF-8 text.
        member _.Decode(length: int) : string =
            try
                utf8.GetString(buffer, 0, length)
            with :? DecoderFallbackException ->
                raise (InvalidLayout "a field is not valid UTF-8")

        /// The value as strict UTF-8 text.
        member this.Text(value: RedisValue) : string = this.Decode(this.Fill value)

        interface IDisposable with
            member _.Dispose() = ArrayPool<byte>.Shared.Return buffer

    /// <summary>Rebuilds a session from its hash's fields and values (HGETALL's reply), checking every node.</summary>
    /// <returns>The tree, or why the hash is not a valid session.</returns>
    let rebuild (entries: RedisResult[]) : Result<Json, string> =
        use reader = new ValueReader()
        try
            if entries.Length % 2 <> 0 then raise (InvalidLayout "the hash reply is malformed")
            let nodes = Dictionary<string, RedisValue>(entries.Length / 2, StringComparer.Ordinal)
            let mutable version = null
            let mutable size = null
            for i in 0..2 .. entries.Length - 1 do
                let field = reader.Text(RedisResult.op_Explicit entries[i])
                let data: RedisValue = RedisResult.op_Explicit entries[i + 1]
                match field with
                | VersionField -> version <- reader.Text data
                | SizeField -> size <- reader.Text data
                | _ -> nodes[field] <- data
            if version <> FormatVersion then raise (InvalidLayout "the hash has no Sesame format version")
            match Int64.TryParse(size, NumberStyles.None, CultureInfo.InvariantCulture) with
            | true, _ -> ()
            | _ -> raise (InvalidLayout "the hash has no valid size")
            let mutable visited = 0
            // A path of at most MaxDepth segments holding a value at most MaxDepth deep.
            let maxDepth = 2 * Json.MaxDepth + 1
            let rec build (field: string) (depth: int) : Json =
                if depth > maxDepth then raise (InvalidLayout "the tree is too deep")
                let data =
                    match nodes.TryGetValue field with
                    | true, data -> data
                    | _ -> raise (InvalidLayout "a container names a node that is missing")
                visited <- visited + 1
                let length = reader.Fill data
                if length = 0 then raise (InvalidLayout "a node is empty")
                match char reader.First with
                | 'O' ->
                    let node = reader.Decode length
                    let entries = node.Substring(1).Split KeyMark
                    if entries.Length < 2 || entries[0] <> "" then raise (InvalidLayout "an object node is malformed")
                    let members = Array.zeroCreate (entries.Length - 1)
                    let seen = HashSet<string>(StringComparer.Ordinal)
                    for i in 1 .. entries.Length - 1 do
                        let entry = entries[i]
                        let mark = entry.IndexOf CostMark
                        let cost = if mark < 0 then "" else entry.Substring(mark + 1)
                        if mark < 0 || cost.Length = 0 || not (cost |> Seq.forall Char.IsAsciiDigit) then
                            raise (InvalidLayout "an object member is malformed")
                        let name = entry.Substring(0, mark)
                        if not (seen.Add name) then raise (InvalidLayout "an object names a key twice")
                        members[i - 1] <- KeyValuePair(unescapeKey name, build (field + string KeyMark + name) (depth + 1))
                    Json.Object(JsonObject.OfSeq(members |> Seq.map (fun (KeyValue(k, v)) -> k, v)))
                | 'A' ->
                    match Int32.TryParse(reader.Decode length |> _.Substring(1), NumberStyles.None, CultureInfo.InvariantCulture) with
                    | true, n when n > 0 ->
                        let items = ImmutableArray.CreateBuilder<Json>(n)
                        for i in 0 .. n - 1 do
                            items.Add(build (field + string IndexMark + i.ToString(CultureInfo.InvariantCulture)) (depth + 1))
                        Json.Array(items.MoveToImmutable())
                    | _ -> raise (InvalidLayout "an array node is malformed")
                | _ ->
                    let leaf =
                        try
                            Json.parseUtf8 (reader.Bytes length)
                        with
                        | :? Text.Json.JsonException
                        | :? InvalidOperationException -> raise (InvalidLayout "a leaf is not JSON")
                    match leaf with
                    | Json.Array items when items.Length > 0 -> raise (InvalidLayout "a leaf holds a container")
                    | Json.Object o when o.Count > 0 -> raise (InvalidLayout "a leaf holds a container")
                    | _ -> leaf
            let root = build "" 0
            if visited <> nodes.Count then raise (InvalidLayout "the hash holds fields that are not part of the tree")
            Ok root
        with InvalidLayout reason ->
            Error reason
