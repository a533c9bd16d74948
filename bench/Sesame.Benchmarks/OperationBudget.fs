/// What an operation's time budget costs, as the Redis store bounds each of its operations (RedisStore's `bounded`): a
/// CancellationTokenSource linked to the caller's token, its timer set to the operation timeout, and the operation
/// awaited through WaitAsync on that token; against the same operation awaited bare. The operation completes on the
/// thread pool, as a reply read from a socket does. A model of the pattern, not the store's code, which is not
/// reachable alone: it says how much of the store's cost beyond its commands the budget can be.
/// Run: dotnet run -c Release --project bench/Sesame.Benchmarks -- --filter '*OperationBudget*'
module Sesame.Benchmarks.OperationBudget

open System
open System.Threading
open System.Threading.Tasks
open BenchmarkDotNet.Attributes

/// An operation that completes on the thread pool.
let private operation (_: CancellationToken) : Task<int> = task {
    do! Task.Yield()
    return 1
}

[<MemoryDiagnoser>]
type OperationBudget() =
    // A caller's token that can be cancelled, as a request's is.
    let caller = new CancellationTokenSource()
    let timeout = TimeSpan.FromSeconds 5.0

    /// The operation awaited bare.
    [<Benchmark(Baseline = true)>]
    member _.Bare() : Task<int> = operation caller.Token

    /// The operation within a budget, as the store runs each of its operations.
    [<Benchmark>]
    member _.WithinBudget() : Task<int> = task {
        use budget = CancellationTokenSource.CreateLinkedTokenSource caller.Token
        budget.CancelAfter timeout
        let running = operation budget.Token
        return! running.WaitAsync(budget.Token)
    }
