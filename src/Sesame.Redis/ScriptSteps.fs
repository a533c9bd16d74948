namespace Sesame.Redis

open System.Collections.Generic
open Sesame

/// <summary>One step of a change as the commit and move scripts get it (Patch.lua): an update, whether it changes the
/// facts, and whether it is a set of null together with the remove of the same key that directly follows it (the
/// scripts' 'n' step, which they apply and count as both).</summary>
[<Struct; NoComparison; NoEquality>]
type internal ScriptStep = { Update: Update; Facts: bool; NullThenRemove: bool }

/// <summary>
/// A change's updates in the order the scripts apply them, and as the steps they get: listed once, because a commit
/// walks them twice, to size its ARGV and then to fill it.
/// </summary>
/// <remarks>The fold leaves a set of null then a remove of one key for a key removed after it created its containers
/// (a request that adds and drops an entry of an object it may have created); as one step, its path goes once.</remarks>
[<RequireQualifiedAccess>]
module internal ScriptSteps =

    /// Folds every update of a change in the order the scripts apply them, each with whether it changes the facts.
    let foldUpdates (folder: 'state -> bool -> Update -> 'state) (state: 'state) (change: SessionChange) : 'state =
        let mutable state = state
        match change.Upgrade with
        | ValueSome upgrade ->
            for update in upgrade.Data.Updates do
                state <- folder state false update
            state <- folder state true (Update.Set(SessionPath.ofKeys [ SessionMeta.Shape ], Json.Number(JsonNumber.OfInt64(int64 upgrade.To))))
        | ValueNone -> ()
        for update in change.Data.Updates do
            state <- folder state false update
        for update in change.Meta.Updates do
            state <- folder state true update
        state

    /// Whether a path's last segment is a key: only a key can be removed.
    let rec private lastIsKey (segments: Segment list) =
        match segments with
        | [] -> false
        | [ Segment.Key _ ] -> true
        | [ _ ] -> false
        | _ :: rest -> lastIsKey rest

    /// Whether an update is the remove that completes a held set of null in the same tree.
    let private completes (held: ScriptStep) (facts: bool) (update: Update) =
        match update with
        // The fold makes the pair with one path object; the structural compare is for pairs made otherwise.
        | Update.Remove path -> held.Facts = facts && (obj.ReferenceEquals(path, held.Update.Path) || path = held.Update.Path)
        | _ -> false

    /// The steps of a change, in order.
    let ofChange (change: SessionChange) : List<ScriptStep> =
        let capacity =
            change.Data.Updates.Length
            + change.Meta.Updates.Length
            + (match change.Upgrade with
               | ValueSome upgrade -> upgrade.Data.Updates.Length + 1
               | ValueNone -> 0)
        let steps = List<ScriptStep>(capacity)
        // A set of null to a key path is held until the next update shows whether its remove follows.
        let held = ref ValueNone
        let release () =
            match held.Value with
            | ValueSome step ->
                steps.Add step
                held.Value <- ValueNone
            | ValueNone -> ()
        let take () (facts: bool) (update: Update) =
            match held.Value with
            | ValueSome step when completes step facts update ->
                steps.Add { step with NullThenRemove = true }
                held.Value <- ValueNone
            | _ ->
                release ()
                match update with
                | Update.Set(path, Json.Null) when lastIsKey path.Segments -> held.Value <- ValueSome { Update = update; Facts = facts; NullThenRemove = false }
                | _ -> steps.Add { Update = update; Facts = facts; NullThenRemove = false }
        foldUpdates take () change
        release ()
        steps
