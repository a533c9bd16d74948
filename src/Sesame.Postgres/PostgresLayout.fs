namespace Sesame.Postgres

open System
open System.Collections.Generic
open System.Collections.Immutable
open System.Globalization
open System.Text
open Sesame

/// A stored session that cannot be read back: says why.
exception internal InvalidLayout of reason: string

/// <summary>A change turned into the arguments of the commit and move functions (see Schema.sql).</summary>
[<Sealed>]
type internal ChangeArguments
    (
        updates: Update[],
        ops: string[],
        segCounts: int[],
        segs: string[],
        costs: int[],
        nodeCounts: int[],
        paths: string[],
        values: string[],
        bytes: int[],
        sizes: int64[],
        numbers: string[],
        upgrade: ShapeUpgrade voption
    ) =
    /// The updates in the order the database applies them (a conflict names one by its position).
    member _.Updates = updates
    member _.Ops = ops
    member _.SegCounts = segCounts
    member _.Segs = segs
    member _.Costs = costs
    member _.NodeCounts = nodeCounts
    member _.Paths = paths
    member _.Values = values
    member _.Bytes = bytes
    member _.Sizes = sizes
    member _.Numbers = numbers
    member _.UpgradeFrom =
        match upgrade with
        | ValueSome u -> Nullable u.From
        | ValueNone -> Nullable()
    member _.UpgradeTo =
        match upgrade with
        | ValueSome u -> Nullable u.To
        | ValueNone -> Nullable()

/// <summary>
/// The stored form of a session: one row per node of its JSON trees (the layout is described at the top of
/// Schema.sql). This module turns changes into the database functions' arguments and node rows back into trees.
/// </summary>
[<RequireQualifiedAccess>]
module internal PostgresLayout =

    /// Starts a key segment in a path (and an entry in an object node).
    [<Literal>]
    let KeyMark = '\u0001'

    /// Starts an index segment in a path.
    [<Literal>]
    let IndexMark = '\u0002'

    /// The path of the root of the facts kept beside the tree (the tree's root is the empty path).
    [<Literal>]
    let MetaRoot = "\u0004"

    /// <summary>
    /// A key as it appears in paths: unchanged, except that control characters (the marks among them), the
    /// backslash and unpaired surrogates become <c>\xxxx</c> (four hex digits). So it holds no mark, no NUL
    /// (which PostgreSQL text cannot hold) and is valid UTF-8 for any .NET string.
    /// </summary>
    let escapeKey (key: string) : string =
        let plain (c: char) = c >= ' ' && c <> '\\' && not (Char.IsSurrogate c)
        let mutable simple = true
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

    /// The inverse of escapeKey.
    let unescapeKey (text: string) : string =
        if text.IndexOf '\\' < 0 then
            text
        else
            let key = StringBuilder(text.Length)
            let mutable i = 0
            while i < text.Length do
                if text[i] = '\\' then
                    if i + 4 >= text.Length then raise (InvalidLayout "a key has an invalid escape")
                    match Int32.TryParse(text.AsSpan(i + 1, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture) with
                    | true, code -> key.Append(char code) |> ignore
                    | _ -> raise (InvalidLayout "a key has an invalid escape")
                    i <- i + 5
                else
                    key.Append text[i] |> ignore
                    i <- i + 1
            key.ToString()

    /// The bytes a member with this key adds to compact JSON besides its value: "key": — counted as
    /// Sesame's own writer writes it.
    let keyCost (key: string) : int =
        let mutable plain = true
        for c in key do
            // Printable ASCII other than the quote and the backslash is written as it is.
            if c < ' ' || c > '~' || c = '"' || c = '\\' then plain <- false
        if plain then
            key.Length + 3
        else
            // {"key":null} is the key's escaped text plus 9 bytes, of which "": is 3.
            int (JsonSize.utf8Length (Json.object [ key, Json.Null ]) - 6L)

    let private segmentField (segment: Segment) =
        match segment with
        | Segment.Key key -> string KeyMark + escapeKey key
        | Segment.Index index -> string IndexMark + index.ToString(CultureInfo.InvariantCulture)

    let private segmentCost (segment: Segment) =
        match segment with
        | Segment.Key key -> keyCost key
        | Segment.Index _ -> 0

    /// The exact compact JSON text of a leaf and its UTF-8 length.
    let private leafText (json: Json) : struct (string * int) =
        match json with
        | Json.Null -> struct ("null", 4)
        | Json.Bool true -> struct ("true", 4)
        | Json.Bool false -> struct ("false", 5)
        | Json.Number n -> struct (n.Text, n.Text.Length)
        | other ->
            let text = Json.serialize other
            struct (text, Encoding.UTF8.GetByteCount text)

    /// Accumulates the arguments of one change.
    [<Sealed>]
    type private Builder() =
        let updates = ResizeArray<Update>()
        let ops = ResizeArray<string>()
        let segCounts = ResizeArray<int>()
        let segs = ResizeArray<string>()
        let costs = ResizeArray<int>()
        let nodeCounts = ResizeArray<int>()
        let paths = ResizeArray<string>()
        let values = ResizeArray<string>()
        let bytes = ResizeArray<int>()
        let sizes = ResizeArray<int64>()
        let numbers = ResizeArray<string>()

        /// Adds the nodes of a value below `relative`; gives (node count, the value's JSON size).
        let rec addNodes (relative: string) (json: Json) : struct (int * int64) =
            match json with
            | Json.Object o when o.Count > 0 ->
                let node = StringBuilder("O")
                let mutable own = 2L + int64 (o.Count - 1)
                for KeyValue(key, _) in o do
                    node.Append(KeyMark).Append(escapeKey key) |> ignore
                    own <- own + int64 (keyCost key)
                paths.Add relative
                values.Add(node.ToString())
                bytes.Add(int own)
                let mutable count = 1
                let mutable size = own
                for KeyValue(key, child) in o do
                    let struct (n, s) = addNodes (relative + string KeyMark + escapeKey key) child
                    count <- count + n
                    size <- size + s
                struct (count, size)
            | Json.Array items when items.Length > 0 ->
                let own = int64 items.Length + 1L
                paths.Add relative
                values.Add("A" + items.Length.ToString(CultureInfo.InvariantCulture))
                bytes.Add(int own)
                let mutable count = 1
                let mutable size = own
                for i in 0 .. items.Length - 1 do
                    let struct (n, s) = addNodes (relative + string IndexMark + i.ToString(CultureInfo.InvariantCulture)) items[i]
                    count <- count + n
                    size <- size + s
                struct (count, size)
            | leaf ->
                let struct (text, length) = leafText leaf
                paths.Add relative
                values.Add text
                bytes.Add length
                struct (1, int64 length)

        member _.Add(tree: char, update: Update) =
            let path = update.Path
            let op, value =
                match update with
                | Update.Set(_, value) -> 's', ValueSome value
                | Update.Append(_, value) -> 'a', ValueSome value
                // As Update.apply does: removing the root clears the tree.
                | Update.Remove p when p.IsRoot -> 's', ValueSome Json.emptyObject
                | Update.Remove _ -> 'r', ValueNone
                | Update.Increment _ -> 'i', ValueNone
            updates.Add update
            ops.Add(String([| tree; op |]))
            segCounts.Add path.Segments.Length
            for segment in path.Segments do
                segs.Add(segmentField segment)
                costs.Add(segmentCost segment)
            match value with
            | ValueSome json ->
                let struct (count, size) = addNodes "" json
                nodeCounts.Add count
                sizes.Add size
            | ValueNone ->
                nodeCounts.Add 0
                sizes.Add 0L
            numbers.Add(
                match update with
                | Update.Increment(_, by) -> by.Text
                | _ -> null
            )

        member _.Build(upgrade: ShapeUpgrade voption) =
            ChangeArguments(
                updates.ToArray(),
                ops.ToArray(),
                segCounts.ToArray(),
                segs.ToArray(),
                costs.ToArray(),
                nodeCounts.ToArray(),
                paths.ToArray(),
                values.ToArray(),
                bytes.ToArray(),
                sizes.ToArray(),
                numbers.ToArray(),
                upgrade
            )

    /// <summary>
    /// The arguments for a change: the upgrade's tree updates ('D') and its setting of the shape ('M'), applied only
    /// when the stored shape is the upgrade's <c>From</c>; then the tree's ('d') and the facts' ('m') updates.
    /// </summary>
    let argumentsOf (change: SessionChange) : ChangeArguments =
        let builder = Builder()
        match change.Upgrade with
        | ValueSome upgrade ->
            for update in upgrade.Data.Updates do
                builder.Add('D', update)
            builder.Add('M', Update.Set(SessionPath.ofKeys [ SessionMeta.Shape ], Json.int64 (int64 upgrade.To)))
        | ValueNone -> ()
        for update in change.Data.Updates do
            builder.Add('d', update)
        for update in change.Meta.Updates do
            builder.Add('m', update)
        builder.Build change.Upgrade

    /// <summary>Which user a move's change binds the session to, as far as the change alone tells.</summary>
    [<RequireQualifiedAccess>]
    type UserBinding =
        /// The change does not touch the user: the session keeps the one it has.
        | Keep
        /// The change names this user.
        | Bind of string
        /// The change leaves no user.
        | Unbind

    /// What the facts' changes do to the user binding (the database checks it against the result).
    let bindingOf (change: SessionChange) : UserBinding =
        let mutable binding = UserBinding.Keep
        for update in change.Meta.Updates do
            match update.Path.Segments, update with
            | [], Update.Set(_, facts) ->
                binding <-
                    (match SessionMeta.userOf facts with
                     | Some user -> UserBinding.Bind user
                     | None -> UserBinding.Unbind)
            | [], _ -> binding <- UserBinding.Unbind
            | [ Segment.Key SessionMeta.User ], Update.Set(_, Json.String user) -> binding <- UserBinding.Bind user
            | Segment.Key SessionMeta.User :: _, _ -> binding <- UserBinding.Unbind
            | _ -> ()
        binding

    /// <summary>The conflict the database reported (update is 1-based), with the message Sesame's own apply gives.</summary>
    let conflict (updates: Update[]) (update: int) (code: string) (depth: int) (info: string) : PathConflictException =
        PathConflictReport.toException updates[update - 1] code depth info

    /// A leaf's JSON text as a value; the common leaves without the parser.
    let private parseLeaf (text: string) : Json =
        match text with
        | "null" -> Json.Null
        | "true" -> Json.Bool true
        | "false" -> Json.Bool false
        | _ when text.Length > 0 && (text[0] = '-' || Char.IsAsciiDigit text[0]) ->
            match JsonNumber.TryParse text with
            | true, n -> Json.Number n
            | _ -> raise (InvalidLayout "a leaf is not JSON")
        | _ ->
            let leaf =
                try
                    Json.parse text
                with
                | :? Text.Json.JsonException
                | :? ArgumentException
                | :? InvalidOperationException -> raise (InvalidLayout "a leaf is not JSON")
            match leaf with
            | Json.Array items when items.Length > 0 -> raise (InvalidLayout "a leaf holds a container")
            | Json.Object o when o.Count > 0 -> raise (InvalidLayout "a leaf holds a container")
            | _ -> leaf

    /// The tree rooted at `root` among the nodes; counts the nodes it takes.
    let private build (nodes: Dictionary<string, string>) (root: string) (visited: byref<int>) : Json =
        // A path of at most MaxDepth segments holding a value at most MaxDepth deep.
        let maxDepth = 2 * Json.MaxDepth + 1
        let count = ref 0
        let rec go (field: string) (depth: int) : Json =
            if depth > maxDepth then raise (InvalidLayout "the tree is too deep")
            let value =
                match nodes.TryGetValue field with
                | true, value -> value
                | _ -> raise (InvalidLayout "a container names a node that is missing")
            count.Value <- count.Value + 1
            if value.Length = 0 then raise (InvalidLayout "a node is empty")
            match value[0] with
            | 'O' ->
                if value.Length < 2 || value[1] <> KeyMark then raise (InvalidLayout "an object node is malformed")
                let names = value.Substring(2).Split KeyMark
                let seen = HashSet<string>(StringComparer.Ordinal)
                let members = [|
                    for name in names do
                        if not (seen.Add name) then raise (InvalidLayout "an object names a key twice")
                        unescapeKey name, go (field + string KeyMark + name) (depth + 1)
                |]
                Json.Object(JsonObject.OfSeq members)
            | 'A' ->
                match Int32.TryParse(value.AsSpan 1, NumberStyles.None, CultureInfo.InvariantCulture) with
                | true, n when n > 0 ->
                    let items = ImmutableArray.CreateBuilder<Json>(n)
                    for i in 0 .. n - 1 do
                        items.Add(go (field + string IndexMark + i.ToString(CultureInfo.InvariantCulture)) (depth + 1))
                    Json.Array(items.MoveToImmutable())
                | _ -> raise (InvalidLayout "an array node is malformed")
            | _ -> parseLeaf value
        let tree = go root 0
        visited <- visited + count.Value
        match tree with
        | Json.Object _ -> tree
        | _ -> raise (InvalidLayout "a root is not an object")

    let private nodesOf (paths: string[]) (values: string[]) =
        if isNull paths || isNull values || paths.Length <> values.Length then raise (InvalidLayout "the node rows are malformed")
        let nodes = Dictionary<string, string>(paths.Length, StringComparer.Ordinal)
        for i in 0 .. paths.Length - 1 do
            if isNull paths[i] || isNull values[i] || not (nodes.TryAdd(paths[i], values[i])) then raise (InvalidLayout "the node rows are malformed")
        nodes

    /// <summary>Rebuilds a session from all its node rows, checking every node.</summary>
    let rebuild (paths: string[]) (values: string[]) : Result<StoredSession, string> =
        try
            let nodes = nodesOf paths values
            let mutable visited = 0
            let data = build nodes "" &visited
            let meta = build nodes MetaRoot &visited
            if visited <> nodes.Count then raise (InvalidLayout "the session holds nodes that are not part of its trees")
            Ok(StoredSession(data, meta))
        with InvalidLayout reason ->
            Error reason

    /// <summary>The facts of a session from their node rows (an empty object when there are none).</summary>
    let rebuildMeta (paths: string[]) (values: string[]) : Json =
        if isNull paths || paths.Length = 0 then
            Json.emptyObject
        else
            try
                let nodes = nodesOf paths values
                let mutable visited = 0
                build nodes MetaRoot &visited
            with InvalidLayout _ ->
                Json.emptyObject
