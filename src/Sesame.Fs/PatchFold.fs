namespace Sesame

open System

/// <summary>
/// The fold itself: a request's updates, checked when they were recorded, normalized into the fewest that apply to the
/// same tree (the rules are Patch's). A Patch runs it the first time its updates are asked for.
/// </summary>
module internal PatchFold =

    /// The fold (see normalize), with the index it keeps its entries in: by path and in patch order, so each
    /// question below costs a path's depth, not a scan of every entry, and n updates fold in about n times their depth.
    let private foldInto (index: FoldIndex) (updates: Update[]) : Update list =
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
            | ValueNone, _ -> place (if creates && path.Depth > 1 then Drops.creating else Drops.bare)

        let supersede (path: SessionPath) (depth: int) (reached: FoldNode) (isSet: Json voption) =
            let node = index.NodeFrom(reached, path)
            let sole = index.Sole node
            // Most often the path holds one update that created something, and nothing below it: the replacement
            // takes its place, so that update is changed where it stands (supersedeAll's rules, for that case).
            match isSet, (if isNull sole then Drops.bare else sole.Pending) with
            | ValueSome value, Pending.Replace _ -> index.Change(sole, Pending.Replace value)
            | ValueSome value, (Pending.Put _ | Pending.Add _) -> index.Change(sole, Pending.Put value)
            | ValueNone, (Pending.Put _ | Pending.Add _ | Pending.Replace _) -> index.Change(sole, (if depth > 1 then Drops.creating else Drops.bare))
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
            let depth = path.Depth
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
            let atPath = not (isNull above) && above.Node.Depth = depth
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
            | Update.Set(_, value), _ -> supersede path depth reached (ValueSome value)
            | Update.Remove _, _ -> supersede path depth reached ValueNone

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
        updates

    /// The normalized updates of checked updates, in the order they apply.
    let normalize (updates: Update[]) : Update list =
        let pool = FoldPool.Take()
        try
            foldInto (FoldIndex pool) updates
        finally
            pool.Return()
