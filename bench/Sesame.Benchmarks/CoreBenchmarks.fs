module Sesame.Benchmarks.CoreBenchmarks

// Filled in by the core benchmarks (issue 2).
