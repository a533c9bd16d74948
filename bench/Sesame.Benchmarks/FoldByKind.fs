/// The fold goal's case (ServerStoreArguments) split by the kind of its updates: 100 updates that are all increments of
/// ten counters, all sets of five cart items' quantities, or all keys set and then removed (fifty pairs), each folded as
/// a store that writes the patch folds them (checked as a handler records them, then folded). Says which kind the
/// fold's time a request goes to.
/// Run: dotnet run -c Release --project bench/Sesame.Benchmarks -- --filter '*FoldByKind*'
module Sesame.Benchmarks.FoldByKind

open BenchmarkDotNet.Attributes
open Sesame
open Sesame.Benchmarks.CoreBenchmarks

[<MemoryDiagnoser>]
type FoldByKind() =
    let mutable updates: Update[] = [||]

    /// The kind of all 100 updates.
    [<Params("increments", "sets", "set then removed")>]
    member val Kind = "increments" with get, set

    [<GlobalSetup>]
    member this.Setup() =
        let ofKind (change: Change) =
            match this.Kind, change with
            | "increments", Bump _ -> true
            | "sets", SetQty _ -> true
            | "set then removed", (SetPref _ | DropPref _) -> true
            | _ -> false
        updates <- changes 400 |> List.filter ofKind |> List.truncate 100 |> toUpdates |> Array.ofList
        if updates.Length <> 100 then failwith $"{this.Kind}: {updates.Length} updates, not 100."

    /// The updates checked and folded; gives how many the fold keeps.
    [<Benchmark>]
    member _.Fold() : int = (Patch.record updates).Updates.Length
