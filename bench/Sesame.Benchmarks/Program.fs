module Sesame.Benchmarks.Program

open BenchmarkDotNet.Running

/// Marks this assembly, where the benchmark classes live.
type private Marker = class end

/// Runs the benchmarks chosen on the command line (e.g. --filter '*Fold*'), or asks which.
[<EntryPoint>]
let main args =
    BenchmarkSwitcher.FromAssembly(typeof<Marker>.Assembly).Run(args) |> ignore
    0
