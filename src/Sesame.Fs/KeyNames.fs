namespace Sesame

open System

/// <summary>
/// The node-name segments (and JSON costs) of the object keys a thread's commits named lately, by key: the stores that
/// write a patch node by node (Redis, PostgreSQL) send every key of every update's path as its segment name, and a
/// request's paths repeat the same few keys (a literal path's keys are the same strings every time). A key named again
/// is the name made before rather than a new string. A small table of short keys, each slot holding the last key whose
/// text hashes there, so that no input makes it grow.
/// </summary>
[<Sealed; AllowNullLiteral>]
type internal KeyNames private () =
    static let slots = 256

    /// Longer keys are rarely repeated and cost more to compare: they are not kept.
    static let longestKept = 32

    [<ThreadStatic; DefaultValue>]
    static val mutable private current: KeyNames

    let keys: string[] = Array.zeroCreate slots
    let names: string[] = Array.zeroCreate slots
    let costs: int64[] = Array.zeroCreate slots

    static let slotOf (key: string) =
        let mutable h = uint32 key.Length
        for c in key do
            h <- (h ^^^ uint32 c) * 16777619u
        int ((h ^^^ (h >>> 15)) &&& uint32 (slots - 1))

    /// This thread's table.
    static member ForThisThread =
        let mutable table = KeyNames.current
        if isNull table then
            table <- KeyNames()
            KeyNames.current <- table
        table

    /// The name kept for the key, with its cost, or null (then slot is where Keep puts it; -1 for a key too long to keep).
    member _.Find(key: string, slot: outref<int>, cost: outref<int64>) : string =
        if key.Length > longestKept then
            slot <- -1
            null
        else
            slot <- slotOf key
            let kept = keys[slot]
            if obj.ReferenceEquals(kept, key) || String.Equals(kept, key) then
                cost <- costs[slot]
                names[slot]
            else
                null

    /// Keeps a key's name and cost in the slot Find gave for it.
    member _.Keep(slot: int, key: string, name: string, cost: int64) =
        if slot >= 0 then
            // Only this thread reads the table (ForThisThread), so the three need no ordering or lock.
            names[slot] <- name
            costs[slot] <- cost
            keys[slot] <- key
