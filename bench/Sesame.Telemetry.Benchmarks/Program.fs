module Sesame.Telemetry.Benchmarks.Program

open BenchmarkDotNet.Running

/// Runs the benchmarks (BenchmarkDotNet's arguments, e.g. --filter '*Pipeline*'):
///   dotnet run -c Release --project bench/Sesame.Telemetry.Benchmarks -- --filter '*'
[<EntryPoint>]
let main args =
    BenchmarkSwitcher.FromTypes([| typeof<CounterBenchmarks.CounterBenchmarks> |]).Run(args) |> ignore
    0
