namespace Sesame

open System
open System.Collections.Immutable

/// <summary>One recorded change to a session: what a mutation leaves in the request's update log.</summary>
[<RequireQualifiedAccess>]
type Update =
    /// Put a value at a path, creating missing containers (the root path replaces the whole session).
    | Set of path: SessionPath * value: Json
    /// Remove an object key (nothing happens when it is absent). Array items are removed by setting the array.
    | Remove of path: SessionPath
    /// Add to the number at a path exactly (a missing value counts as zero). Concurrent increments add up.
    | Increment of path: SessionPath * by: JsonNumber
    /// Add a value at the end of the array at a path (a missing array is created with the value as its
    /// only item). Concurrent appends to one array all survive, each once.
    | Append of path: SessionPath * value: Json

    /// The path the update touches.
    member this.Path =
        match this with
        | Set(path, _)
        | Remove path
        | Increment(path, _)
        | Append(path, _) -> path

    override this.ToString() =
        match this with
        | Set(path, value) -> $"set {path} = {Json.serialize value}"
        | Remove path -> $"remove {path}"
        | Increment(path, by) -> $"increment {path} by {by}"
        | Append(path, value) -> $"append {Json.serialize value} to {path}"

/// <summary>Building and applying single updates.</summary>
[<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module Update =

    /// <summary>An update that sets <paramref name="value"/> at <paramref name="path"/>.</summary>
    let set (path: SessionPath) (value: Json) = Update.Set(path, value)

    /// <summary>An update that removes the object key at <paramref name="path"/>.</summary>
    /// <exception cref="System.ArgumentException">The path ends in an array index: remove an item by setting the array.</exception>
    let remove (path: SessionPath) =
        match List.tryLast path.Segments with
        | Some(Segment.Index _) ->
            invalidArg "path" $"'{path}' ends in an array index; an update removes object keys only (set the array without the item instead)."
        | _ -> Update.Remove path

    /// <summary>An update that adds <paramref name="by"/> to the number at <paramref name="path"/>.</summary>
    let increment (path: SessionPath) (by: decimal) = Update.Increment(path, JsonNumber.OfDecimal by)

    /// <summary>An update that appends <paramref name="value"/> to the array at <paramref name="path"/>.</summary>
    let append (path: SessionPath) (value: Json) = Update.Append(path, value)

    /// Whether the update can make its tree larger: anything but a remove (a sum can be longer than the number it adds
    /// to). The facts are bounded by the tree's size limit, and are measured only after such an update.
    let internal mayGrow (update: Update) =
        match update with
        | Update.Remove _ -> false
        | _ -> true

    /// How conflict messages name what a path holds.
    let private kindOf (json: Json) =
        match json with
        | Json.String _ -> "a string"
        | Json.Bool _ -> "a boolean"
        | Json.Null -> "null"
        | Json.Number _ -> "a number"
        | Json.Array _ -> "an array"
        | Json.Object _ -> "an object"

    let internal addTo (path: SessionPath) (by: JsonNumber) (current: Json voption) =
        match current with
        | ValueNone -> Json.Number by
        | ValueSome(Json.Number n) ->
            try
                Json.Number(JsonNumber.Add(n, by))
            with :? OverflowException as e ->
                raise (PathConflictException(path, $"Cannot increment '{path}': {e.Message}"))
        | ValueSome other -> raise (PathConflictException(path, $"Cannot increment '{path}': it holds {kindOf other}, not a number."))

    let internal pushTo (path: SessionPath) (value: Json) (current: Json voption) =
        match current with
        | ValueNone -> Json.Array(ImmutableArray.Create value)
        | ValueSome(Json.Array items) -> Json.Array(items.Add value)
        | ValueSome other -> raise (PathConflictException(path, $"Cannot append to '{path}': it holds {kindOf other}, not an array."))

    let private loneSurrogate (path: SessionPath) (where: string) =
        raise (
            ArgumentException(
                $"The change at '{path}' has a lone UTF-16 surrogate in {where}: JSON text cannot hold one, so it is refused before anything is recorded (encode the text correctly, or drop the broken character).",
                "update"
            )
        )

    /// The levels of arrays and objects a value nests (0 for a scalar), checking its text on the way.
    let rec private nesting (path: SessionPath) (json: Json) : int =
        match json with
        | Json.String s -> if LoneSurrogates.has s then loneSurrogate path "a string of its value" else 0
        | Json.Array items ->
            let mutable deepest = 0
            for item in items do
                deepest <- max deepest (nesting path item)
            deepest + 1
        | Json.Object o ->
            let mutable deepest = 0
            for KeyValue(key, value) in o do
                if LoneSurrogates.has key then loneSurrogate path $"the key \"{key}\" of its value"
                deepest <- max deepest (nesting path value)
            deepest + 1
        | _ -> 0

    /// <summary>
    /// Checks that an update can be stored by every store, before it is recorded: the session it makes nests at most
    /// <see cref="F:Sesame.JsonModule.MaxDepth"/> levels deep (the path's segments plus the value's own nesting), and no
    /// key or string holds a lone UTF-16 surrogate.
    /// </summary>
    /// <exception cref="System.ArgumentException">The update would nest too deep, or holds a lone surrogate; the message names the path.</exception>
    let validate (update: Update) : unit =
        let path = update.Path
        // A path's keys were checked when it was made (a parsed literal is made once, the parse cache giving it back).
        if path.HasLoneSurrogate then loneSurrogate path "a key of its path"
        let depth =
            match update with
            | Update.Set(_, value) -> path.Depth + nesting path value
            // The value goes inside the array at the path: one level more.
            | Update.Append(_, value) -> path.Depth + 1 + nesting path value
            | Update.Remove _
            | Update.Increment _ -> path.Depth
        if depth > Json.MaxDepth then
            raise (
                ArgumentException(
                    $"The change at '{path}' would make the session nest {depth} levels deep; at most {Json.MaxDepth} are allowed (the path's segments plus the value's own nesting).",
                    "update"
                )
            )

    /// <summary>
    /// Applies one update below a node that may be missing (<c>ValueNone</c>); the path is relative to that node.
    /// <paramref name="fullPath"/> names the update in errors.
    /// </summary>
    let internal applyBelow (update: Update) (relative: SessionPath) (node: Json voption) : Json voption =
        match update with
        | Update.Set(_, value) -> SessionPath.modify relative (fun _ -> ValueSome value) node
        | Update.Remove _ ->
            if relative.IsRoot then
                ValueNone
            else
                match node with
                | ValueNone -> ValueNone
                | ValueSome json -> ValueSome(SessionPath.remove relative json)
        | Update.Increment(path, by) -> SessionPath.modify relative (fun current -> ValueSome(addTo path by current)) node
        | Update.Append(path, value) -> SessionPath.modify relative (fun current -> ValueSome(pushTo path value current)) node

    /// <summary>Applies one update to a tree.</summary>
    /// <remarks>Removing the root clears the session to the empty object.</remarks>
    /// <exception cref="T:Sesame.PathConflictException">The update's path crosses a value of the wrong kind, an index is past the end, or an increment meets a value that is not a number.</exception>
    let apply (update: Update) (json: Json) : Json =
        match update with
        | Update.Remove path when path.IsRoot -> Json.emptyObject
        | Update.Remove path when
            (match List.tryLast path.Segments with
             | Some(Segment.Index _) -> true
             | _ -> false)
            ->
            raise (PathConflictException(path, $"Cannot remove '{path}': an update removes object keys only; set the array without the item instead."))
        | _ ->
            match applyBelow update update.Path (ValueSome json) with
            | ValueSome result -> result
            | ValueNone -> json
