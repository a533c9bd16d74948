namespace Sesame

open System

/// <summary>
/// The strings of the object keys a thread has read lately, by their UTF-8 bytes: sessions repeat the same few keys
/// (every cart item has its "sku" and "qty"), and a key read again is the string read before rather than a new one.
/// A small table of short keys, each slot holding the last key whose bytes hash there, so that no input makes it grow.
/// </summary>
[<Sealed; AllowNullLiteral>]
type internal KeyStrings private () =
    static let slots = 256

    /// Longer keys are rarely repeated and cost more to compare: they are not kept.
    static let longestKept = 32

    [<ThreadStatic; DefaultValue>]
    static val mutable private current: KeyStrings

    let bytes: byte[][] = Array.zeroCreate slots
    let strings: string[] = Array.zeroCreate slots

    static let slotOf (utf8: ReadOnlySpan<byte>) =
        let mutable h = uint32 utf8.Length
        for b in utf8 do
            h <- (h ^^^ uint32 b) * 16777619u
        int ((h ^^^ (h >>> 15)) &&& uint32 (slots - 1))

    /// This thread's table.
    static member ForThisThread =
        let mutable table = KeyStrings.current
        if isNull table then
            table <- KeyStrings()
            KeyStrings.current <- table
        table

    /// The string kept for these bytes (a key's unescaped UTF-8), or null.
    member _.Find(utf8: ReadOnlySpan<byte>) : string =
        if utf8.Length > longestKept then
            null
        else
            let slot = slotOf utf8
            let kept = bytes[slot]
            if not (isNull kept) && utf8.SequenceEqual(ReadOnlySpan kept) then strings[slot] else null

    /// Keeps a key's string (decoded from these bytes by the reader, which checked them) for the next read of them.
    member _.Keep(utf8: ReadOnlySpan<byte>, key: string) =
        if utf8.Length <= longestKept then
            let slot = slotOf utf8
            // Only this thread reads the table (ForThisThread), so the pair needs no ordering or lock.
            strings[slot] <- key
            bytes[slot] <- utf8.ToArray()
