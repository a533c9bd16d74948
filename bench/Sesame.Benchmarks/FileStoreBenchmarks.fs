module Sesame.Benchmarks.FileStoreBenchmarks

// Filled in by the file-store work (issue 4).
