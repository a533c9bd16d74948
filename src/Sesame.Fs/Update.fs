namespace Sesame

open System

/// <summary>One recorded change to a session: what a mutation leaves in the request's update log.</summary>
[<RequireQualifiedAccess>]
type Update =
    /// Put a value at a path, creating missing containers (the root path replaces the whole session).
    | Set of path: Path * value: Json
    /// Remove an object key (nothing happens when it is absent). Array items are removed by setting the array.
    | Remove of path: Path
    /// Add to the number at a path exactly (a missing value counts as zero). Concurrent increments add up.
    | Increment of path: Path * by: JsonNumber

    /// The path the update touches.
    member this.Path =
        match this with
        | Set(path, _)
        | Remove path
        | Increment(path, _) -> path

    override this.ToString() =
        match this with
        | Set(path, value) -> $"set {path} = {Json.serialize value}"
        | Remove path -> $"remove {path}"
        | Increment(path, by) -> $"increment {path} by {by}"

/// <summary>Building and applying single updates.</summary>
[<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module Update =

    /// <summary>An update that sets <paramref name="value"/> at <paramref name="path"/>.</summary>
    let set (path: Path) (value: Json) = Update.Set(path, value)

    /// <summary>An update that removes the object key at <paramref name="path"/>.</summary>
    /// <exception cref="System.ArgumentException">The path ends in an array index: remove an item by setting the array.</exception>
    let remove (path: Path) =
        match List.tryLast path.Segments with
        | Some(Segment.Index _) ->
            invalidArg "path" $"'{path}' ends in an array index; an update removes object keys only (set the array without the item instead)."
        | _ -> Update.Remove path

    /// <summary>An update that adds <paramref name="by"/> to the number at <paramref name="path"/>.</summary>
    let increment (path: Path) (by: decimal) = Update.Increment(path, JsonNumber.OfDecimal by)

    let private addTo (path: Path) (by: JsonNumber) (current: Json voption) =
        match current with
        | ValueNone -> Json.Number by
        | ValueSome(Json.Number n) ->
            try
                Json.Number(JsonNumber.Add(n, by))
            with :? OverflowException as e ->
                raise (PathConflictException(path, $"Cannot increment '{path}': {e.Message}"))
        | ValueSome other ->
            let kind =
                match other with
                | Json.String _ -> "a string"
                | Json.Bool _ -> "a boolean"
                | Json.Null -> "null"
                | Json.Array _ -> "an array"
                | _ -> "an object"
            raise (PathConflictException(path, $"Cannot increment '{path}': it holds {kind}, not a number."))

    /// <summary>
    /// Applies one update below a node that may be missing (<c>ValueNone</c>); the path is relative to that node.
    /// <paramref name="fullPath"/> names the update in errors.
    /// </summary>
    let internal applyBelow (update: Update) (relative: Path) (node: Json voption) : Json voption =
        match update with
        | Update.Set(_, value) -> Path.modify relative (fun _ -> ValueSome value) node
        | Update.Remove _ ->
            if relative.IsRoot then ValueNone
            else
                match node with
                | ValueNone -> ValueNone
                | ValueSome json -> ValueSome(Path.remove relative json)
        | Update.Increment(path, by) -> Path.modify relative (fun current -> ValueSome(addTo path by current)) node

    /// <summary>Applies one update to a tree.</summary>
    /// <remarks>Removing the root clears the session to the empty object.</remarks>
    /// <exception cref="T:Sesame.PathConflictException">The update's path crosses a value of the wrong kind, an index is past the end, or an increment meets a value that is not a number.</exception>
    let apply (update: Update) (json: Json) : Json =
        match update with
        | Update.Remove path when path.IsRoot -> Json.emptyObject
        | Update.Remove path when (match List.tryLast path.Segments with Some(Segment.Index _) -> true | _ -> false) ->
            raise (PathConflictException(path, $"Cannot remove '{path}': an update removes object keys only; set the array without the item instead."))
        | _ ->
            match applyBelow update update.Path (ValueSome json) with
            | ValueSome result -> result
            | ValueNone -> json
