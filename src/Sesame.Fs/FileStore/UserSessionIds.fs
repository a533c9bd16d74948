namespace Sesame

open System
open System.Collections.Generic

/// <summary>
/// One user's session ids in the file store's user index, in ordinal order, so that a page of the user's listing starts
/// at its cursor and reads what it lists: a client that signs in again and again (with no <c>MaxSessionsPerUser</c>)
/// can give one user any number of sessions. Locked on itself, and only briefly: it is taken under a session's lock
/// (binding and unbinding), never the other way round, so a listing copies a slice out and looks at the sessions after.
/// <para>Once the last id leaves, the set is retired and its user's entry removed; a binding that finds it retired
/// makes a new one, so no id is ever added to a set the index no longer holds.</para>
/// </summary>
[<Sealed>]
type internal UserSessionIds() =
    let ids = SortedSet<string>(StringComparer.Ordinal)
    let mutable retired = false

    /// Adds the id; false, changing nothing, when the set is retired.
    member _.TryAdd(id: string) : bool =
        lock ids (fun () ->
            if not retired then ids.Add id |> ignore
            not retired)

    /// Removes the id; true when the set is retired: that left it empty (which retires it), or it was already. Its
    /// owner then drops it from the index (only if the index still holds this very set).
    member _.Remove(id: string) : bool =
        lock ids (fun () ->
            if ids.Remove id && ids.Count = 0 then retired <- true
            retired)

    /// Up to <paramref name="count"/> ids after <paramref name="after"/> (null: from the first), in ordinal order.
    member _.After(after: string, count: int) : string[] = lock ids (fun () -> OrderedIds.after ids after |> Seq.truncate count |> Array.ofSeq)

    /// Every id, in ordinal order.
    member _.All() : string[] = lock ids (fun () -> Array.ofSeq ids)
