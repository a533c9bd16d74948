namespace Sesame

open System
open System.Collections.Generic
open System.Runtime.InteropServices

/// What the fold keeps for one path (see Patch.foldChecked for the rules).
[<NoEquality; NoComparison; RequireQualifiedAccess>]
type internal Pending =
    | Put of Json
    /// Removed; true when the containers above it must still be created (it superseded updates that created them).
    | Drop of createsParents: bool
    | Add of JsonNumber
    /// Values appended, the newest first (so one more is added in constant time); they apply oldest first.
    | Push of newestFirst: Json list
    /// Removed, then set: the key leaves its place and is added at the end of its object, as applying one by one does.
    | Replace of Json

    /// Whether applying it creates the containers above its path.
    member this.IsCreator =
        match this with
        | Drop false -> false
        | _ -> true

    /// A removal that created nothing.
    member this.IsBareDrop =
        match this with
        | Drop false -> true
        | _ -> false

    /// A removal kept as set null then remove: it superseded updates that created the containers above it.
    member this.IsCreatingDrop =
        match this with
        | Drop true -> true
        | _ -> false

/// The two removals, made once: the fold keeps one for most removes, and for every update with nothing above it.
module internal Drops =
    /// A removal that created nothing.
    let bare = Pending.Drop false
    /// A removal after updates that created the containers above it.
    let creating = Pending.Drop true

/// Objects of one kind a pool keeps (at most `bound`), the first ones taken since it was last emptied.
[<Sealed>]
type internal Kept<'T>(bound: int, make: unit -> 'T) =
    let items = ResizeArray<'T>()
    let mutable taken = 0

    /// One that was kept, or a new one (kept too while there are fewer than the bound).
    member _.Take() : 'T =
        if taken < items.Count then
            taken <- taken + 1
            items[taken - 1]
        else
            let made = make ()
            if items.Count < bound then
                items.Add made
                taken <- taken + 1
            made

    /// Empties each one taken, and takes them again from the first.
    member _.Empty(empty: 'T -> unit) =
        for i in 0 .. taken - 1 do
            empty items[i]
        taken <- 0

/// One update the fold keeps: its path, what it does, and its place in the patch. A place is never shifted: an update
/// that supersedes others may take the place of one of them, so places are reused, and the patch is the live entries
/// in place order.
[<Sealed; AllowNullLiteral>]
type internal FoldEntry() =
    let mutable path = Unchecked.defaultof<SessionPath>
    let mutable node: FoldNode = null
    let mutable place = 0

    /// Makes this entry, new or emptied (see Empty), the one for a path and place.
    member this.Become(entryPath: SessionPath, entryNode: FoldNode, entryPlace: int, pending: Pending) =
        path <- entryPath
        node <- entryNode
        place <- entryPlace
        this.Pending <- pending

    /// Empties this entry as it was new: no path, node, update or neighbour held.
    member this.Empty() =
        this.Become(Unchecked.defaultof<SessionPath>, null, 0, Unchecked.defaultof<Pending>)
        this.Live <- true
        this.Previous <- null

    member _.Path = path
    member _.Node = node
    member _.Place = place
    member val Pending = Unchecked.defaultof<Pending> with get, set
    /// False once superseded or merged away.
    member val Live = true with get, set
    /// The entry before this one at its node, of its kind (append or not): each node chains its entries, the latest
    /// first, instead of holding lists (most nodes hold one entry or none).
    member val Previous: FoldEntry = null with get, set

/// A path in the trie of kept entries: the live entries at exactly this path, and its children. Its segment is held
/// as a key (null for an array index) and an index, so a lookup compares strings or integers, not union cases.
and [<Sealed; AllowNullLiteral>] internal FoldNode() =
    /// Children are looked up by a scan of their chain while few, then through a dictionary.
    static let indexFrom = 8

    let mutable parent: FoldNode = null
    let mutable key: string = null
    let mutable index = 0
    let mutable depth = 0

    /// The children, chained through NextSibling (no list of their own: most nodes have one child or none).
    let mutable firstChild: FoldNode = null
    let mutable childCount = 0
    let mutable byKey: Dictionary<string, FoldNode> = null
    let mutable byIndex: Dictionary<int, FoldNode> = null

    /// The child at a key or (key null) an index, by a scan (while the children are few).
    let scan (childKey: string) (childIndex: int) : FoldNode =
        // Sibling keys often differ only at their end (c0, c1; p2, p6), so keys of one length are told apart by their
        // last character before they are compared whole.
        let sameKey (other: string) =
            not (isNull other)
            && other.Length = childKey.Length
            && (other.Length = 0 || other[other.Length - 1] = childKey[childKey.Length - 1])
            && String.Equals(childKey, other)
        let mutable c = firstChild
        while not (isNull c) && not (if isNull childKey then isNull c.Key && c.Index = childIndex else sameKey c.Key) do
            c <- c.NextSibling
        c

    /// Indexes a child by its key or index, making the dictionary it needs on first use.
    let indexChild (child: FoldNode) =
        if isNull child.Key then
            if isNull byIndex then byIndex <- Dictionary<int, FoldNode>()
            byIndex.Add(child.Index, child)
        else
            if isNull byKey then byKey <- Dictionary<string, FoldNode>(childCount * 2, StringComparer.Ordinal)
            byKey.Add(child.Key, child)

    /// Makes this node, new or emptied (see Empty), the one at a key (not null) or, when the key is null, at an array
    /// index below its parent; a root has no parent and depth 0.
    member _.Become(nodeParent: FoldNode, nodeKey: string, nodeIndex: int, nodeDepth: int) =
        parent <- nodeParent
        key <- nodeKey
        index <- nodeIndex
        depth <- nodeDepth

    /// Empties this node as it was new: no parent, key, child or entry held.
    member this.Empty() =
        this.Become(null, null, 0, 0)
        firstChild <- null
        childCount <- 0
        byKey <- null
        byIndex <- null
        this.NextSibling <- null
        this.LastOther <- null
        this.LastAppend <- null
        this.BareDrops <- 0
        this.AddedBelow <- null
        this.AddedBelowChecked <- 0

    member _.Parent = parent
    /// The object key this node is at, or null for an array index.
    member _.Key = key
    /// The array index this node is at (when Key is null).
    member _.Index = index
    member _.Depth = depth
    /// The next child of this node's parent (the chain's order is not the children's order in the tree).
    member val NextSibling: FoldNode = null with get, set
    /// The latest live entry here that is not an append (the rest follow through Previous, in place order).
    member val LastOther: FoldEntry = null with get, set
    /// The latest live append here (kept apart: the search for what is above a path passes over appends).
    member val LastAppend: FoldEntry = null with get, set
    /// How many live bare removals are at or below this node (so the sweep of them skips subtrees without any).
    member val BareDrops = 0 with get, set
    /// While appends are here: the entries added below this node since the latest append here was added.
    member val AddedBelow: ResizeArray<FoldEntry> = null with get, set
    /// The entries of AddedBelow before this one have been found irrelevant (superseded, or placed before the append).
    member val AddedBelowChecked = 0 with get, set

    /// The first child, the rest following through NextSibling; null when there is none.
    member _.FirstChild: FoldNode = firstChild

    /// The child at a key (not null) or, when the key is null, at an array index; null if there is none.
    member _.Child(childKey: string, childIndex: int) : FoldNode =
        if childCount <= indexFrom then
            scan childKey childIndex
        elif isNull childKey then
            if isNull byIndex then
                null
            else
                match byIndex.TryGetValue childIndex with
                | true, child -> child
                | _ -> null
        elif isNull byKey then
            null
        else
            match byKey.TryGetValue childKey with
            | true, child -> child
            | _ -> null

    member this.Child(segment: Segment) : FoldNode =
        match segment with
        | Segment.Key k -> this.Child(k, 0)
        | Segment.Index i -> this.Child(null, i)

    /// Adds a child this node does not have yet, at a segment, from the pool.
    member this.AddChild(segment: Segment, pool: FoldPool) : FoldNode =
        let child =
            match segment with
            | Segment.Key k -> pool.Node(this, k, 0, depth + 1)
            | Segment.Index i -> pool.Node(this, null, i, depth + 1)
        child.NextSibling <- firstChild
        firstChild <- child
        childCount <- childCount + 1
        if childCount = indexFrom + 1 then
            // From now on the children are looked up through dictionaries: index the ones so far.
            let mutable c = firstChild
            while not (isNull c) do
                indexChild c
                c <- c.NextSibling
        elif childCount > indexFrom then
            indexChild child
        child

    member this.GetOrAddChild(segment: Segment, pool: FoldPool) : FoldNode =
        match this.Child segment with
        | null -> this.AddChild(segment, pool)
        | child -> child

    /// Drops every child (their entries are gone).
    member _.ClearChildren() =
        firstChild <- null
        childCount <- 0
        byKey <- null
        byIndex <- null

    /// The latest live entry here, appends included.
    member this.Latest: FoldEntry =
        let other = this.LastOther
        let append = this.LastAppend
        if isNull append then other
        elif isNull other || append.Place > other.Place then append
        else other

/// <summary>
/// The nodes and entries of a thread's folds, kept for its next fold: a fold of n updates makes about n of each, which
/// were most of what it allocated, and it keeps none of them once its updates are out. A fold takes the ones the last
/// fold left, and gives them back emptied, holding no path or value, when it ends: so each one taken is as new, and
/// only its place in the trie is set.
/// At most 256 of each are kept (about 43 KB a thread; a fold of 100 updates to a ~1 KB session takes about 50 of
/// each), so one large fold does not hold its memory for the thread's life.
/// </summary>
and [<Sealed>] internal FoldPool() =
    static let kept = 256

    [<ThreadStatic; DefaultValue>]
    static val mutable private current: FoldPool

    let nodes = Kept<FoldNode>(kept, FoldNode)
    let entries = Kept<FoldEntry>(kept, FoldEntry)
    let mutable places = ResizeArray<FoldEntry>()

    /// This thread's pool, for one fold until Return; a new one while it is in use (a fold is never inside another,
    /// but nothing should break if one were).
    static member Take() : FoldPool =
        let mutable pool = FoldPool.current
        if isNull (box pool) then
            pool <- FoldPool()
            FoldPool.current <- pool
        if pool.InUse then pool <- FoldPool()
        pool.InUse <- true
        pool

    /// Taken for a fold, and not returned yet.
    member val InUse = false with get, set

    /// The list of entries by place, empty.
    member _.Places = places

    /// A fresh node.
    member _.Node(parent: FoldNode, key: string, index: int, depth: int) : FoldNode =
        let node = nodes.Take()
        node.Become(parent, key, index, depth)
        node

    /// A fresh entry.
    member _.Entry(path: SessionPath, node: FoldNode, place: int, pending: Pending) : FoldEntry =
        let entry = entries.Take()
        entry.Become(path, node, place, pending)
        entry

    /// Ends the fold: the nodes and entries it took are emptied (no session's path or value stays in the thread's
    /// pool) and kept for the next fold.
    member this.Return() =
        nodes.Empty(fun node -> node.Empty())
        entries.Empty(fun entry -> entry.Empty())
        if places.Capacity > kept then places <- ResizeArray<FoldEntry>() else places.Clear()
        this.InUse <- false

/// <summary>
/// The entries a fold keeps, indexed by path in a trie, so that each of the fold's questions (the latest entry at or
/// above a path, the entries at or below one, whether anything below an array came after an append to it) costs the
/// path's depth, or the entries it removes, instead of a scan of every entry: a request of n updates folds in about
/// n times its paths' depth.
/// </summary>
and [<Sealed>] internal FoldIndex(pool: FoldPool) =
    let root = pool.Node(null, null, 0, 0)
    /// The entries by place; null where an entry was removed (the gaps are skipped when the patch is read).
    let places = pool.Places

    let vacate (entry: FoldEntry) =
        entry.Live <- false
        places[entry.Place] <- null

    let rec ancestorsAdd (node: FoldNode) (drops: int) =
        if not (isNull node) then
            node.BareDrops <- node.BareDrops + drops
            ancestorsAdd node.Parent drops

    /// Removes the entries at or below a node; gives the earliest place among those that created something, or -1.
    let rec clear (node: FoldNode) : int =
        let mutable firstCreator = -1
        let mutable entry = node.LastOther
        while not (isNull entry) do
            vacate entry
            if entry.Pending.IsCreator then firstCreator <- entry.Place
            entry <- entry.Previous
        // Appends create their array, and come in place order too.
        entry <- node.LastAppend
        while not (isNull entry) do
            vacate entry
            if firstCreator < 0 || entry.Place < firstCreator then firstCreator <- entry.Place
            entry <- entry.Previous
        node.LastOther <- null
        node.LastAppend <- null
        let mutable child = node.FirstChild
        while not (isNull child) do
            let below = clear child
            if below >= 0 && (firstCreator < 0 || below < firstCreator) then firstCreator <- below
            child <- child.NextSibling
        firstCreator

    /// Removes the bare removals at or below a node; gives how many.
    let rec sweep (node: FoldNode) : int =
        let mutable removed = 0
        // Unlink them from the node's chain, keeping the rest in order.
        let mutable later: FoldEntry = null
        let mutable entry = node.LastOther
        while not (isNull entry) do
            let previous = entry.Previous
            if entry.Pending.IsBareDrop then
                vacate entry
                removed <- removed + 1
                if isNull later then node.LastOther <- previous else later.Previous <- previous
            else
                later <- entry
            entry <- previous
        removed <- removed + sweepChildren node
        node.BareDrops <- node.BareDrops - removed
        removed

    and sweepChildren (node: FoldNode) : int =
        let mutable removed = 0
        let mutable child = node.FirstChild
        while not (isNull child) do
            if child.BareDrops > 0 then removed <- removed + sweep child
            child <- child.NextSibling
        removed

    /// The node of a path, added if missing.
    member _.NodeOf(path: SessionPath) : FoldNode =
        let mutable node = root
        for segment in path.Segments do
            node <- node.GetOrAddChild(segment, pool)
        node

    /// <summary>
    /// The latest live entry at or above <paramref name="path"/>, or null. Appends to an array above the path are passed
    /// over: an append adds an item at the end and changes no item that already exists. <paramref name="reached"/> is
    /// the deepest node of the path that exists (see NodeFrom).
    /// </summary>
    member _.LatestAbove(path: SessionPath, [<Out>] reached: byref<FoldNode>) : FoldEntry =
        let mutable latest: FoldEntry = null
        let mutable node = root
        let mutable rest = path.Segments
        while not (isNull node) do
            reached <- node
            match rest with
            | segment :: tail ->
                let candidate = node.LastOther
                if not (isNull candidate) && (isNull latest || candidate.Place > latest.Place) then latest <- candidate
                node <- node.Child segment
                rest <- tail
            | [] ->
                let candidate = node.Latest
                if not (isNull candidate) && (isNull latest || candidate.Place > latest.Place) then latest <- candidate
                node <- null
        latest

    /// <summary>
    /// The node of a path, added with the nodes above it that are missing, from the node LatestAbove reached for that
    /// path, with nothing added or cleared since: the path's deepest node that exists, so every node below it on the
    /// path is new and is added without a lookup.
    /// </summary>
    member _.NodeFrom(reached: FoldNode, path: SessionPath) : FoldNode =
        let mutable node = reached
        let mutable rest = List.skip reached.Depth path.Segments
        while not (List.isEmpty rest) do
            node <- node.AddChild(List.head rest, pool)
            rest <- List.tail rest
        node

    /// The place after every entry so far: where an update that happens now goes.
    member _.End = places.Count

    /// <summary>Adds an entry at <paramref name="place"/>: the end, or a place ClearAt gave for the node it just emptied.</summary>
    member _.Add(node: FoldNode, path: SessionPath, pending: Pending, place: int) : unit =
        let entry = pool.Entry(path, node, place, pending)
        if place = places.Count then places.Add entry else places[place] <- entry
        // A node's chains stay in place order: an entry goes at the end, or to a node that ClearAt just emptied.
        match pending with
        | Pending.Push _ ->
            // Appends only ever go at the end, so what was added below before this one came before it.
            entry.Previous <- node.LastAppend
            node.LastAppend <- entry
            if isNull node.AddedBelow then node.AddedBelow <- ResizeArray<FoldEntry>() else node.AddedBelow.Clear()
            node.AddedBelowChecked <- 0
        | _ ->
            entry.Previous <- node.LastOther
            node.LastOther <- entry
        if pending.IsBareDrop then ancestorsAdd node 1
        let mutable above = node.Parent
        while not (isNull above) do
            if not (isNull above.LastAppend) then above.AddedBelow.Add entry
            above <- above.Parent

    /// <summary>Adds an entry at the end.</summary>
    member this.Append(node: FoldNode, path: SessionPath, pending: Pending) = this.Add(node, path, pending, places.Count)

    /// <summary>Removes one entry that is not an append (a removal that a later update merges into).</summary>
    member _.Remove(entry: FoldEntry) : unit =
        let node = entry.Node
        if obj.ReferenceEquals(node.LastOther, entry) then
            node.LastOther <- entry.Previous
        else
            let mutable later = node.LastOther
            while not (obj.ReferenceEquals(later.Previous, entry)) do
                later <- later.Previous
            later.Previous <- entry.Previous
        vacate entry
        if entry.Pending.IsBareDrop then ancestorsAdd node -1

    /// <summary>
    /// Removes every entry at or below <paramref name="node"/>. Gives the place of the earliest removed entry that
    /// created something (-1 if none: an entry may then take it, see Add), what the latest entry at the node itself did,
    /// and, when the node's path was removed and then set again (a removal that created the containers above it, then a
    /// set: see Patch.foldChecked), the place of that set, else -1.
    /// </summary>
    member _.ClearAt(node: FoldNode) : struct (int * Pending voption * int) =
        let latest = node.Latest
        let other = node.LastOther
        let setAgainAt = if not (isNull other) && not (isNull other.Previous) && other.Previous.Pending.IsCreatingDrop then other.Place else -1
        let firstCreator = clear node
        // The nodes below are dropped whole, so a later clear above does not walk them again.
        node.ClearChildren()
        node.AddedBelow <- null
        ancestorsAdd node.Parent -node.BareDrops
        node.BareDrops <- 0
        struct (firstCreator, (if isNull latest then ValueNone else ValueSome latest.Pending), setAgainAt)

    /// <summary>
    /// The one entry at <paramref name="node"/> when it is all the node and its subtree hold (no other entry, no
    /// append, no child): an update that supersedes it can then change it where it stands, as ClearAt then Add at its
    /// place would, without them. Null otherwise.
    /// </summary>
    member _.Sole(node: FoldNode) : FoldEntry =
        let entry = node.LastOther
        if not (isNull entry) && isNull entry.Previous && isNull node.LastAppend && isNull node.FirstChild then entry else null

    /// <summary>Changes what a sole entry (see Sole) does, where it stands.</summary>
    member _.Change(entry: FoldEntry, pending: Pending) : unit =
        let wasBare = entry.Pending.IsBareDrop
        entry.Pending <- pending
        match wasBare, pending.IsBareDrop with
        | false, true -> ancestorsAdd entry.Node 1
        | true, false -> ancestorsAdd entry.Node -1
        | _ -> ()

    /// <summary>Removes the bare removals strictly below <paramref name="node"/>.</summary>
    member _.RemoveBareDropsBelow(node: FoldNode) : unit =
        let mutable here = 0
        let mutable entry = node.LastOther
        while not (isNull entry) do
            if entry.Pending.IsBareDrop then here <- here + 1
            entry <- entry.Previous
        if node.BareDrops > here then
            let removed = sweepChildren node
            ancestorsAdd node -removed

    /// <summary>
    /// Whether an entry strictly below <paramref name="append"/>'s path comes after it in the patch
    /// (<paramref name="append"/> is the latest entry at its node).
    /// </summary>
    member _.HasLaterBelow(append: FoldEntry) : bool =
        let node = append.Node
        let added = node.AddedBelow
        // Each entry is passed over once: one superseded, or placed before the append, stays irrelevant, as the
        // node's latest append is only ever replaced by a later one.
        while node.AddedBelowChecked < added.Count
              && (let entry = added[node.AddedBelowChecked]
                  not entry.Live || entry.Place < append.Place) do
            node.AddedBelowChecked <- node.AddedBelowChecked + 1
        node.AddedBelowChecked < added.Count

    /// The entries by place, null where one was removed: the live ones, in place order, are the patch.
    member _.Places: ResizeArray<FoldEntry> = places
