module Sesame.Telemetry.Benchmarks.Program

open System
open System.Collections.Generic
open System.Diagnostics
open System.Threading.Tasks
open BenchmarkDotNet.Running
open Sesame.Telemetry.Benchmarks.CounterBenchmarks

/// The process's CPU time in microseconds (clock_gettime of CLOCK_PROCESS_CPUTIME_ID: nanosecond resolution, and
/// time the process waits for a core while other processes run does not count).
module private Cpu =
    [<Struct; Runtime.InteropServices.StructLayout(Runtime.InteropServices.LayoutKind.Sequential)>]
    type TimeSpec =
        val mutable Seconds: int64
        val mutable Nanoseconds: int64

    [<Runtime.InteropServices.DllImport("libc", EntryPoint = "clock_gettime")>]
    extern int clockGettime(int clock, TimeSpec& time)

    let microseconds () =
        let mutable time = TimeSpec()
        if clockGettime (2, &time) <> 0 then failwith "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed"
        float time.Seconds * 1e6 + float time.Nanoseconds / 1e3

/// The cost of listening, measured so that a busy machine cannot fake it: every round runs each way of listening
/// (in a new random order) for one batch of requests, in one process, and each round's ratio to its own unlistened
/// batch is kept. The median of those paired ratios is the figure; slow spells hit all ways of one round alike.
/// Both the process's CPU time (what the requests cost; other processes' load does not count) and wall time.
let interleaved (rounds: int) =
    use app = new CounterApp()
    let modes = Enum.GetValues<Listening>()
    let shapes = [ "pipeline", (fun () -> app.ViaPipeline()), 4000; "request", (fun () -> app.ViaHttp()), 1000 ]
    let run (request: unit -> Task) (count: int) =
        for _ in 1..count do
            (request ()).GetAwaiter().GetResult()
    let perRequest = Dictionary<struct (string * Listening), ResizeArray<float>>()
    let ratios = Dictionary<struct (string * Listening), ResizeArray<float>>()
    let wallRatios = Dictionary<struct (string * Listening), ResizeArray<float>>()
    let bytes = Dictionary<struct (string * Listening), float>()
    for name, request, batch in shapes do
        for mode in modes do
            perRequest[struct (name, mode)] <- ResizeArray()
            ratios[struct (name, mode)] <- ResizeArray()
            wallRatios[struct (name, mode)] <- ResizeArray()
            use _ = listen mode
            run request batch
    let random = Random(17)
    for round in 1..rounds do
        for name, request, batch in shapes do
            let times = Dictionary<Listening, float>()
            let walls = Dictionary<Listening, float>()
            for mode in modes |> Array.sortBy (fun _ -> random.Next()) do
                use _ = listen mode
                run request (batch / 10)
                GC.Collect()
                let watch = Stopwatch.StartNew()
                let cpu = Cpu.microseconds ()
                let allocated = GC.GetTotalAllocatedBytes true
                run request batch
                times[mode] <- (Cpu.microseconds () - cpu) / float batch
                bytes[struct (name, mode)] <- float (GC.GetTotalAllocatedBytes true - allocated) / float batch
                walls[mode] <- watch.Elapsed.TotalMicroseconds / float batch
            for mode in modes do
                perRequest[struct (name, mode)].Add times[mode]
                ratios[struct (name, mode)].Add(times[mode] / times[Listening.Unlistened])
                wallRatios[struct (name, mode)].Add(walls[mode] / walls[Listening.Unlistened])
        eprintf "."
    eprintfn ""
    let median (values: ResizeArray<float>) =
        let sorted = values |> Seq.sort |> Array.ofSeq
        if sorted.Length % 2 = 1 then sorted[sorted.Length / 2] else (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2.0
    printfn "%d rounds, %s, %d logical cores" rounds (Runtime.InteropServices.RuntimeInformation.FrameworkDescription) Environment.ProcessorCount
    printfn ""
    printfn
        "| Shape | Listening | CPU µs/request (median) | CPU ratio (median of pairs) | CPU ratio (quartiles) | Wall-time ratio (median of pairs) | Allocated B/request |"
    printfn "|---|---|---:|---:|---|---:|---:|"
    for name, _, _ in shapes do
        for mode in modes do
            let r = ratios[struct (name, mode)] |> Seq.sort |> Array.ofSeq
            printfn
                "| %s | %A | %.2f | %.3f | %.3f–%.3f | %.3f | %.0f |"
                name
                mode
                (median perRequest[struct (name, mode)])
                (median ratios[struct (name, mode)])
                r[r.Length / 4]
                r[3 * r.Length / 4]
                (median wallRatios[struct (name, mode)])
                bytes[struct (name, mode)]

/// Runs the BenchmarkDotNet benchmarks (its arguments, e.g. --filter '*'), `ab [rounds]` for the interleaved run, or
/// `wrk [rounds] [seconds]` for throughput over Kestrel.
[<EntryPoint>]
let main args =
    match List.ofArray args with
    | "wrk" :: rest ->
        match rest with
        | [ rounds; seconds ] -> KestrelRun.run (int rounds) (int seconds)
        | [ rounds ] -> KestrelRun.run (int rounds) 3
        | _ -> KestrelRun.run 10 3
    | "ab" :: rest ->
        interleaved (
            match rest with
            | [ rounds ] -> int rounds
            | _ -> 30
        )
    | _ -> BenchmarkSwitcher.FromTypes([| typeof<CounterBenchmarks> |]).Run(args) |> ignore
    0
