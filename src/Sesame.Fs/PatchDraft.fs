namespace Sesame

open System
open System.Collections.Generic
open System.Collections.Immutable

/// An object of a draft: mutable, in insertion order, copied once from the tree when an update first changes it.
/// Its values are Json (untouched parts of the tree, shared) or drafts (DraftObject, DraftArray).
[<Sealed>]
type internal DraftObject(properties: ResizeArray<KeyValuePair<string, obj>>) =
    /// Below this width a scan beats a dictionary (as in JsonObject).
    static let indexFrom = 8
    let mutable index: Dictionary<string, int> = null

    member _.Count = properties.Count

    member _.IndexOf(key: string) : int =
        if isNull index && properties.Count > indexFrom then
            index <- Dictionary<string, int>(properties.Count * 2, StringComparer.Ordinal)
            for i in 0 .. properties.Count - 1 do
                index[properties[i].Key] <- i
        if isNull index then
            let mutable i = 0
            while i < properties.Count && not (String.Equals(properties[i].Key, key, StringComparison.Ordinal)) do
                i <- i + 1
            if i = properties.Count then -1 else i
        else
            match index.TryGetValue key with
            | true, i -> i
            | _ -> -1

    member this.Find(key: string) : obj =
        match this.IndexOf key with
        | -1 -> null
        | i -> properties[i].Value

    /// Sets the key in place where it is, else at the end (as JsonObject.Add).
    member this.Set(key: string, value: obj) =
        match this.IndexOf key with
        | -1 ->
            if not (isNull index) then index[key] <- properties.Count
            properties.Add(KeyValuePair(key, value))
        | i -> properties[i] <- KeyValuePair(key, value)

    /// Removes the key; the keys after it move up one place (as JsonObject.Remove).
    member this.Remove(key: string) =
        match this.IndexOf key with
        | -1 -> ()
        | i ->
            properties.RemoveAt i
            // Rare in a patch; rebuilt on the next lookup of a wide object.
            index <- null

    member _.Properties = properties

    static member Of(o: JsonObject) =
        let properties = ResizeArray<KeyValuePair<string, obj>>(o.Count + 2)
        for KeyValue(k, v) in o.Properties do
            properties.Add(KeyValuePair(k, box v))
        DraftObject properties

    static member One(key: string, value: obj) =
        let properties = ResizeArray<KeyValuePair<string, obj>>(2)
        properties.Add(KeyValuePair(key, value))
        DraftObject properties

/// An array of a draft (see DraftObject).
[<Sealed>]
type internal DraftArray(items: ResizeArray<obj>) =
    member _.Items = items

    static member Of(items: ImmutableArray<Json>) =
        let copy = ResizeArray<obj>(items.Length + 2)
        for item in items do
            copy.Add(box item)
        DraftArray copy

/// <summary>
/// Applies a patch of many updates in one pass over a mutable draft of the tree: each object or array an update
/// changes is copied once, later updates below it change the copy in place, and the draft becomes an immutable tree
/// once at the end. Applying update by update copies the whole path of every update instead (a request of 100 updates
/// to a 1 KB session spent most of its apply copying the same few objects). Same results and same errors as
/// Update.apply one by one: each step mirrors SessionPath.modify, and a failing update changes nothing before it throws.
/// </summary>
[<RequireQualifiedAccess>]
module internal PatchDraft =

    let rec private freeze (node: obj) : Json =
        match node with
        | :? Json as json -> json
        | :? DraftObject as d ->
            let properties = Array.zeroCreate d.Count
            for i in 0 .. d.Count - 1 do
                let (KeyValue(k, v)) = d.Properties[i]
                properties[i] <- KeyValuePair(k, freeze v)
            Json.Object(JsonObject properties)
        | :? DraftArray as d ->
            let items = ImmutableArray.CreateBuilder<Json>(d.Items.Count)
            for item in d.Items do
                items.Add(freeze item)
            Json.Array(items.MoveToImmutable())
        | _ -> invalidOp "A draft holds only Json and drafts."

    /// How a conflict names a draft node, as SessionPath.describe names the tree it stands for.
    let private describe (node: obj) =
        match node with
        | :? Json as json -> SessionPath.describe json
        | :? DraftArray as d -> $"is an array of {d.Items.Count} items"
        | _ -> "is an object"

    /// The new value at the end of an update's path: the update's own change to what is there (null when missing;
    /// null back removes it).
    let private change (update: Update) (path: SessionPath) (current: obj) : obj =
        match update with
        | Update.Set(_, value) -> box value
        | Update.Remove _ -> null
        | Update.Increment(_, by) ->
            match current with
            | null -> box (Update.addTo path by ValueNone)
            | :? Json as json -> box (Update.addTo path by (ValueSome json))
            // Not a number: addTo raises the conflict, worded for what is there.
            | draft -> box (Update.addTo path by (ValueSome(freeze draft)))
        | Update.Append(_, value) ->
            match current with
            | :? DraftArray as d ->
                d.Items.Add(box value)
                box d
            | :? Json as json ->
                match json with
                | Json.Array items ->
                    let d = DraftArray.Of items
                    d.Items.Add(box value)
                    box d
                | _ -> box (Update.pushTo path value (ValueSome json))
            | null -> box (Update.pushTo path value ValueNone)
            | draft -> box (Update.pushTo path value (ValueSome(freeze draft)))

    /// SessionPath.modify over the draft: the node's new value (the same draft when changed in place; null for none).
    let rec private go (update: Update) (path: SessionPath) (depth: int) (segments: Segment list) (node: obj) : obj =
        match segments with
        | [] -> change update path node
        | Segment.Key key :: rest ->
            match node with
            | null ->
                match go update path (depth + 1) rest null with
                | null -> null
                | child -> box (DraftObject.One(key, child))
            | :? DraftObject as d ->
                let before = d.Find key
                match go update path (depth + 1) rest before with
                | null -> if not (isNull before) then d.Remove key
                | after when obj.ReferenceEquals(after, before) -> ()
                | after -> d.Set(key, after)
                box d
            | :? Json as json ->
                match json with
                | Json.Object o ->
                    let before =
                        match o.Find key with
                        | ValueSome v -> box v
                        | ValueNone -> null
                    match go update path (depth + 1) rest before with
                    | null when isNull before -> node
                    | null ->
                        let d = DraftObject.Of o
                        d.Remove key
                        box d
                    | after when obj.ReferenceEquals(after, before) -> node
                    | after ->
                        let d = DraftObject.Of o
                        d.Set(key, after)
                        box d
                | _ -> SessionPath.conflict path depth $"{describe node}, not an object with key \"{key}\""
            | _ -> SessionPath.conflict path depth $"{describe node}, not an object with key \"{key}\""
        | Segment.Index index :: rest ->
            let inArray (count: int) (before: obj) (draft: unit -> DraftArray) =
                if index < count then
                    match go update path (depth + 1) rest before with
                    | null ->
                        let d = draft ()
                        d.Items.RemoveAt index
                        box d
                    | after when obj.ReferenceEquals(after, before) -> node
                    | after ->
                        let d = draft ()
                        d.Items[index] <- after
                        box d
                else
                    match go update path (depth + 1) rest null with
                    | null -> node
                    | _ when index > count -> SessionPath.conflict path depth $"{describe node}, so index {index} is past the end"
                    | after ->
                        let d = draft ()
                        d.Items.Add after
                        box d
            match node with
            | null ->
                match go update path (depth + 1) rest null with
                | null -> null
                | _ when index > 0 -> SessionPath.conflict path depth $"is missing, so index {index} is past the end"
                | child -> box (DraftArray(ResizeArray [ child ]))
            | :? DraftArray as d -> inArray d.Items.Count (if index < d.Items.Count then d.Items[index] else null) (fun () -> d)
            | :? Json as json ->
                match json with
                | Json.Array items -> inArray items.Length (if index < items.Length then box items[index] else null) (fun () -> DraftArray.Of items)
                | _ -> SessionPath.conflict path depth $"{describe node}, not an array"
            | _ -> SessionPath.conflict path depth $"{describe node}, not an array"

    /// One update on the draft's root (as Update.apply on a tree): the new root.
    let private step (root: obj) (update: Update) : obj =
        match update with
        | Update.Remove path when path.IsRoot -> box Json.emptyObject
        | Update.Remove path ->
            match List.tryLast path.Segments with
            | Some(Segment.Index _) -> Update.apply update (freeze root) |> box // raises: removes take object keys only
            | _ ->
                // A remove across a value of the wrong kind removes nothing (SessionPath.remove); the draft is
                // untouched when go raises, as nothing changes on the way down.
                try
                    match go update path 0 path.Segments root with
                    | null -> root
                    | after -> after
                with :? PathConflictException ->
                    root
        | _ ->
            match go update update.Path 0 update.Path.Segments root with
            | null -> root
            | after -> after

    /// <summary>One update on a draft kept across a request's updates (SessionHandle's), as Update.apply on the tree it
    /// stands for: the new root. Raises as Update.apply does, and then the draft stands for the same tree.</summary>
    let record (root: obj) (update: Update) : obj = step root update

    /// The tree a draft stands for.
    let toJson (root: obj) : Json = freeze root

    /// The node at the end of a path of a draft (Json or a draft node), or null: SessionPath.tryGet over the draft.
    let rec private nodeAt (segments: Segment list) (node: obj) : obj =
        match segments with
        | [] -> node
        | Segment.Key key :: rest ->
            match node with
            | :? DraftObject as d ->
                match d.Find key with
                | null -> null
                | child -> nodeAt rest child
            | :? Json as json ->
                match json with
                | Json.Object o ->
                    match o.Find key with
                    | ValueSome child -> nodeAt rest (box child)
                    | ValueNone -> null
                | _ -> null
            | _ -> null
        | Segment.Index i :: rest ->
            match node with
            | :? DraftArray as d -> if i < d.Items.Count then nodeAt rest d.Items[i] else null
            | :? Json as json ->
                match json with
                | Json.Array items when i < items.Length -> nodeAt rest (box items[i])
                | _ -> null
            | _ -> null

    /// What a path of a draft holds, as SessionPath.tryGet on the tree, when that is a tree already (a value no update
    /// changed, or nothing); ValueNone when it is a draft node, which only freezing makes a tree.
    let tryFindTree (path: SessionPath) (root: obj) : Json option voption =
        match nodeAt path.Segments root with
        | null -> ValueSome None
        | :? Json as json -> ValueSome(Some json)
        | _ -> ValueNone

    /// The kind of value a path of a draft holds, Undefined for none (without making it a tree).
    let kindAt (path: SessionPath) (root: obj) : Text.Json.JsonValueKind =
        match nodeAt path.Segments root with
        | null -> Text.Json.JsonValueKind.Undefined
        | :? DraftObject -> Text.Json.JsonValueKind.Object
        | :? DraftArray -> Text.Json.JsonValueKind.Array
        | :? Json as json ->
            match json with
            | Json.Object _ -> Text.Json.JsonValueKind.Object
            | Json.Array _ -> Text.Json.JsonValueKind.Array
            | Json.String _ -> Text.Json.JsonValueKind.String
            | Json.Number _ -> Text.Json.JsonValueKind.Number
            | Json.Bool true -> Text.Json.JsonValueKind.True
            | Json.Bool false -> Text.Json.JsonValueKind.False
            | Json.Null -> Text.Json.JsonValueKind.Null
        | _ -> Text.Json.JsonValueKind.Undefined

    /// The length of the array at a path of a draft, when an array is there (without making it a tree).
    let arrayLength (path: SessionPath) (root: obj) : int voption =
        match nodeAt path.Segments root with
        | :? DraftArray as d -> ValueSome d.Items.Count
        | :? Json as json ->
            match json with
            | Json.Array items -> ValueSome items.Length
            | _ -> ValueNone
        | _ -> ValueNone

    /// Applies the updates in order, as Update.apply one by one would.
    let apply (updates: Update list) (json: Json) : Json = updates |> List.fold step (box json) |> freeze

    /// Applies the updates in order, as Update.apply one by one would (a request's updates as recorded).
    let applyAll (updates: Update[]) (json: Json) : Json = updates |> Array.fold step (box json) |> freeze
