namespace Sesame.Testing

open System
open System.Threading.Tasks
open Sesame

/// <summary>
/// A fresh store made for one contract case, and how that case moves the store's time forward (the expiry cases let
/// idle timeouts pass; the user-limit case lets time pass between sign-ins).
/// </summary>
/// <remarks>
/// The suite disposes the store when its case ends, if the store is <see cref="T:System.IAsyncDisposable"/> or
/// <see cref="T:System.IDisposable"/>. Most stores need none of this: give
/// <see cref="T:Sesame.Testing.SessionStoreContract"/> a function of a clock, or of nothing for a store on real time.
/// </remarks>
[<Sealed>]
type StoreUnderTest
    /// <summary>A store for one case, and how the case lets time pass for it.</summary>
    /// <param name="store">A fresh, empty store.</param>
    /// <param name="advance">Lets at least the given time pass as the store sees it (moves its clock, or waits).</param>
    (store: SessionStore, advance: Func<TimeSpan, Task>) =
    do
        if isNull store then nullArg (nameof store)
        if isNull advance then nullArg (nameof advance)

    /// <summary>The store, fresh for this case (it may share a server with other cases, never their ids).</summary>
    member _.Store = store

    /// <summary>Lets time pass for the store: at least <paramref name="by"/> of it, as the store sees time.</summary>
    /// <param name="by">How much time passes.</param>
    /// <returns>A task that completes once the store's time has moved.</returns>
    member _.AdvanceAsync(by: TimeSpan) : Task = advance.Invoke by

    /// <summary>
    /// A store that reads the given clock: the suite makes a <see cref="T:Sesame.Testing.ManualClock"/> for the case,
    /// passes it to <paramref name="createStore"/>, and moves it instead of waiting.
    /// </summary>
    /// <param name="createStore">Makes a fresh, empty store reading the clock it is given.</param>
    static member OnClock(createStore: Func<TimeProvider, SessionStore>) : StoreUnderTest =
        if isNull createStore then nullArg (nameof createStore)
        let clock = ManualClock()
        StoreUnderTest(
            createStore.Invoke clock,
            Func<TimeSpan, Task>(fun by ->
                clock.Advance by
                Task.CompletedTask)
        )

    /// <summary>
    /// A store on real time (a server's clock, like Redis's or a database's expiry): moving its time forward is a real
    /// delay, so the expiry cases take a few seconds.
    /// </summary>
    /// <param name="store">A fresh, empty store.</param>
    static member OnRealTime(store: SessionStore) : StoreUnderTest = StoreUnderTest(store, Func<TimeSpan, Task>(fun by -> Task.Delay by))

    /// <summary>Disposes the store, if it is disposable.</summary>
    member _.DisposeAsync() : ValueTask =
        match box store with
        | :? IAsyncDisposable as disposable -> disposable.DisposeAsync()
        | :? IDisposable as disposable ->
            disposable.Dispose()
            ValueTask.CompletedTask
        | _ -> ValueTask.CompletedTask

    interface IAsyncDisposable with
        member this.DisposeAsync() = this.DisposeAsync()
