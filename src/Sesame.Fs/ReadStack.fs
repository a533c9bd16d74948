namespace Sesame

open System

/// <summary>
/// The values of the containers a JSON reader is inside, one container's above the other's: a container's items are
/// pushed as they are read and taken off, into an array of their exact length, when it ends. One per thread and item
/// type, so that reading a tree allocates the tree, not a list per container that grows and is then thrown away.
/// </summary>
[<Sealed; AllowNullLiteral>]
type internal ReadStack<'T>() =
    /// Room a stack keeps between reads; one that a wide value grew past it starts again this small, so that a
    /// thread does not hold a large array for good after one large read.
    static let keptLength = 1024

    [<ThreadStatic; DefaultValue>]
    static val mutable private current: ReadStack<'T>

    let mutable items: 'T[] = Array.zeroCreate 64
    let mutable count = 0

    /// This thread's stack.
    static member ForThisThread =
        let mutable stack = ReadStack<'T>.current
        if isNull stack then
            stack <- ReadStack<'T>()
            ReadStack<'T>.current <- stack
        stack

    /// How many items the stack holds: where the next container's items start.
    member _.Count = count

    /// How many items it has room for.
    member _.Capacity = items.Length

    member _.Push(item: 'T) =
        if count = items.Length then Array.Resize(&items, count * 2)
        items[count] <- item
        count <- count + 1

    /// The items from <c>start</c> up, in place (until the stack changes).
    member _.From(start: int) = ReadOnlySpan(items, start, count - start)

    /// The items from <c>start</c> up, as a new array; the stack is cut back to <c>start</c>.
    member this.PopFrom(start: int) : 'T[] =
        let taken = Array.zeroCreate (count - start)
        Array.Copy(items, start, taken, 0, taken.Length)
        this.CutTo start
        taken

    /// Cuts the stack back to <c>start</c> (a read that failed part way), letting go of what it held above it.
    member _.CutTo(start: int) =
        if count > start then
            Array.Clear(items, start, count - start)
            count <- start
        if count = 0 && items.Length > keptLength then items <- Array.zeroCreate 64
