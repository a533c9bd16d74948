namespace Sesame

open System
open System.Threading
open System.Threading.Tasks

/// <summary>
/// What a store holds for one session as text, as the parsed cache sees it: the size it counts against the cache's
/// budget, and a weak reference to the parsed tree of a session too large for the cache.
/// </summary>
[<AllowNullLiteral>]
type internal ICachedText<'tree when 'tree: not struct> =
    /// The bytes the cache counts for the held text.
    abstract CachedSize: int64
    /// The tree of a text too large for the cache, for as long as something else keeps it alive.
    abstract LargeTree: WeakReference<'tree> with get, set

/// One cached tree and the exact text it was parsed from.
[<Sealed; AllowNullLiteral>]
type internal ParsedEntry<'text, 'tree>(text: 'text, tree: 'tree) =
    member _.Text = text
    member _.Tree = tree
    /// The tree as a completed task, made on the first load that asks (a race makes two, either of which stands).
    member val Completed: Task<'tree> = null with get, set

/// <summary>
/// The trees of recently used sessions, for the stores that hold sessions as compact UTF-8 JSON (memory and file), so
/// that a session in use is not parsed on every load and commit. Bounded twice: one slot per id hash (a newcomer
/// displaces whoever held its slot) and a budget of JSON bytes in all, so it holds a few MiB however many sessions the
/// store keeps. A session too large for it (over 64 KiB) is referenced weakly from its text instead: the request that
/// loaded it commits against the same text, and must not parse megabytes a second time (large strings live on the large
/// object heap, which only a full collection frees).
/// </summary>
[<Sealed>]
type internal ParsedCache<'text, 'tree when 'text :> ICachedText<'tree> and 'text: not struct and 'tree: not struct>() =
    /// A power of two.
    static let slots = 4096
    /// Of JSON; the trees take about 6 to 8 times as much heap.
    static let budgetBytes = 2L * 1024L * 1024L
    /// A larger session would crowd out too many others.
    static let maxEntryBytes = 64L * 1024L

    let cache: ParsedEntry<'text, 'tree>[] = Array.zeroCreate slots
    let mutable heldBytes = 0L

    let slotOf (id: string) = id.GetHashCode() &&& (slots - 1)

    let sizeOf (parsed: ParsedEntry<'text, 'tree>) = if isNull parsed then 0L else parsed.Text.CachedSize

    let isOf (text: 'text) (parsed: ParsedEntry<'text, 'tree>) = not (isNull parsed) && obj.ReferenceEquals(parsed.Text, text)

    /// The entry of exactly this text in its id's slot (not of an older or newer text of the same id), or null.
    let entryOf (id: string) (text: 'text) =
        match Volatile.Read &cache[slotOf id] with
        | parsed when isOf text parsed -> parsed
        | _ -> null

    /// The tree of exactly this text (not of an older or newer text of the same id), if it is kept.
    member _.TryGet(id: string, text: 'text) : 'tree voption =
        match entryOf id text with
        | null ->
            match text.LargeTree with
            | null -> ValueNone
            | weak ->
                match weak.TryGetTarget() with
                | true, tree -> ValueSome tree
                | _ -> ValueNone
        | parsed -> ValueSome parsed.Tree

    /// The tree of exactly this text as a completed task, when the cache keeps it (null otherwise): a store's load of a
    /// session in use hands out the same task every time rather than a new one.
    member _.TryGetCompleted(id: string, text: 'text) : Task<'tree> =
        match entryOf id text with
        | null -> null
        | parsed ->
            match parsed.Completed with
            | null ->
                let completed = Task.FromResult parsed.Tree
                parsed.Completed <- completed
                completed
            | completed -> completed

    /// Keeps the text's tree in its id's slot, if the budget allows; otherwise empties the slot. A tree too large for
    /// the cache is only referenced weakly, from its text.
    member _.Put(id: string, text: 'text, tree: 'tree) =
        let size = text.CachedSize
        if size > maxEntryBytes then
            match text.LargeTree with
            | null -> text.LargeTree <- WeakReference<'tree> tree
            // The newest tree of the text is the one a request holds now; the one before may be collected already, and
            // a reference left on it would make the next commit parse the text again.
            | weak -> weak.SetTarget tree
        let slot = slotOf id
        let fits = size <= maxEntryBytes && Volatile.Read &heldBytes - sizeOf (Volatile.Read &cache[slot]) + size <= budgetBytes
        let replaced = Interlocked.Exchange(&cache[slot], (if fits then ParsedEntry(text, tree) else null))
        // The count follows what was really swapped, so racing puts may pass the budget by a few entries, never drift.
        Interlocked.Add(&heldBytes, (if fits then size else 0L) - sizeOf replaced) |> ignore

    /// Lets go of the text's tree (the session was deleted, expired, evicted or moved).
    member _.Drop(id: string, text: 'text) =
        let slot = slotOf id
        match Volatile.Read &cache[slot] with
        | parsed when isOf text parsed ->
            if obj.ReferenceEquals(Interlocked.CompareExchange(&cache[slot], null, parsed), parsed) then Interlocked.Add(&heldBytes, -text.CachedSize) |> ignore
        | _ -> ()
