namespace Sesame

open System
open System.Collections.Generic

/// <summary>
/// One page of a listing of sessions held in no order: the first <c>count</c> ids after <c>after</c> in ordinal order,
/// picked from candidates offered one by one, in any order and possibly more than once, each with what the page needs
/// of it.
/// </summary>
/// <remarks>
/// <para><b>Why.</b> The memory and file stores hold their sessions in maps and rings, in no order. Sorting every
/// candidate to cut a page off the front cost each page O(n log n) and a string and a tuple per session: listing a page
/// of 100 over a file store of 723,000 replayed sessions took about a second and some 400 MB, every page. A page is
/// now O(n log count) in time and holds count candidates, and a caller that offers ids as characters (the rings hold
/// them as bytes) makes a string only for an id the page takes.</para>
/// <para>Not thread-safe: one listing uses it.</para>
/// </remarks>
[<Sealed>]
type internal IdPage<'item>(after: string, count: int) =
    do if count <= 0 then invalidArg (nameof count) "A page holds at least one session."

    /// The ids taken so far, the greatest first out: the one a better candidate replaces. It grows with what it takes,
    /// not with count: a listing's Limit is whatever its caller asked, perhaps a client.
    let taken = PriorityQueue<struct (string * 'item), string>(Comparer<string>.Create(fun a b -> String.CompareOrdinal(b, a)))

    let ids = HashSet<string>(StringComparer.Ordinal)
    let idsByChars = ids.GetAlternateLookup<ReadOnlySpan<char>>()

    /// A page for a listing of at most <paramref name="limit"/> sessions: one more than the limit, so that the caller
    /// learns whether a next page follows (as many as an int counts, for the largest limit).
    static member ForListing(after: string, limit: int) = IdPage<'item>(after, (if limit = Int32.MaxValue then limit else limit + 1))

    /// Room for an id decoded from a ring's bytes (a ring holds ids of at most 255 UTF-8 bytes).
    member val IdChars: char[] = Array.zeroCreate 256

    /// Whether the page would take this id now: it comes after the cursor, the page is not full or the id comes before
    /// the greatest it holds, and it is not taken already.
    member _.Wants(id: ReadOnlySpan<char>) : bool =
        (isNull after || MemoryExtensions.CompareTo(id, after.AsSpan(), StringComparison.Ordinal) > 0)
        && (taken.Count < count
            || (let mutable greatest = Unchecked.defaultof<_>
                let mutable greatestId = null
                taken.TryPeek(&greatest, &greatestId) |> ignore
                MemoryExtensions.CompareTo(id, greatestId.AsSpan(), StringComparison.Ordinal) < 0))
        && not (idsByChars.Contains id)

    /// Whether the page would take this id now (see the overload for characters).
    member this.Wants(id: string) : bool = this.Wants(id.AsSpan())

    /// Takes an id the page wants, with what the page needs of it; the greatest id it held goes when it was full.
    member _.Take(id: string, item: 'item) =
        ids.Add id |> ignore
        taken.Enqueue(struct (id, item), id)
        if taken.Count > count then
            let struct (dropped, _) = taken.Dequeue()
            ids.Remove dropped |> ignore

    /// Whether the page holds as many ids as it can: a caller offering ids in ascending order can stop there.
    member _.IsFull = taken.Count >= count

    /// Takes the id with its item if the page wants it.
    member this.Offer(id: string, item: 'item) = if this.Wants id then this.Take(id, item)

    /// The ids taken, with their items, in ordinal order of the ids.
    member _.Sorted() : struct (string * 'item)[] =
        let page = [| for struct (element, _) in taken.UnorderedItems -> element |]
        Array.sortInPlaceWith (fun (struct (a: string, _)) (struct (b: string, _)) -> String.CompareOrdinal(a, b)) page
        page

/// Ids kept in ordinal order (a user's, in the memory and file stores' indexes), read from a listing's cursor.
module internal OrderedIds =

    /// The ids after <c>after</c> (null: all of them), in ordinal order, read in place.
    let after (ids: SortedSet<string>) (after: string) : IEnumerable<string> =
        if isNull after then
            ids
        elif ids.Count = 0 || String.CompareOrdinal(after, ids.Max) >= 0 then
            Seq.empty
        else
            // A view between two ids holds both: the cursor itself was listed already.
            ids.GetViewBetween(after, ids.Max) |> Seq.skipWhile (fun id -> String.Equals(id, after, StringComparison.Ordinal))
