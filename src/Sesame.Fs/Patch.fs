namespace Sesame

open System
open System.Buffers
open System.Text.Json
open System.Threading

/// <summary>
/// A request's updates folded into one normalized change: what a store commits in one write.
/// Applying a patch gives the same tree as applying its updates one by one.
/// </summary>
/// <remarks>A patch made from a request's updates folds them the first time its <c>Updates</c> are asked for (a store
/// that writes the patch asks). A store that only applies it (the memory store) applies them as they were recorded:
/// the same tree as the folded patch gives (the fold's own rule), for less than the fold costs; where one of them fails
/// there, the folded patch decides, as the fold may have dropped that update.</remarks>
[<CustomEquality; NoComparison>]
type Patch = private {
    /// The checked updates as recorded, until they are folded; then null.
    mutable recorded: Update[]
    /// The normalized updates, once folded.
    mutable folded: Update list
} with

    /// The updates as recorded when not folded yet, else null; read once, so that a fold on another thread is seen
    /// whole (its updates before the null).
    member internal this.Recorded = Volatile.Read &this.recorded

    /// The normalized updates, in the order they apply.
    member this.Updates =
        match this.Recorded with
        | null -> this.folded
        | recorded ->
            // Two threads may fold at once: each gets the same updates, and either result stands.
            let folded = PatchFold.normalize recorded
            this.folded <- folded
            Volatile.Write(&this.recorded, null)
            folded

    /// Whether the patch changes nothing.
    member this.IsEmpty =
        match this.Recorded with
        // The fold keeps at least the first update, so only no updates fold to none.
        | null -> List.isEmpty this.folded
        | recorded -> recorded.Length = 0

    override this.ToString() = this.Updates |> List.map string |> String.concat "; "

    /// <summary>Whether the two patches hold the same normalized updates (each folded first, if it was not).</summary>
    member this.Equals(other: Patch) = not (isNull (box other)) && (obj.ReferenceEquals(this, other) || this.Updates = other.Updates)

    override this.Equals(other: obj) =
        match other with
        | :? Patch as patch -> this.Equals patch
        | _ -> false

    override this.GetHashCode() = hash this.Updates

    interface IEquatable<Patch> with
        member this.Equals(other: Patch) = this.Equals other

    /// <summary>Whether the other is a patch with the same normalized updates (as the record's own equality was).</summary>
    member this.Equals(other: obj, comparer: Collections.IEqualityComparer) =
        match other with
        | :? Patch as patch ->
            not (isNull (box patch)) && (obj.ReferenceEquals(this, patch) || (this.Updates :> Collections.IStructuralEquatable).Equals(patch.Updates, comparer))
        | _ -> false

    /// <summary>The hash of the normalized updates, by the comparer.</summary>
    member this.GetHashCode(comparer: Collections.IEqualityComparer) = (this.Updates :> Collections.IStructuralEquatable).GetHashCode comparer

    /// <summary>Whether the other is a patch with the same normalized updates (as the record's own equality was).</summary>
    member this.Equals(other: Patch, comparer: Collections.IEqualityComparer) = this.Equals(box other, comparer)

    interface Collections.IStructuralEquatable with
        member this.Equals(other: obj, comparer: Collections.IEqualityComparer) = this.Equals(other, comparer)
        member this.GetHashCode(comparer: Collections.IEqualityComparer) = this.GetHashCode comparer

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
    let empty = { recorded = null; folded = [] }

    /// The patch of updates that were checked with Update.validate when they were recorded; folded when its updates
    /// are first asked for (the array is the patch's from then on: the caller does not change it).
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
              { recorded = null; folded = [ single[0] ] }
        // Folded when a store asks for the updates (see Patch).
        | :? (Update[]) as all -> { recorded = all; folded = [] }
        | _ -> { recorded = Seq.toArray updates; folded = [] }

    /// <summary>The patch of a request's ordered updates as its commit makes it: each checked (Update.validate), kept as
    /// recorded, folded when its updates are first asked for.</summary>
    let internal record (updates: seq<Update>) : Patch =
        let updates = Seq.toArray updates
        for update in updates do
            Update.validate update
        foldChecked updates

    /// <summary>Folds a request's ordered updates into one normalized patch.</summary>
    /// <remarks>Applying the patch gives the same tree as applying the updates one by one, to the same text
    /// (key order included).</remarks>
    /// <exception cref="System.ArgumentException">An update would make the session nest deeper than
    /// <see cref="F:Sesame.JsonModule.MaxDepth"/>, or holds a lone UTF-16 surrogate (see <c>Update.validate</c>).</exception>
    let fold (updates: seq<Update>) : Patch =
        let patch = record updates
        // Folded now, as asked (a request's commit leaves the fold to the store that needs it).
        patch.Updates |> ignore
        patch

    /// <summary>Applies a patch to a tree.</summary>
    /// <exception cref="T:Sesame.PathConflictException">An update crosses a value of the wrong kind; the tree is left as it was.</exception>
    let apply (patch: Patch) (json: Json) : Json =
        let applyFolded (updates: Update list) =
            match updates with
            | []
            | [ _ ]
            | [ _; _ ] -> List.fold (fun tree update -> Update.apply update tree) json updates
            // Past two updates, copying each changed object once (PatchDraft) beats copying every update's path.
            | many -> PatchDraft.apply many json
        match patch.Recorded with
        | null -> applyFolded patch.Updates
        | recorded ->
            // Not folded (no store asked for the updates): applied as recorded, which gives the folded patch's tree
            // without the fold's cost.
            try
                if recorded.Length <= 2 then Array.fold (fun tree update -> Update.apply update tree) json recorded else PatchDraft.applyAll recorded json
            with :? PathConflictException ->
                // An update that fails may be one the fold drops (a later set above it): what the patch does is what
                // its folded updates do.
                applyFolded patch.Updates

    /// <summary>
    /// Whether the patch touches the top-level key <paramref name="key"/>: an update at or below it, or at the root.
    /// Not folded yet, the recorded updates answer without the fold: every update the fold drops has a later one kept at
    /// or above its path, which touches the key too, and what it keeps stays at a recorded path.
    /// </summary>
    let internal touchesKey (key: string) (patch: Patch) : bool =
        let touches (update: Update) =
            match update.Path.Segments with
            | Segment.Key k :: _ -> k = key
            | [] -> true
            | _ -> false
        match patch.Recorded with
        | null -> List.exists touches patch.Updates
        | recorded -> Array.exists touches recorded

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

    /// How a patch is written when <paramref name="outerLevels"/> levels of arrays hold it: a value at
    /// <see cref="F:Sesame.JsonModule.MaxDepth"/> fits, one deeper throws, as it could not be read back.
    let internal writerOptions (outerLevels: int) =
        JsonWriterOptions(
            Encoder = Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
            MaxDepth = Json.MaxDepth + wrappingLevels + outerLevels,
            SkipValidation = true
        )

    // Each thread's text buffer, so that writing a patch allocates only the result.
    let private texts = JsonTextBuffers(writerOptions 0)

    /// <summary>The compact UTF-8 JSON of a patch.</summary>
    /// <exception cref="System.InvalidOperationException">A value nests deeper than <see cref="F:Sesame.JsonModule.MaxDepth"/>, so the patch could not be read back.</exception>
    let toUtf8 (patch: Patch) : byte[] =
        use text = texts.Rent()
        writeTo (text.Start()) patch
        text.Finish().ToArray()

    /// <summary>The compact JSON text of a patch.</summary>
    /// <exception cref="System.InvalidOperationException">A value nests deeper than <see cref="F:Sesame.JsonModule.MaxDepth"/>, so the patch could not be read back.</exception>
    let serialize (patch: Patch) = Text.Encoding.UTF8.GetString(toUtf8 patch)

    /// Reads a patch from its JSON form without checking its updates with Update.validate: for the file store's own
    /// records, whose updates were checked when they were recorded (replay reads millions of them).
    let internal ofJsonUnchecked (json: Json) : Patch =
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
            { recorded = null; folded = updates }
        | _ -> bad "not an array"

    /// <summary>Reads a patch from its JSON form, each update checked as <see cref="M:Sesame.PatchModule.fold(System.Collections.Generic.IEnumerable{Sesame.Update})"/>
    /// checks it: a patch every store can write and read back.</summary>
    /// <exception cref="System.Text.Json.JsonException">The JSON is not a patch, or an update would make a session nest
    /// deeper than <see cref="F:Sesame.JsonModule.MaxDepth"/> (its path's segments plus its value's nesting) or holds a
    /// lone UTF-16 surrogate; the message says why.</exception>
    let ofJson (json: Json) : Patch =
        let patch = ofJsonUnchecked json
        // Unchecked, a change deeper than a store reads back would be accepted by the Redis and PostgreSQL stores, which
        // write it node by node, and then refused at every load.
        for update in patch.Updates do
            try
                Update.validate update
            with :? ArgumentException as e ->
                raise (JsonException($"Not a patch Sesame can store: {e.Message}", e))
        patch

    /// <summary>Reads a patch from its UTF-8 JSON (as written by <see cref="M:Sesame.PatchModule.toUtf8(Sesame.Patch)"/>).</summary>
    /// <remarks>Its values may nest as deep as <see cref="F:Sesame.JsonModule.MaxDepth"/>: the two levels of the patch's own arrays are allowed for.</remarks>
    /// <exception cref="System.Text.Json.JsonException">The JSON is not a patch, or an update would make a session nest
    /// deeper than <see cref="F:Sesame.JsonModule.MaxDepth"/> or holds a lone UTF-16 surrogate (see <c>ofJson</c>).</exception>
    let parseUtf8 (utf8: ReadOnlySpan<byte>) : Patch = ofJson (Json.parseUtf8Wrapped wrappingLevels utf8)

    /// The file store's version 1 records: parseUtf8 without the check (see ofJsonUnchecked).
    let internal parseUtf8Unchecked (utf8: ReadOnlySpan<byte>) : Patch = ofJsonUnchecked (Json.parseUtf8Wrapped wrappingLevels utf8)

    /// <summary>Parses a patch from its JSON text.</summary>
    /// <exception cref="System.Text.Json.JsonException">The text is not a patch, or a value nests deeper than <see cref="F:Sesame.JsonModule.MaxDepth"/>.</exception>
    let parse (text: string) =
        if isNull text then nullArg "text"
        parseUtf8 (ReadOnlySpan(Text.Encoding.UTF8.GetBytes text))
