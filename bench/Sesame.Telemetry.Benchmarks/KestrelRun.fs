/// The issue's own measure of listening: throughput of the memory-store counter over real HTTP (Kestrel on loopback,
/// driven by wrk, a process of its own), with the meter unlistened against listened, in one run. The app and its
/// listener live in this process, so each way of listening is switched on between wrk runs of the same app: every
/// round runs each way once, in a new random order, and each way's ratio is taken to the same round's unlistened run.
///
///   dotnet bin/Release/net10.0/Sesame.Telemetry.Benchmarks.dll wrk [rounds] [seconds]
module Sesame.Telemetry.Benchmarks.KestrelRun

open System
open System.Collections.Generic
open System.Diagnostics
open System.Globalization
open System.IO
open System.Net
open System.Net.Http
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Hosting
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Logging
open Sesame
open Sesame.Telemetry.Benchmarks.CounterBenchmarks

/// wrk's `done` callback prints requests and duration (µs) on one line.
let private script =
    """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout + e.status))
end
"""

/// The process's user + system CPU time.
let private cpu () = Process.GetCurrentProcess().TotalProcessorTime

/// Runs wrk once against the URL with the cookie; gives requests per second and the app's CPU µs per request.
let private drive (scriptPath: string) (seconds: int) (url: string) (cookie: string) =
    let start = ProcessStartInfo("wrk", $"-t2 -c32 -d{seconds}s -s \"{scriptPath}\" -H \"Cookie: {cookie}\" {url}", RedirectStandardOutput = true)
    let before = cpu ()
    use wrk = Process.Start start
    let output = wrk.StandardOutput.ReadToEnd()
    wrk.WaitForExit()
    let used = cpu () - before
    match output.Split('\n') |> Array.tryFind (fun l -> l.StartsWith "RESULT ") with
    | None -> failwith $"wrk printed no RESULT line:\n{output}"
    | Some line ->
        let n = line.Split(' ') |> Array.skip 1 |> Array.map (fun s -> Int64.Parse(s, CultureInfo.InvariantCulture))
        if n[2] <> 0L then failwith $"wrk saw {n[2]} errors"
        struct (float n[0] / (float n[1] / 1e6), used.TotalMicroseconds / float n[0])

let run (rounds: int) (seconds: int) =
    let builder = WebApplication.CreateBuilder()
    builder.Logging.ClearProviders() |> ignore
    builder.WebHost.ConfigureKestrel(fun kestrel -> kestrel.Listen(IPAddress.Loopback, 0)) |> ignore
    builder.Services.AddSesame().AddMemoryStore() |> ignore
    use app = builder.Build()
    app.UseSesame() |> ignore
    app.Run(
        RequestDelegate(fun ctx -> task {
            let! session = Session.loadAsync ctx
            let times = session |> Session.increment "times" 1m
            do! ctx.Response.WriteAsync $"{times} times!"
        })
    )
    app.StartAsync().GetAwaiter().GetResult()
    let url = app.Urls |> Seq.head
    // A returning visitor: the first request creates the session; every measured one loads and commits it.
    let cookie =
        use client = new HttpClient()
        use response = client.GetAsync(url).GetAwaiter().GetResult()
        let setCookie = response.Headers.GetValues "Set-Cookie" |> Seq.head
        setCookie.Substring(0, setCookie.IndexOf ';')
    let scriptPath = Path.Combine(Path.GetTempPath(), $"sesame-telemetry-{Environment.ProcessId}.lua")
    File.WriteAllText(scriptPath, script)
    let modes = Enum.GetValues<Listening>()
    let throughput = Dictionary<Listening, ResizeArray<float>>()
    let cpuRatios = Dictionary<Listening, ResizeArray<float>>()
    let rates = Dictionary<Listening, ResizeArray<float>>()
    for mode in modes do
        throughput[mode] <- ResizeArray()
        cpuRatios[mode] <- ResizeArray()
        rates[mode] <- ResizeArray()
    // Warm-up: every way once, not counted.
    for mode in modes do
        use _ = listen mode
        drive scriptPath 2 url cookie |> ignore
    let random = Random(17)
    for _ in 1..rounds do
        let measured = Dictionary<Listening, struct (float * float)>()
        for mode in modes |> Array.sortBy (fun _ -> random.Next()) do
            use _ = listen mode
            measured[mode] <- drive scriptPath seconds url cookie
        let struct (baseRate, baseCpu) = measured[Listening.Unlistened]
        for mode in modes do
            let struct (rate, cpuUs) = measured[mode]
            rates[mode].Add rate
            throughput[mode].Add(rate / baseRate)
            cpuRatios[mode].Add(cpuUs / baseCpu)
        eprintf "."
    eprintfn ""
    File.Delete scriptPath
    app.StopAsync().GetAwaiter().GetResult()
    let median (values: ResizeArray<float>) =
        let sorted = values |> Seq.sort |> Array.ofSeq
        if sorted.Length % 2 = 1 then sorted[sorted.Length / 2] else (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2.0
    printfn
        "%d rounds of wrk -t2 -c32 -d%ds over Kestrel on loopback, %s, %d logical cores"
        rounds
        seconds
        (Runtime.InteropServices.RuntimeInformation.FrameworkDescription)
        Environment.ProcessorCount
    printfn ""
    printfn "| Listening | Requests/s (median) | Throughput ratio (median of pairs) | App CPU per request ratio (median of pairs) |"
    printfn "|---|---:|---:|---:|"
    for mode in modes do
        printfn "| %A | %.0f | %.3f | %.3f |" mode (median rates[mode]) (median throughput[mode]) (median cpuRatios[mode])
