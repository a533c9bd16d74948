namespace Sesame

open System
open System.Buffers
open System.Text.Json

/// <summary>
/// A request's updates folded into one normalized change: what a store commits in one write.
/// Applying a patch gives the same tree as applying its updates one by one.
/// </summary>
type Patch = private {
    updates: Update list
} with

    /// The normalized updates, in the order they apply.
    member this.Updates = this.updates

    /// Whether the patch changes nothing.
    member this.IsEmpty = List.isEmpty this.updates

    override this.ToString() = this.updates |> List.map string |> String.concat "; "

/// <summary>Folding updates into a patch, applying it, and its JSON form.</summary>
/// <remarks>
/// <para>The fold: a later set or remove at a path supersedes earlier updates at or below it;
/// a later update below an earlier set is folded into the set's value; increments of one path
/// add up; a set then a remove of one path leaves a remove.</para>
/// <para>The one case where two updates of related paths stay: when a remove supersedes updates
/// that created the containers above it, it is kept as <c>set null</c> then <c>remove</c>, because
/// those containers must still be created, exactly as applying the updates one by one would.</para>
/// </remarks>
[<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module Patch =

    /// The patch that changes nothing.
    let empty = { updates = [] }

    /// Folds updates that were checked with Update.validate when they were recorded.
    let internal foldChecked (updates: seq<Update>) : Patch =
        match updates with
        // One update is already normalized (a removal of the root aside, which becomes setting {}):
        // most requests change one thing, so they skip the fold's bookkeeping.
        | :? (Update[]) as single when
            single.Length = 1
            && not (
                match single[0] with
                | Update.Remove p -> p.IsRoot
                | _ -> false
            )
              ->
              { updates = [ single[0] ] }
        | _ ->
            let updates =
                match updates with
                | :? (Update[]) as all -> all
                | _ -> Seq.toArray updates
            // The kept entries, by path and in patch order: each question below costs a path's depth, not a scan of
            // every entry, so n updates fold in about n times their depth.
            let index = FoldIndex(updates.Length)
            let append (path: SessionPath) pending = index.Append(index.NodeOf path, path, pending)

            // The update cannot be merged: keep it, in order. Where applying one by one fails, applying the patch
            // then fails the same way.
            let keepInOrder (update: Update) =
                append
                    update.Path
                    (match update with
                     | Update.Set(_, v) -> Pending.Put v
                     | Update.Remove _ -> Drops.bare
                     | Update.Increment(_, by) -> Pending.Add by
                     | Update.Append(_, v) -> Pending.Push [ v ])

            // The replacement takes the place of the earliest superseded update that created something: an update
            // after it may rely on that (an array item it appended), and moving the creation before an update it
            // relies on would fail. With no creator it happens now, so it goes last.
            let supersedeAll (node: FoldNode) (path: SessionPath) (isSet: Json voption) =
                let struct (at, exact, setAgainAt) = index.ClearAt node
                let creates = at >= 0
                let at = if creates then at else index.End
                let place pending = index.Add(node, path, pending, at)
                match isSet, exact with
                // Removed after it created its containers: they are still created where they were (set null,
                // remove), and the key comes back at the end of its object now, as applying one by one does.
                | ValueSome value, ValueSome(Pending.Drop true) ->
                    place Drops.creating
                    index.Append(node, path, Pending.Put value)
                // Removed that way and set again since: the key came back where it was set again, and this set
                // changes its value there.
                | ValueSome value, _ when setAgainAt >= 0 ->
                    place Drops.creating
                    index.Add(node, path, Pending.Put value, setAgainAt)
                // Removed earlier in the request, having created nothing: removed and set again, now.
                | ValueSome value, ValueSome(Pending.Drop false) -> index.Append(node, path, Pending.Replace value)
                // Removed and set again earlier: still so, where that happened.
                | ValueSome value, ValueSome(Pending.Replace _) -> place (Pending.Replace value)
                | ValueSome value, _ -> place (Pending.Put value)
                // A top-level key's container is the root, which always exists: nothing to keep created.
                | ValueNone, _ -> place (if creates && path.Segments.Length > 1 then Drops.creating else Drops.bare)

            let supersede (path: SessionPath) (reached: FoldNode) (isSet: Json voption) =
                let node = index.NodeFrom(reached, path)
                let sole = index.Sole node
                // Most often the path holds one update that created something, and nothing below it: the replacement
                // takes its place, so that update is changed where it stands (supersedeAll's rules, for that case).
                match isSet, (if isNull sole then Drops.bare else sole.Pending) with
                | ValueSome value, Pending.Replace _ -> index.Change(sole, Pending.Replace value)
                | ValueSome value, (Pending.Put _ | Pending.Add _) -> index.Change(sole, Pending.Put value)
                | ValueNone, (Pending.Put _ | Pending.Add _ | Pending.Replace _) ->
                    index.Change(sole, (if path.Segments.Length > 1 then Drops.creating else Drops.bare))
                | _ -> supersedeAll node path isSet

            let mergeInto (update: Update) (above: FoldEntry) (node: Json voption) =
                match
                    (try
                        Ok(Update.applyBelow update (SessionPath.relativeTo above.Path update.Path) node)
                     with :? PathConflictException as e ->
                         Error e)
                with
                | Ok(ValueSome value) ->
                    match above.Pending with
                    | Pending.Drop false ->
                        // The remove created nothing where it stands, so what this creates is created now: it goes last.
                        index.Remove above
                        index.Append(above.Node, above.Path, Pending.Replace value)
                    // The remove keeps creating the containers above where it stands; the key comes back now, at the end.
                    | Pending.Drop true -> index.Append(above.Node, above.Path, Pending.Put value)
                    | Pending.Replace _ -> above.Pending <- Pending.Replace value
                    | _ -> above.Pending <- Pending.Put value
                | Ok ValueNone -> ()
                | Error _ -> keepInOrder update

            for update in updates do
                let update =
                    match update with
                    | Update.Remove path when path.IsRoot -> Update.Set(path, Json.emptyObject)
                    | other -> other
                let path = update.Path
                let mergesAtItsPath =
                    match update with
                    | Update.Increment _
                    | Update.Append _ -> true
                    | _ -> false
                // The latest entry at or above this path. A normalized fold has at most one, except that appends
                // stay apart when updates below their array come between them. Appends to an array above this path
                // are passed over (see FoldIndex.LatestAbove).
                let mutable reached = null
                let above = index.LatestAbove(path, &reached)
                let atPath = not (isNull above) && above.Node.Depth = path.Segments.Length
                let isBelow = not (isNull above) && (not atPath || mergesAtItsPath)
                let abovePending = if isNull above then Drops.bare else above.Pending
                match update, abovePending with
                | _, Pending.Put value when isBelow -> mergeInto update above (ValueSome value)
                | _, Pending.Replace value when isBelow -> mergeInto update above (ValueSome value)
                | _, Pending.Drop _ when isBelow -> mergeInto update above ValueNone
                // Below a number there is nothing to remove (and if the increment fails, so does applying one by one).
                | Update.Remove _, Pending.Add _ when isBelow -> ()
                | Update.Increment(_, by), Pending.Add total when atPath ->
                    match
                        (try
                            ValueSome(JsonNumber.Add(total, by))
                         with :? OverflowException ->
                             ValueNone)
                    with
                    | ValueSome sum -> above.Pending <- Pending.Add sum
                    | ValueNone -> keepInOrder update
                | Update.Append(_, value), Pending.Push values when atPath ->
                    // Appends add up only while nothing below the array came after them: setting index n of n items
                    // also appends, so moving a later append before it would change which item lands where.
                    if index.HasLaterBelow above then keepInOrder update else above.Pending <- Pending.Push(value :: values)
                // Appending to or below a number fails, as applying one by one does: it stays, in order.
                | Update.Append _, Pending.Add _ when isBelow -> keepInOrder update
                | Update.Append _, _ -> keepInOrder update
                | Update.Increment(_, by), _ ->
                    // An earlier remove below this path found nothing: the increment succeeds only on a number or on nothing.
                    let node = index.NodeFrom(reached, path)
                    index.RemoveBareDropsBelow node
                    index.Append(node, path, Pending.Add by)
                | Update.Set(_, value), _ -> supersede path reached (ValueSome value)
                | Update.Remove _, _ -> supersede path reached ValueNone

            // Built from the last place back, so each update is consed onto the ones after it.
            let mutable updates = []
            let places = index.Places
            for place = places.Count - 1 downto 0 do
                match places[place] with
                | null -> ()
                | entry ->
                    let path = entry.Path
                    match entry.Pending with
                    | Pending.Put value -> updates <- Update.Set(path, value) :: updates
                    | Pending.Add by -> updates <- Update.Increment(path, by) :: updates
                    | Pending.Push newestFirst ->
                        for value in newestFirst do
                            updates <- Update.Append(path, value) :: updates
                    | Pending.Drop false -> updates <- Update.Remove path :: updates
                    | Pending.Drop true -> updates <- Update.Set(path, Json.Null) :: Update.Remove path :: updates
                    | Pending.Replace value -> updates <- Update.Remove path :: Update.Set(path, value) :: updates
            { updates = updates }

    /// <summary>Folds a request's ordered updates into one normalized patch.</summary>
    /// <remarks>Applying the patch gives the same tree as applying the updates one by one, to the same text
    /// (key order included).</remarks>
    /// <exception cref="System.ArgumentException">An update would make the session nest deeper than
    /// <see cref="F:Sesame.JsonModule.MaxDepth"/>, or holds a lone UTF-16 surrogate (see <c>Update.validate</c>).</exception>
    let fold (updates: seq<Update>) : Patch =
        let updates = Seq.toArray updates
        for update in updates do
            Update.validate update
        foldChecked updates

    /// <summary>Applies a patch to a tree.</summary>
    /// <exception cref="T:Sesame.PathConflictException">An update crosses a value of the wrong kind; the tree is left as it was.</exception>
    let apply (patch: Patch) (json: Json) : Json =
        match patch.updates with
        | []
        | [ _ ]
        | [ _; _ ] -> List.fold (fun tree update -> Update.apply update tree) json patch.updates
        // Past two updates, copying each changed object once (PatchDraft) beats copying every update's path.
        | many -> PatchDraft.apply many json

    /// <summary>Applies a patch, or gives the conflict.</summary>
    let tryApply (patch: Patch) (json: Json) : Result<Json, PathConflictException> =
        try
            Ok(apply patch json)
        with :? PathConflictException as e ->
            Error e

    let private writePath (writer: Utf8JsonWriter) (path: SessionPath) =
        writer.WriteStartArray()
        for segment in path.Segments do
            match segment with
            | Segment.Key key -> writer.WriteStringValue key
            | Segment.Index i -> writer.WriteNumberValue i
        writer.WriteEndArray()

    /// <summary>
    /// Writes the patch as compact JSON: an array of <c>["set", path, value]</c>,
    /// <c>["remove", path]</c>, <c>["increment", path, number]</c> and <c>["append", path, value]</c>, each path an array of
    /// keys (strings) and indexes (numbers).
    /// </summary>
    let writeTo (writer: Utf8JsonWriter) (patch: Patch) =
        writer.WriteStartArray()
        for update in patch.Updates do
            writer.WriteStartArray()
            match update with
            | Update.Set(path, value) ->
                writer.WriteStringValue "set"
                writePath writer path
                Json.writeTo writer value
            | Update.Remove path ->
                writer.WriteStringValue "remove"
                writePath writer path
            | Update.Increment(path, by) ->
                writer.WriteStringValue "increment"
                writePath writer path
                writer.WriteRawValue(by.Text, skipInputValidation = true)
            | Update.Append(path, value) ->
                writer.WriteStringValue "append"
                writePath writer path
                Json.writeTo writer value
            writer.WriteEndArray()
        writer.WriteEndArray()

    /// The levels a patch's JSON puts around each value: the array of operations and the operation's array.
    let private wrappingLevels = 2

    /// <summary>The compact UTF-8 JSON of a patch.</summary>
    /// <exception cref="System.InvalidOperationException">A value nests deeper than <see cref="F:Sesame.JsonModule.MaxDepth"/>, so the patch could not be read back.</exception>
    let toUtf8 (patch: Patch) : byte[] =
        let buffer = ArrayBufferWriter<byte>(128)
        using
            (new Utf8JsonWriter(
                buffer,
                JsonWriterOptions(
                    Encoder = Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
                    MaxDepth = Json.MaxDepth + wrappingLevels,
                    SkipValidation = true
                )
            ))
            (fun writer ->
                writeTo writer patch
                writer.Flush())
        buffer.WrittenSpan.ToArray()

    /// <summary>The compact JSON text of a patch.</summary>
    /// <exception cref="System.InvalidOperationException">A value nests deeper than <see cref="F:Sesame.JsonModule.MaxDepth"/>, so the patch could not be read back.</exception>
    let serialize (patch: Patch) = Text.Encoding.UTF8.GetString(toUtf8 patch)

    /// <summary>Reads a patch from its JSON form.</summary>
    /// <exception cref="System.Text.Json.JsonException">The JSON is not a patch; the message says why.</exception>
    let ofJson (json: Json) : Patch =
        let bad (why: string) = raise (JsonException $"Not a Sesame patch: {why}.")
        let path (json: Json) =
            match json with
            | Json.Array segments ->
                segments
                |> Seq.map (fun segment ->
                    match segment with
                    | Json.String key -> Segment.Key key
                    | Json.Number n ->
                        match n.Int64Value with
                        | ValueSome i when i >= 0L && i <= int64 Int32.MaxValue -> Segment.Index(int i)
                        | _ -> bad $"{n} is not an array index"
                    | _ -> bad "a path segment is neither a key nor an index")
                |> fun segments ->
                    try
                        SessionPath.ofSegments segments
                    with :? ArgumentException as e ->
                        bad e.Message
            | _ -> bad "a path is not an array"
        match json with
        | Json.Array operations ->
            let updates = [
                for operation in operations do
                    match operation with
                    | Json.Array op when op.Length = 3 && op[0] = Json.String "set" -> Update.Set(path op[1], op[2])
                    | Json.Array op when op.Length = 2 && op[0] = Json.String "remove" -> Update.Remove(path op[1])
                    | Json.Array op when op.Length = 3 && op[0] = Json.String "append" -> Update.Append(path op[1], op[2])
                    | Json.Array op when op.Length = 3 && op[0] = Json.String "increment" ->
                        match op[2] with
                        | Json.Number by -> Update.Increment(path op[1], by)
                        | _ -> bad "an increment is not a number"
                    | other -> bad $"unknown operation {Json.serialize other}"
            ]
            { updates = updates }
        | _ -> bad "not an array"

    /// <summary>Reads a patch from its UTF-8 JSON (as written by <see cref="M:Sesame.PatchModule.toUtf8(Sesame.Patch)"/>).</summary>
    /// <remarks>Its values may nest as deep as <see cref="F:Sesame.JsonModule.MaxDepth"/>: the two levels of the patch's own arrays are allowed for.</remarks>
    /// <exception cref="System.Text.Json.JsonException">The JSON is not a patch, or a value nests deeper than <see cref="F:Sesame.JsonModule.MaxDepth"/>.</exception>
    let parseUtf8 (utf8: ReadOnlySpan<byte>) : Patch = ofJson (Json.parseUtf8Wrapped wrappingLevels utf8)

    /// <summary>Parses a patch from its JSON text.</summary>
    /// <exception cref="System.Text.Json.JsonException">The text is not a patch, or a value nests deeper than <see cref="F:Sesame.JsonModule.MaxDepth"/>.</exception>
    let parse (text: string) =
        if isNull text then nullArg "text"
        parseUtf8 (ReadOnlySpan(Text.Encoding.UTF8.GetBytes text))
