namespace Sesame

open System

/// <summary>
/// For stores that apply a change on their server (a Redis script, a PostgreSQL function): turns the conflict the server
/// reports for one update into the <see cref="T:Sesame.PathConflictException"/> Sesame's own apply gives for it, with the
/// same message, so a handler sees one error whatever the store.
/// </summary>
/// <remarks>
/// A report names what went wrong (<c>code</c>), how many segments of the update's path were followed before it
/// (<c>depth</c>), and the kind of the node met there (<c>info</c>), in the stored form Sesame's stores share:
/// <c>n</c> null, <c>t</c>/<c>f</c> a boolean, <c>"</c> a string, <c>{</c> or <c>O</c> an object, <c>[</c> an empty
/// array, <c>A</c> followed by the item count an array, anything else a number. The codes: <c>kind</c> (the path
/// crosses a node of the wrong kind), <c>missing</c> (an index into a missing array), <c>past</c> (an index past the
/// end; <c>info</c> is the item count), <c>notnumber</c>, <c>notarray</c>, <c>overflow</c> (an increment that cannot be
/// computed exactly; <c>info</c> is the stored number), and any other code for a remove of an array item.
/// </remarks>
[<RequireQualifiedAccess>]
module PathConflictReport =

    /// How Sesame's path lens describes a node it cannot follow.
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

    /// What a node holds, as an increment's or append's conflict says it.
    let private holds (kind: string) =
        match kind with
        | "n" -> "null"
        | "t"
        | "f" -> "a boolean"
        | "\"" -> "a string"
        | "{"
        | "O" -> "an object"
        | "[" -> "an array"
        | k when k.StartsWith 'A' -> "an array"
        | _ -> "a number"

    /// <summary>The exception Sesame's own apply gives for the conflict a store's server reported for <paramref name="update"/>.</summary>
    /// <param name="update">The update the server could not apply.</param>
    /// <param name="code">What went wrong (see the module's remarks).</param>
    /// <param name="depth">How many segments of the update's path the server followed before the conflict.</param>
    /// <param name="info">The kind of the node met there, or the count or number the code names.</param>
    let toException (update: Update) (code: string) (depth: int) (info: string) : PathConflictException =
        let path = update.Path
        let follow (what: string) =
            let at = SessionPath.ofSegments (List.truncate depth path.Segments)
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
