namespace Sesame.Testing

open System
open System.Collections.Concurrent
open System.Collections.Generic
open System.Runtime.ExceptionServices
open System.Runtime.InteropServices
open System.Threading
open System.Threading.Tasks
open Sesame

/// <summary>
/// One case of the store contract, bound to the way a store is made: run it from any test framework. Each run makes
/// a fresh store, runs the case against it, and disposes it.
/// </summary>
/// <remarks>
/// <see cref="M:Sesame.Testing.SessionStoreCase.ToString"/> is the case's name, so an xunit theory over the cases shows
/// each by name.
/// </remarks>
[<Sealed>]
type SessionStoreCase internal (name: string, index: int, start: unit -> StoreUnderTest) =

    /// Each store call of a case gets a minute: a store that hangs fails its case instead of the test run.
    static let callTimeout = TimeSpan.FromMinutes 1.0

    /// <summary>The case's name: a sentence saying what a store must do.</summary>
    member _.Name = name

    /// <summary>Runs the case against a fresh store.</summary>
    /// <param name="cancellationToken">Cancels the run (the store calls under way are cancelled).</param>
    /// <returns>A task that completes when the store kept the contract in this case.</returns>
    /// <exception cref="T:Sesame.Testing.StoreContractException">The store broke the contract: the message names the
    /// case and what differed (or what the store threw).</exception>
    /// <exception cref="T:System.OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    member _.RunAsync([<Optional; DefaultParameterValue(CancellationToken())>] cancellationToken: CancellationToken) : Task = task {
        use run = CancellationTokenSource.CreateLinkedTokenSource cancellationToken
        let sources = ConcurrentQueue<CancellationTokenSource>()
        let stores = ConcurrentQueue<StoreUnderTest>()
        let testToken () =
            let source = CancellationTokenSource.CreateLinkedTokenSource run.Token
            source.CancelAfter callTimeout
            sources.Enqueue source
            source.Token
        let startStore () =
            let store =
                try
                    start ()
                with e ->
                    raise (StoreContractException(name, $"the store could not be made: {e.GetType().Name}: {e.Message}", e))
            if isNull (box store) then raise (StoreContractException(name, "the function that makes the store gave null.", null))
            stores.Enqueue store
            store
        try
            try
                let _, body = (ContractCases.cases startStore testToken)[index]
                do! body ()
            with e ->
                match e with
                | :? StoreContractException -> ExceptionDispatchInfo.Throw e
                | :? OperationCanceledException when cancellationToken.IsCancellationRequested -> ExceptionDispatchInfo.Throw e
                | :? ContractViolation as violation -> raise (StoreContractException(name, violation.Message, null))
                | e -> raise (StoreContractException(name, $"the store threw {e.GetType().Name}: {e.Message}", e))
        finally
            for source in sources do
                source.Dispose()
        // Disposed after the case (pass or fail); a store that cannot be disposed fails its case too.
        for store in stores do
            try
                do! store.DisposeAsync()
            with e ->
                raise (StoreContractException(name, $"disposing the store threw {e.GetType().Name}: {e.Message}", e))
    }

    /// <summary>The case's name.</summary>
    override _.ToString() = name

/// <summary>
/// The contract every Sesame session store keeps, as cases to run from any test framework: the same cases Sesame's own
/// stores (memory, file, Redis, PostgreSQL) pass.
/// </summary>
/// <remarks>
/// <para>Give it a way to make a fresh, empty store; it makes one per case. A store that reads a
/// <see cref="T:System.TimeProvider"/> gets a <see cref="T:Sesame.Testing.ManualClock"/> of the case's own, moved
/// instead of waiting; a store on a server's clock waits for real (the expiry cases then take a few seconds).</para>
/// <para>xunit: <c>public static TheoryData&lt;SessionStoreCase&gt; Contract =&gt; new(SessionStoreContract.Cases(clock =&gt; new MyStore(clock)));</c>
/// and a theory <c>[Theory, MemberData(nameof(Contract))] public Task Keeps_the_contract(SessionStoreCase c) =&gt; c.RunAsync();</c>,
/// or one fact: <c>SessionStoreContract.RunAllAsync(clock =&gt; new MyStore(clock))</c>. F# (Expecto):
/// <c>SessionStoreContract.casesOnClock</c> and the like.</para>
/// <para>Cases run concurrent operations against the store (up to 200 at once) and use fresh random ids, so a store
/// on a shared server can serve every case.</para>
/// </remarks>
[<Sealed; AbstractClass>]
type SessionStoreContract =

    /// The cases' names, in order (making the list runs nothing).
    static let names =
        ContractCases.cases (fun () -> invalidOp "No store is made while listing the cases.") (fun () -> CancellationToken.None) |> List.map fst |> Array.ofList

    /// <summary>The names of the contract's cases, in the order they run.</summary>
    static member CaseNames: IReadOnlyList<string> = Array.copy names :> IReadOnlyList<string>

    /// <summary>The contract's cases for stores made by <paramref name="start"/>, one per case run.</summary>
    /// <param name="start">Makes a fresh store and says how to move its time forward.</param>
    /// <returns>Every case, in order.</returns>
    static member Cases(start: Func<StoreUnderTest>) : IReadOnlyList<SessionStoreCase> =
        if isNull start then nullArg (nameof start)
        names |> Array.mapi (fun index name -> SessionStoreCase(name, index, start.Invoke)) :> IReadOnlyList<SessionStoreCase>

    /// <summary>
    /// The contract's cases for a store that reads a clock: each case hands <paramref name="createStore"/> a
    /// <see cref="T:Sesame.Testing.ManualClock"/> of its own and moves it instead of waiting.
    /// </summary>
    /// <param name="createStore">Makes a fresh, empty store that reads the clock it is given.</param>
    /// <returns>Every case, in order.</returns>
    static member Cases(createStore: Func<TimeProvider, SessionStore>) : IReadOnlyList<SessionStoreCase> =
        if isNull createStore then nullArg (nameof createStore)
        SessionStoreContract.Cases(Func<StoreUnderTest>(fun () -> StoreUnderTest.OnClock createStore))

    /// <summary>
    /// The contract's cases for a store on real time (a server's clock): the cases that let time pass wait for it.
    /// </summary>
    /// <param name="createStore">Makes a fresh, empty store.</param>
    /// <returns>Every case, in order.</returns>
    static member Cases(createStore: Func<SessionStore>) : IReadOnlyList<SessionStoreCase> =
        if isNull createStore then nullArg (nameof createStore)
        SessionStoreContract.Cases(Func<StoreUnderTest>(fun () -> StoreUnderTest.OnRealTime(createStore.Invoke())))

    /// <summary>Runs cases one after another, and fails once for all that failed.</summary>
    /// <param name="cases">The cases (from <c>Cases</c>).</param>
    /// <param name="cancellationToken">Cancels the run.</param>
    /// <returns>A task that completes when every case passed.</returns>
    /// <exception cref="T:Sesame.Testing.StoreContractException">Some cases failed: the message lists each, with what
    /// differed; <see cref="P:Sesame.Testing.StoreContractException.Failures"/> holds one exception per failed case.</exception>
    /// <exception cref="T:System.OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    static member RunAllAsync
        (cases: IEnumerable<SessionStoreCase>, [<Optional; DefaultParameterValue(CancellationToken())>] cancellationToken: CancellationToken)
        : Task =
        if isNull cases then nullArg (nameof cases)
        let cases = Array.ofSeq cases
        task {
            let failures = ResizeArray<StoreContractException>()
            for case in cases do
                try
                    do! case.RunAsync cancellationToken
                with :? StoreContractException as failure ->
                    failures.Add failure
            if failures.Count > 0 then raise (StoreContractException(failures.AsReadOnly(), cases.Length))
        }

    /// <summary>Runs every case against stores made by <paramref name="start"/>, and fails once for all that failed.</summary>
    /// <param name="start">Makes a fresh store and says how to move its time forward.</param>
    /// <param name="cancellationToken">Cancels the run.</param>
    /// <returns>A task that completes when the store kept the whole contract.</returns>
    /// <exception cref="T:Sesame.Testing.StoreContractException">Some cases failed: the message lists each.</exception>
    static member RunAllAsync
        (start: Func<StoreUnderTest>, [<Optional; DefaultParameterValue(CancellationToken())>] cancellationToken: CancellationToken)
        : Task =
        SessionStoreContract.RunAllAsync(SessionStoreContract.Cases start, cancellationToken)

    /// <summary>Runs every case against stores that read a clock (see <c>Cases</c>), and fails once for all that failed.</summary>
    /// <param name="createStore">Makes a fresh, empty store that reads the clock it is given.</param>
    /// <param name="cancellationToken">Cancels the run.</param>
    /// <returns>A task that completes when the store kept the whole contract.</returns>
    /// <exception cref="T:Sesame.Testing.StoreContractException">Some cases failed: the message lists each.</exception>
    static member RunAllAsync
        (createStore: Func<TimeProvider, SessionStore>, [<Optional; DefaultParameterValue(CancellationToken())>] cancellationToken: CancellationToken)
        : Task =
        SessionStoreContract.RunAllAsync(SessionStoreContract.Cases createStore, cancellationToken)

    /// <summary>Runs every case against stores on real time (see <c>Cases</c>), and fails once for all that failed.</summary>
    /// <param name="createStore">Makes a fresh, empty store.</param>
    /// <param name="cancellationToken">Cancels the run.</param>
    /// <returns>A task that completes when the store kept the whole contract.</returns>
    /// <exception cref="T:Sesame.Testing.StoreContractException">Some cases failed: the message lists each.</exception>
    static member RunAllAsync
        (createStore: Func<SessionStore>, [<Optional; DefaultParameterValue(CancellationToken())>] cancellationToken: CancellationToken)
        : Task =
        SessionStoreContract.RunAllAsync(SessionStoreContract.Cases createStore, cancellationToken)

/// <summary>
/// The store contract from F#: the cases as a list, for an Expecto test list (or any framework).
/// </summary>
/// <remarks>
/// Expecto: <c>testList "my store" [ for case in SessionStoreContract.casesOnClock (fun clock -> new MyStore(clock)) -> testCaseTask case.Name (fun () -> task { do! case.RunAsync() }) ]</c>.
/// </remarks>
[<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module SessionStoreContract =

    /// <summary>The contract's cases for stores made by <paramref name="start"/>: a store and how its time moves.</summary>
    /// <param name="start">Makes a fresh store for a case, and says how to let time pass for it.</param>
    /// <returns>Every case, in order.</returns>
    let casesWith (start: unit -> StoreUnderTest) : SessionStoreCase list = List.ofSeq (SessionStoreContract.Cases(Func<StoreUnderTest> start))

    /// <summary>The contract's cases for a store that reads a clock: each case gets a <see cref="T:Sesame.Testing.ManualClock"/>
    /// of its own, moved instead of waiting.</summary>
    /// <param name="createStore">Makes a fresh, empty store that reads the clock it is given.</param>
    /// <returns>Every case, in order.</returns>
    let casesOnClock (createStore: TimeProvider -> #SessionStore) : SessionStoreCase list =
        List.ofSeq (SessionStoreContract.Cases(Func<TimeProvider, SessionStore>(fun clock -> createStore clock :> SessionStore)))

    /// <summary>The contract's cases for a store on real time (a server's clock): the cases that let time pass wait.</summary>
    /// <param name="createStore">Makes a fresh, empty store.</param>
    /// <returns>Every case, in order.</returns>
    let casesOnRealTime (createStore: unit -> #SessionStore) : SessionStoreCase list =
        List.ofSeq (SessionStoreContract.Cases(Func<SessionStore>(fun () -> createStore () :> SessionStore)))

    /// <summary>Runs cases one after another and fails once, with a <see cref="T:Sesame.Testing.StoreContractException"/>
    /// listing every case that failed.</summary>
    /// <param name="cancellationToken">Cancels the run.</param>
    /// <param name="cases">The cases to run.</param>
    /// <returns>A task that completes when every case passed.</returns>
    let runAllAsync (cancellationToken: CancellationToken) (cases: SessionStoreCase seq) : Task = SessionStoreContract.RunAllAsync(cases, cancellationToken)
