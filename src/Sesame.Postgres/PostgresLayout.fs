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
    let KeyMark = NodePath.KeyMark

    /// Starts an index segment in a path.
    [<Literal>]
    let IndexMark = NodePath.IndexMark

    /// The path of the root of the facts kept beside the tree (the tree's root is the empty path).
    [<Literal>]
    let MetaRoot = "\u0004"

    /// The key a path's segment was escaped from (NodePath.escapeKey).
    let unescapeKey (text: string) : string =
        match NodePath.tryUnescapeKey text with
        | Some key -> key
        | None -> raise (InvalidLayout "a key has an invalid escape")

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

    /// Each operation's text, by its tree's letter and its own (one string each, not one per update).
    let private opTexts =
        let texts = Dictionary<int, string>()
        for tree in "DMdm" do
            for op in "sari" do
                texts[(int tree <<< 8) ||| int op] <- String([| tree; op |])
        texts

    /// Fills the arguments of one change, each array made once at its exact length: <c>count</c> updates, whose paths
    /// have <c>segmentCount</c> segments and whose values have <c>nodeCount</c> nodes (NodePath.nodeCount).
    [<Sealed>]
    type private Builder(count: int, segmentCount: int, nodeCount: int) =
        let updates = Array.zeroCreate<Update> count
        let ops = Array.zeroCreate<string> count
        let segCounts = Array.zeroCreate<int> count
        let segs = Array.zeroCreate<string> segmentCount
        let costs = Array.zeroCreate<int> segmentCount
        let nodeCounts = Array.zeroCreate<int> count
        let paths = Array.zeroCreate<string> nodeCount
        let values = Array.zeroCreate<string> nodeCount
        let bytes = Array.zeroCreate<int> nodeCount
        let sizes = Array.zeroCreate<int64> count
        let numbers = Array.zeroCreate<string> count
        // How many updates, segments and nodes are filled.
        let mutable u = 0
        let mutable s = 0
        let mutable n = 0

        let addNode (path: string) (value: string) (length: int) =
            paths[n] <- path
            values[n] <- value
            bytes[n] <- length
            n <- n + 1

        /// Adds the nodes of a value below `relative`; gives (node count, the value's JSON size).
        let rec addNodes (relative: string) (json: Json) : struct (int * int64) =
            match json with
            | Json.Object o when o.Count > 0 ->
                let node = StringBuilder("O")
                let mutable own = 2L + int64 (o.Count - 1)
                for KeyValue(key, _) in o do
                    node.Append(KeyMark).Append(NodePath.escapeKey key) |> ignore
                    own <- own + NodePath.keyCost key
                addNode relative (node.ToString()) (int own)
                let mutable count = 1
                let mutable size = own
                for KeyValue(key, child) in o do
                    let struct (childNodes, childSize) = addNodes (relative + string KeyMark + NodePath.escapeKey key) child
                    count <- count + childNodes
                    size <- size + childSize
                struct (count, size)
            | Json.Array items when items.Length > 0 ->
                let own = int64 items.Length + 1L
                addNode relative ("A" + items.Length.ToString(CultureInfo.InvariantCulture)) (int own)
                let mutable count = 1
                let mutable size = own
                for i in 0 .. items.Length - 1 do
                    let struct (childNodes, childSize) = addNodes (relative + string IndexMark + i.ToString(CultureInfo.InvariantCulture)) items[i]
                    count <- count + childNodes
                    size <- size + childSize
                struct (count, size)
            | leaf ->
                let struct (text, length) = leafText leaf
                addNode relative text length
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
            updates[u] <- update
            ops[u] <- opTexts[(int tree <<< 8) ||| int op]
            let mutable segments = 0
            for segment in path.Segments do
                let struct (name, cost) = NodePath.segmentNameAndCost segment
                segs[s] <- name
                costs[s] <- int cost
                s <- s + 1
                segments <- segments + 1
            segCounts[u] <- segments
            match value with
            | ValueSome json ->
                let struct (count, size) = addNodes "" json
                nodeCounts[u] <- count
                sizes[u] <- size
            | ValueNone -> ()
            match update with
            | Update.Increment(_, by) -> numbers[u] <- by.Text
            | _ -> ()
            u <- u + 1

        member _.Build(upgrade: ShapeUpgrade voption) =
            if u <> count || s <> segmentCount || n <> nodeCount then
                invalidOp $"The change's arguments were sized for {count} updates, {segmentCount} segments and {nodeCount} nodes, and filled {u}, {s} and {n}."
            ChangeArguments(updates, ops, segCounts, segs, costs, nodeCounts, paths, values, bytes, sizes, numbers, upgrade)

    /// The nodes an update adds (its value's, NodePath.nodeCount; a removal of the root sets {}, one node).
    let private nodesAdded (update: Update) =
        match update with
        | Update.Set(_, value)
        | Update.Append(_, value) -> NodePath.nodeCount value
        | Update.Remove p when p.IsRoot -> 1
        | Update.Remove _
        | Update.Increment _ -> 0

    /// Adds to a count of updates, their paths' segments and their nodes (what the Builder is sized for).
    let rec private measure (updates: Update list) (struct (count, segments, nodes)) : struct (int * int * int) =
        match updates with
        | [] -> struct (count, segments, nodes)
        | update :: rest -> measure rest (struct (count + 1, segments + update.Path.Segments.Length, nodes + nodesAdded update))

    /// <summary>
    /// The arguments for a change: the upgrade's tree updates ('D') and its setting of the shape ('M'), applied only
    /// when the stored shape is the upgrade's <c>From</c>; then the tree's ('d') and the facts' ('m') updates.
    /// </summary>
    let argumentsOf (change: SessionChange) : ChangeArguments =
        // The upgrade's tree updates and its setting of the shape.
        let struct (upgradeUpdates, shape) =
            match change.Upgrade with
            | ValueSome upgrade -> struct (upgrade.Data.Updates, ValueSome(Update.Set(SessionPath.ofKeys [ SessionMeta.Shape ], Json.int64 (int64 upgrade.To))))
            | ValueNone -> struct ([], ValueNone)
        // The arrays are sized in a first walk of the updates, so each is made once.
        let struct (count, segments, nodes) =
            measure change.Meta.Updates (measure change.Data.Updates (measure upgradeUpdates (if shape.IsSome then struct (1, 1, 1) else struct (0, 0, 0))))
        let builder = Builder(count, segments, nodes)
        for update in upgradeUpdates do
            builder.Add('D', update)
        shape |> ValueOption.iter (fun update -> builder.Add('M', update))
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
        // No node of a session Sesame writes lies deeper than Json.MaxDepth below its root: Update.validate refuses every
        // change whose path and value together nest deeper, and no change moves a node down. A deeper tree is refused
        // before the walk's recursion can exhaust a thread's stack (1 MB on Windows), which would end the process.
        let maxDepth = Json.MaxDepth
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
                    // Each item is a node of its own: a length past the nodes there are is refused before room is made.
                    if n > nodes.Count then raise (InvalidLayout "an array node has more items than the session has nodes")
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
