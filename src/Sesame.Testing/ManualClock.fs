namespace Sesame.Testing

open System
open System.Threading

/// <summary>
/// A clock that moves only when told: hand it to a store that reads a <see cref="T:System.TimeProvider"/>, and expiry
/// is tested without waiting.
/// </summary>
/// <remarks>
/// It starts at 2030-01-01 12:00 UTC. Only <see cref="M:Sesame.Testing.ManualClock.GetUtcNow"/> is its own: timers are
/// the system's, so a store's periodic sweep still runs on real time, reading this clock when it does.
/// </remarks>
[<Sealed>]
type ManualClock() =
    inherit TimeProvider()
    let mutable ticks = DateTimeOffset(2030, 1, 1, 12, 0, 0, TimeSpan.Zero).UtcTicks

    /// <summary>Moves the clock forward (safe to call from any thread).</summary>
    /// <param name="by">How far; not negative.</param>
    /// <exception cref="T:System.ArgumentOutOfRangeException"><paramref name="by"/> is negative.</exception>
    member _.Advance(by: TimeSpan) =
        if by < TimeSpan.Zero then raise (ArgumentOutOfRangeException(nameof by, by, "A clock moves forward only."))
        Interlocked.Add(&ticks, by.Ticks) |> ignore

    /// <summary>The clock's time now, in UTC.</summary>
    override _.GetUtcNow() = DateTimeOffset(Interlocked.Read &ticks, TimeSpan.Zero)
