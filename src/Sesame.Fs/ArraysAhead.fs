namespace Sesame

open System
open System.Threading.Tasks

/// <summary>
/// Large byte arrays made ready on a pool thread before they are asked for: allocated there, and written once a page,
/// so that the kernel maps their memory on that thread while the one that takes them goes on filling the last one.
/// </summary>
/// <remarks>
/// <para><b>Why.</b> Replay of a large file fills a new array of the ring every few thousand sessions. In a fresh process
/// the first write to each page of such an array is a page fault; on the machine docs/performance.md describes, the
/// faults took about a sixth of replay's time, all on the thread that replays. Made ready ahead, the same faults happen
/// on another core, and replay of a flood's file took about 0.8× the time.</para>
/// <para><b>Never waits.</b> An array not ready when asked for is allocated on the spot, as it would be without this
/// (the one being made ready is given next time), so a slow or starved thread pool costs nothing but the gain.</para>
/// <para>Not thread-safe: one thread takes the arrays. Every array is <c>length</c> zero bytes, whichever way it came.</para>
/// </remarks>
[<Sealed; AllowNullLiteral>]
type internal ArraysAhead(length: int, prepare: int -> Task<byte[]>) =
    static let pageBytes = Environment.SystemPageSize

    let mutable next = prepare length
    let mutable takenReady = 0
    let mutable takenOnTheSpot = 0

    /// Arrays made ready on pool threads.
    new(length: int) = ArraysAhead(length, ArraysAhead.OnPoolThread)

    /// Allocates on a pool thread and writes each page once (a zero where the array is zero already); null when the
    /// memory cannot be had, so that nothing fails there, unobserved: the taking thread then allocates and fails itself.
    static member OnPoolThread(length: int) : Task<byte[]> =
        Task.Run(fun () ->
            try
                let array = Array.zeroCreate<byte> length
                let mutable at = 0
                while at < array.Length do
                    array[at] <- 0uy
                    at <- at + pageBytes
                array
            with :? OutOfMemoryException ->
                null)

    /// How many arrays were taken ready (for tests and diagnostics).
    member _.TakenReady = takenReady

    /// How many arrays were allocated on the spot, none being ready (for tests and diagnostics).
    member _.TakenOnTheSpot = takenOnTheSpot

    /// An array of `length` zero bytes: the one made ready when it is, else a new one.
    member _.Take() : byte[] =
        let ready = if next.IsCompletedSuccessfully then next.Result else null
        if isNull ready then
            let array = Array.zeroCreate length
            takenOnTheSpot <- takenOnTheSpot + 1
            array
        else
            takenReady <- takenReady + 1
            next <- prepare length
            ready

    /// Makes no more arrays ready; the one under way, if any, is left to the collector.
    member _.Stop() = next <- Task.FromResult null
