namespace Sesame.Redis

open System
open System.Buffers
open System.Collections.Generic
open System.Collections.Immutable
open System.Globalization
open System.Runtime.CompilerServices
open System.Text
open Sesame
open StackExchange.Redis

/// A stored session that cannot be read back: says why.
exception internal InvalidLayout of reason: string

/// <summary>
/// The stored form of a session: one Redis hash holding its data tree and its facts tree, one field per node, an
/// object's leaves inline in its node within the store's inline limit (the layout is described at the top of
/// Patch.lua), and the keys beside it (Layout.lua). This module makes
/// the shard tags, turns changes into the scripts' arguments and a hash's fields back into trees; it never
/// goes through Lua's cjson.
/// </summary>
[<RequireQualifiedAccess>]
module internal RedisLayout =

    /// Starts a key segment in a field name (and an entry in an object node): the shared node names (NodePath).
    [<Literal>]
    let KeyMark = NodePath.KeyMark

    /// Starts an index segment in a field name.
    [<Literal>]
    let IndexMark = NodePath.IndexMark

    /// Separates a member's key from its cost in an object node.
    [<Literal>]
    let CostMark = '\u0003'

    /// Follows a member's cost in an object node when the member is a leaf held inline: its JSON text comes next, and
    /// it has no field of its own (JSON text never holds the byte, nor does an escaped key).
    [<Literal>]
    let InlineMark = '\u0005'

    /// The root of the facts tree in field names (the data tree's root is the empty name).
    [<Literal>]
    let FactsRoot = "\u0004"

    /// The field holding the format version.
    [<Literal>]
    let VersionField = "#v"

    /// The field holding the data tree's size in bytes of compact JSON.
    [<Literal>]
    let SizeField = "#s"

    /// The format of a hash that holds no inline leaf: what Sesame wrote before inline leaves, and still writes with
    /// the inline limit 0.
    [<Literal>]
    let PlainFormatVersion = "2"

    /// The format of a hash that may hold inline leaves (written with an inline limit above 0). Both are read.
    [<Literal>]
    let InlineFormatVersion = "3"

    let private alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

    /// <summary>
    /// The first character of every id Sesame gives a user's sessions: 6 bits of the SHA-256 of the user id
    /// (the rule of Sesame's SessionId.shardOf, which the store contract names).
    /// </summary>
    let shardOf (userId: string) : char = alphabet[int (Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes userId)[0] &&& 63uy)]

    /// <summary>
    /// A session id's shard tag (tagOf in Layout.lua): its first character when it is a letter, a digit,
    /// <c>-</c> or <c>_</c> (every id Sesame makes), otherwise one character per range of first characters,
    /// so that the shards, in the order of <see cref="tags"/>, hold ids in order.
    /// </summary>
    let tagOf (id: string) : char =
        if String.IsNullOrEmpty id then invalidArg "id" "A session id cannot be empty."
        let c = id[0]
        if Char.IsAsciiLetterOrDigit c || c = '-' || c = '_' then c
        elif c < '-' then '!'
        elif c <= '/' then '.'
        elif c <= '@' then ':'
        elif c <= '^' then '['
        elif c = '`' then '`'
        else '~'

    /// Every shard tag, in the order of the ids they hold (byte order).
    let tags: char[] = Array.ofSeq "!-.0123456789:ABCDEFGHIJKLMNOPQRSTUVWXYZ[_`abcdefghijklmnopqrstuvwxyz~"

    /// An owner as the scripts keep it: the user's shard character followed by the user id.
    let ownerOf (userId: string) : string = String(shardOf userId, 1) + userId

    /// The facts an ended session is reported with when only its owner is known.
    let factsOfOwner (owner: string) : Json =
        if String.IsNullOrEmpty owner then Json.emptyObject else Json.object [ SessionMeta.User, Json.String(owner.Substring 1) ]

    let private utf8 = UTF8Encoding(false, true)

    let inline private value (text: string) = RedisValue.op_Implicit text

    /// The key a field name's segment was escaped from (NodePath.escapeKey).
    let unescapeKey (text: string) : string =
        match NodePath.tryUnescapeKey text with
        | Some key -> key
        | None -> raise (InvalidLayout "a key has an invalid escape")

    let private nullValue = value "null"
    let private trueValue = value "true"
    let private falseValue = value "false"

    /// A leaf's JSON as a field's value: a number's text and the constants as they are (the same bytes, without
    /// writing them), other leaves (strings) written as JSON.
    let private leafValue (leaf: Json) : RedisValue =
        match leaf with
        | Json.Number n -> value n.Text
        | Json.Null -> nullValue
        | Json.Bool true -> trueValue
        | Json.Bool false -> falseValue
        | other -> RedisValue.op_Implicit (Json.toUtf8 other)

    /// The decimal digits of a cost.
    let private digitCount (n: int64) =
        let mutable digits = 1
        let mutable rest = n / 10L
        while rest > 0L do
            digits <- digits + 1
            rest <- rest / 10L
        digits

    /// Whether a value is a leaf of the stored form: not a non-empty object or array.
    let private isLeaf (json: Json) =
        match json with
        | Json.Object o -> o.Count = 0
        | Json.Array items -> items.Length = 0
        | _ -> true

    /// A leaf's JSON text, as it is written inline in its object's node.
    let private leafText (leaf: Json) : string =
        match leaf with
        | Json.Number n -> n.Text
        | Json.Null -> "null"
        | Json.Bool true -> "true"
        | Json.Bool false -> "false"
        | other -> Json.serialize other

    /// Adds the nodes of a value, their field names relative to the value's own field; an object's leaves are held
    /// inline in its node while the node stays within `limit` bytes (Patch.lua). Gives how many nodes it added.
    let rec private addNodes (arguments: ScriptArguments) (limit: int) (relative: string) (json: Json) : int =
        match json with
        | Json.Object o when o.Count > 0 ->
            let names = Array.zeroCreate o.Count
            let costs = Array.zeroCreate o.Count
            // The node's bytes with every member's entry and no leaf inline: leaves go inline, in member order, only
            // while the whole node stays within the limit.
            let mutable bytes = 1
            let mutable i = 0
            for KeyValue(key, _) in o do
                names[i] <- NodePath.escapeKey key
                costs[i] <- NodePath.keyCost key
                if limit > 0 then bytes <- bytes + 2 + Encoding.UTF8.GetByteCount names[i] + digitCount costs[i]
                i <- i + 1
            // The members held inline, by position: the rest are nodes of their own.
            let inlined = Array.zeroCreate<bool> o.Count
            let node = StringBuilder("O")
            i <- 0
            for KeyValue(_, child) in o do
                node.Append(KeyMark).Append(names[i]).Append(CostMark).Append(costs[i]) |> ignore
                if limit > 0 && bytes < limit && isLeaf child then
                    let text = leafText child
                    let size = 1 + Encoding.UTF8.GetByteCount text
                    if bytes + size <= limit then
                        node.Append(InlineMark).Append(text) |> ignore
                        bytes <- bytes + size
                        inlined[i] <- true
                i <- i + 1
            arguments.Add(value relative)
            arguments.Add(value (node.ToString()))
            let mutable count = 1
            i <- 0
            for KeyValue(_, child) in o do
                if not inlined[i] then count <- count + addNodes arguments limit (relative + string KeyMark + names[i]) child
                i <- i + 1
            count
        | Json.Array items when items.Length > 0 ->
            arguments.Add(value relative)
            arguments.Add(value ("A" + items.Length.ToString(CultureInfo.InvariantCulture)))
            let mutable count = 1
            for i in 0 .. items.Length - 1 do
                count <- count + addNodes arguments limit (relative + string IndexMark + i.ToString(CultureInfo.InvariantCulture)) items[i]
            count
        | leaf ->
            arguments.Add(value relative)
            arguments.Add(leafValue leaf)
            1

    let private addPath (arguments: ScriptArguments) (path: SessionPath) =
        arguments.Add(RedisValue.op_Implicit (int64 path.Segments.Length))
        for segment in path.Segments do
            let struct (name, cost) = NodePath.segmentNameAndCost segment
            arguments.Add(value name)
            arguments.Add(RedisValue.op_Implicit cost)

    /// A commit's time to live in milliseconds; -1 (never expire) when it is too far away to matter.
    let ttlMilliseconds (idleTimeout: TimeSpan) : int64 =
        // 10^14 ms is over 3,000 years; Redis refuses expiry times that overflow.
        if idleTimeout.TotalMilliseconds >= 1e14 then -1L else max 0L (int64 (Math.Ceiling idleTimeout.TotalMilliseconds))

    /// What addChange adds for one step.
    let private argumentsOfStep (update: Update) (nullThenRemove: bool) =
        let path = 2 + 2 * update.Path.Segments.Length
        match update with
        | _ when nullThenRemove -> path
        | Update.Set(_, json)
        | Update.Append(_, json) -> path + 2 + 2 * NodePath.nodeCount json
        | Update.Remove p when p.IsRoot -> path + 4
        | Update.Remove _ -> path
        | Update.Increment _ -> path + 1

    /// <summary>How many values addChange adds for a change's steps, at most: a script's ARGV sized once, not grown value
    /// by value (a value whose leaves go inline adds fewer).</summary>
    let argumentCountOf (steps: List<ScriptStep>) : int =
        let mutable count = 5
        for step in steps do
            count <- count + argumentsOfStep step.Update step.NullThenRemove
        count

    /// A step's letter: upper case for the facts.
    let private opCode (facts: bool) (letter: string) = if facts then letter.ToUpperInvariant() else letter

    /// <summary>Appends a change to a script's ARGV, as Patch.lua reads it, from the change's steps; leaves go inline
    /// within <paramref name="inlineLimit"/> bytes (0: none).</summary>
    let addChange (arguments: ScriptArguments) (inlineLimit: int) (change: SessionChange) (steps: List<ScriptStep>) : unit =
        match change.Upgrade with
        | ValueSome upgrade ->
            arguments.Add(RedisValue.op_Implicit (int64 upgrade.From))
            arguments.Add(RedisValue.op_Implicit (int64 upgrade.To))
            arguments.Add(RedisValue.op_Implicit (int64 upgrade.Data.Updates.Length + 1L))
        | ValueNone ->
            arguments.Add(value "")
            arguments.Add(value "")
            arguments.Add(RedisValue.op_Implicit 0L)
        let mutable updates = 0L
        for step in steps do
            updates <- updates + (if step.NullThenRemove then 2L else 1L)
        arguments.Add(RedisValue.op_Implicit updates)
        arguments.Add(RedisValue.op_Implicit (int64 inlineLimit))
        // 's' sets the value at the path; 'a' appends it to the array there; upper case for the facts.
        let addValue (op: string) (path: SessionPath) (json: Json) =
            arguments.Add(value op)
            addPath arguments path
            let countAt = arguments.Count
            arguments.Add(RedisValue.Null)
            arguments.Add(RedisValue.op_Implicit (JsonSize.utf8Length json))
            let count = addNodes arguments inlineLimit "" json
            arguments[countAt] <- RedisValue.op_Implicit (int64 count)
        for step in steps do
            let facts = step.Facts
            match step.Update with
            // Both updates' numbers are the script's: it counts this step as two.
            | update when step.NullThenRemove ->
                arguments.Add(value (opCode facts "n"))
                addPath arguments update.Path
            | Update.Set(path, json) -> addValue (opCode facts "s") path json
            | Update.Append(path, json) -> addValue (opCode facts "a") path json
            // As Update.apply does: removing the root clears the tree.
            | Update.Remove path when path.IsRoot -> addValue (opCode facts "s") path Json.emptyObject
            // A remove of an array index is a conflict, which the script reports in its turn.
            | Update.Remove path ->
                arguments.Add(value (opCode facts "r"))
                addPath arguments path
            | Update.Increment(path, by) ->
                arguments.Add(value (opCode facts "i"))
                addPath arguments path
                arguments.Add(value by.Text)

    /// <summary>The commit script's ARGV (Commit.lua): the store's key prefix, the session id, whether the session must
    /// exist, its time to live, the size limit and the expiry refresh, then the change (its leaves inline within
    /// <paramref name="inlineLimit"/> bytes).</summary>
    let commitArguments
        (prefix: RedisValue)
        (id: string)
        (commit: CommitOptions)
        (refresh: RedisValue)
        (inlineLimit: int)
        (change: SessionChange)
        : RedisValue[] =
        let steps = ScriptSteps.ofChange change
        let arguments = ScriptArguments(6 + argumentCountOf steps)
        arguments.Add prefix
        arguments.Add(value id)
        arguments.Add(value (if commit.MustExist then "1" else "0"))
        arguments.Add(RedisValue.op_Implicit (ttlMilliseconds commit.IdleTimeout))
        arguments.Add(RedisValue.op_Implicit (int64 commit.MaxSizeBytes))
        arguments.Add refresh
        addChange arguments inlineLimit change steps
        arguments.ToArray()

    /// <summary>The conflict a script reported for the change's update number <paramref name="update"/> (from 1), with the message Sesame's own apply gives.</summary>
    let conflict (change: SessionChange) (update: int) (code: string) (depth: int) (info: string) : PathConflictException =
        let updates = ScriptSteps.foldUpdates (fun updates _ update -> update :: updates) [] change |> List.rev
        PathConflictReport.toException (List.item (update - 1) updates) code depth info

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

    /// The field name of the node a walk of the tree stands on: a buffer it appends a segment to on the way down and cuts
    /// back on the way up, so that finding a child's node makes no string (see buildTree).
    [<Sealed>]
    type private FieldPath(root: string) =
        let mutable chars: char[] = Array.zeroCreate (max 64 (2 * root.Length))
        let mutable length = root.Length
        do root.CopyTo(0, chars, 0, root.Length)

        member private _.Ensure(more: int) = if length + more > chars.Length then Array.Resize(&chars, max (2 * chars.Length) (length + more))

        /// The field name.
        member _.Span = ReadOnlySpan(chars, 0, length)

        member _.Length = length

        /// Appends a key segment (the key as escaped in field names).
        member this.AppendKey(name: ReadOnlySpan<char>) =
            this.Ensure(1 + name.Length)
            chars[length] <- KeyMark
            name.CopyTo(Span(chars, length + 1, name.Length))
            length <- length + 1 + name.Length

        /// Appends an index segment.
        member this.AppendIndex(index: int) =
            this.Ensure 12
            chars[length] <- IndexMark
            let mutable written = 0
            index.TryFormat(Span(chars, length + 1, 11), &written, ReadOnlySpan.Empty, CultureInfo.InvariantCulture) |> ignore
            length <- length + 1 + written

        /// Cuts the name back to its first `at` characters.
        member _.CutTo(at: int) = length <- at

    /// A leaf node's value: its JSON text, which must be a value with no members or items.
    let private leafOf (bytes: ReadOnlySpan<byte>) : Json =
        let leaf =
            try
                Json.parseUtf8 bytes
            with
            | :? Text.Json.JsonException
            | :? InvalidOperationException -> raise (InvalidLayout "a leaf is not JSON")
        match leaf with
        | Json.Array items when items.Length > 0 -> raise (InvalidLayout "a leaf holds a container")
        | Json.Object o when o.Count > 0 -> raise (InvalidLayout "a leaf holds a container")
        | _ -> leaf

    /// A leaf held inline in its object's node: its JSON text, as the node's characters. Not inlined into the walk,
    /// whose frame a tree Json.MaxDepth deep repeats at every level (see buildTree).
    [<MethodImpl(MethodImplOptions.NoInlining)>]
    let private inlineLeafOf (text: ReadOnlySpan<char>) : Json =
        if text.IsEmpty then raise (InvalidLayout "an inline leaf is empty")
        let buffer = ArrayPool<byte>.Shared.Rent(Encoding.UTF8.GetMaxByteCount text.Length)
        try
            let length = Encoding.UTF8.GetBytes(text, Span buffer)
            leafOf (ReadOnlySpan(buffer, 0, length))
        finally
            ArrayPool<byte>.Shared.Return buffer

    /// Where an object node's member entry (after its KeyMark) has its CostMark, and its InlineMark (-1 when the member
    /// is not held inline), checking the cost's digits between them. Apart from the walk for its frame's sake too.
    [<MethodImpl(MethodImplOptions.NoInlining)>]
    let private memberMarks (entry: ReadOnlySpan<char>) : struct (int * int) =
        let mark = entry.IndexOf CostMark
        if mark < 0 then raise (InvalidLayout "an object member is malformed")
        let inlineAt = entry.Slice(mark + 1).IndexOf InlineMark
        let digits = if inlineAt < 0 then entry.Slice(mark + 1) else entry.Slice(mark + 1, inlineAt)
        if digits.IsEmpty || digits.IndexOfAnyExceptInRange('0', '9') >= 0 then raise (InvalidLayout "an object member is malformed")
        struct (mark, (if inlineAt < 0 then -1 else mark + 1 + inlineAt))

    /// Builds the tree whose root is the field `root` from the nodes (field name to value), checking every
    /// node; counts the nodes it visits in `visited`. The nodes are found by the name of each as the walk makes it in
    /// one buffer (FieldPath), and an object node's members are read in place in its text.
    let private buildTree (reader: ValueReader) (nodes: Dictionary<string, RedisValue>) (root: string) (visited: int ref) : Json =
        // No node of a session Sesame writes lies deeper than Json.MaxDepth below its root: Update.validate refuses every
        // change whose path and value together nest deeper, and no change moves a node down. A deeper tree is refused
        // before the walk's recursion can exhaust a thread's stack (1 MB on Windows), which would end the process.
        let maxDepth = Json.MaxDepth
        let lookup = nodes.GetAlternateLookup<ReadOnlySpan<char>>()
        let field = FieldPath root
        let rec build (depth: int) : Json =
            if depth > maxDepth then raise (InvalidLayout "the tree is too deep")
            let mutable data = RedisValue.Null
            if not (lookup.TryGetValue(field.Span, &data)) then raise (InvalidLayout "a container names a node that is missing")
            visited.Value <- visited.Value + 1
            let length = reader.Fill data
            if length = 0 then raise (InvalidLayout "a node is empty")
            match char reader.First with
            | 'O' -> buildObject (reader.Decode length) depth
            | 'A' ->
                match Int32.TryParse(reader.Bytes(length).Slice 1, NumberStyles.None, CultureInfo.InvariantCulture) with
                | true, n when n > 0 ->
                    // Each item is a node of its own: a length past the nodes there are is refused before room is made.
                    if n > nodes.Count then raise (InvalidLayout "an array node has more items than the hash has nodes")
                    let items = ImmutableArray.CreateBuilder<Json>(n)
                    let at = field.Length
                    for i in 0 .. n - 1 do
                        field.AppendIndex i
                        items.Add(build (depth + 1))
                        field.CutTo at
                    Json.Array(items.MoveToImmutable())
                | _ -> raise (InvalidLayout "an array node is malformed")
            | _ -> leafOf (reader.Bytes length)
        // An object node: 'O', then for each member KeyMark, its key as escaped in field names, CostMark and its cost's
        // digits, and for a leaf held inline InlineMark and the leaf's JSON text.
        and buildObject (node: string) (depth: int) : Json =
            let text = node.AsSpan 1
            if text.IsEmpty || text[0] <> KeyMark then raise (InvalidLayout "an object node is malformed")
            let members = Array.zeroCreate<KeyValuePair<string, Json>>(MemoryExtensions.Count(text, KeyMark))
            // The keys so far, once the object is too wide to scan them: a repeated key is refused before its member is
            // built, so that a node naming one key many times costs no more than one naming it once.
            let keys = if members.Length > 8 then HashSet<string>(StringComparer.Ordinal) else null
            let at = field.Length
            let mutable rest = text.Slice 1
            for i in 0 .. members.Length - 1 do
                let next = rest.IndexOf KeyMark
                let entry = if next < 0 then rest else rest.Slice(0, next)
                let struct (mark, inlineAt) = memberMarks entry
                let name = entry.Slice(0, mark)
                let key = unescapeKey (String name)
                let repeated =
                    if isNull keys then
                        let mutable found = false
                        for j in 0 .. i - 1 do
                            if String.Equals(members[j].Key, key, StringComparison.Ordinal) then found <- true
                        found
                    else
                        not (keys.Add key)
                if repeated then raise (InvalidLayout "an object names a key twice")
                if inlineAt >= 0 then
                    members[i] <- KeyValuePair(key, inlineLeafOf (entry.Slice(inlineAt + 1)))
                else
                    field.AppendKey name
                    members[i] <- KeyValuePair(key, build (depth + 1))
                    field.CutTo at
                if next >= 0 then rest <- rest.Slice(next + 1)
            Json.Object(JsonObject.Create(ReadOnlySpan members))
        let tree = build 0
        match tree with
        | Json.Object _ -> tree
        | _ -> raise (InvalidLayout "a tree's root is not an object")

    /// <summary>Rebuilds a session from its hash's entries as HGETALL gives them, checking every node.</summary>
    /// <returns>The data tree and the facts tree, or why the hash is not a valid session.</returns>
    let rebuildHash (entries: HashEntry[]) : Result<struct (Json * Json * int64), string> =
        use reader = new ValueReader()
        try
            let nodes = Dictionary<string, RedisValue>(entries.Length, StringComparer.Ordinal)
            let mutable version = null
            let mutable size = null
            for entry in entries do
                let field = reader.Text entry.Name
                let data = entry.Value
                match field with
                | VersionField -> version <- reader.Text data
                | SizeField -> size <- reader.Text data
                | _ when field.StartsWith '#' -> ()
                | _ -> nodes[field] <- data
            if version <> PlainFormatVersion && version <> InlineFormatVersion then raise (InvalidLayout "the hash has no Sesame format version 2 or 3")
            let size =
                match Int64.TryParse(size, NumberStyles.None, CultureInfo.InvariantCulture) with
                | true, size -> size
                | _ -> raise (InvalidLayout "the hash has no valid size")
            let visited = ref 0
            let data = buildTree reader nodes "" visited
            let facts = buildTree reader nodes FactsRoot visited
            if visited.Value <> nodes.Count then raise (InvalidLayout "the hash holds fields that are not part of the trees")
            Ok(struct (data, facts, size))
        with InvalidLayout reason ->
            Error reason

    /// <summary>Rebuilds a facts tree from <paramref name="count"/> of its fields and values, from
    /// <paramref name="start"/> in a script's reply (field, value, ...); no fields is the empty object.</summary>
    let rebuildFacts (items: RedisResult[]) (start: int) (count: int) : Result<Json, string> =
        if count = 0 then
            Ok Json.emptyObject
        else
            use reader = new ValueReader()
            try
                let nodes = Dictionary<string, RedisValue>(count / 2, StringComparer.Ordinal)
                for i in start..2 .. start + count - 1 do
                    nodes[reader.Text(RedisResult.op_Explicit items[i])] <- RedisResult.op_Explicit items[i + 1]
                let visited = ref 0
                let facts = buildTree reader nodes FactsRoot visited
                if visited.Value <> nodes.Count then raise (InvalidLayout "the facts hold fields that are not part of their tree")
                Ok facts
            with InvalidLayout reason ->
                Error reason
