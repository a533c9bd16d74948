/// Driving one route with wrk and reading its numbers back.
module Sesame.LoadTest.Wrk

open System
open System.Globalization
open System.IO

/// How hard and how long each row is driven.
type Load = { Threads: int; Connections: int; Duration: TimeSpan; WarmUp: TimeSpan }

/// What one wrk run measured.
type Measured = {
    RequestsPerSecond: float
    P50Ms: float
    P99Ms: float
    Requests: int64
    /// Connect, read, write and timeout errors, and responses that were not 2xx/3xx.
    Errors: int64
    /// CPU time the app used per request, in microseconds (user + system): less at the mercy of other
    /// processes competing for the cores than throughput is.
    AppCpuUs: float
    /// CPU time redis-server used per request in the same run, in microseconds (it shares the cores).
    RedisCpuUs: float
}

/// wrk's `done` callback prints one machine-readable line: requests, duration (µs), p50 and p99 (µs), errors.
let private script =
    """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout + e.status))
end
"""

let private scriptPath =
    lazy
        (let path = Path.Combine(Path.GetTempPath(), $"sesame-loadtest-{Environment.ProcessId}.lua")
         File.WriteAllText(path, script)
         path)

let private run (load: Load) (appCpu: unit -> TimeSpan) (redisCpu: unit -> TimeSpan) (duration: TimeSpan) (url: string) (cookie: string option) =
    let header =
        match cookie with
        | Some c -> $" -H \"Cookie: {c}\""
        | None -> ""
    let seconds = max 1 (int (Math.Round duration.TotalSeconds))
    let args = $"-t{load.Threads} -c{load.Connections} -d{seconds}s --timeout 5s -s \"{scriptPath.Value}\"{header} {url}"
    let cpuBefore = appCpu ()
    let redisBefore = redisCpu ()
    let code, output = Machine.capture "wrk" args
    let cpu = appCpu () - cpuBefore
    let redis = redisCpu () - redisBefore
    if code <> 0 then failwith $"wrk {args} failed:\n{output}"
    match output.Split('\n') |> Array.tryFind (fun l -> l.StartsWith "RESULT ") with
    | None -> failwith $"wrk printed no RESULT line:\n{output}"
    | Some line ->
        let n = line.Split(' ') |> Array.skip 1 |> Array.map (fun s -> Int64.Parse(s, CultureInfo.InvariantCulture))
        {
            Requests = n[0]
            RequestsPerSecond = float n[0] / (float n[1] / 1e6)
            P50Ms = float n[2] / 1000.0
            P99Ms = float n[3] / 1000.0
            Errors = n[4]
            AppCpuUs = cpu.TotalMicroseconds / float (max 1L n[0])
            RedisCpuUs = redis.TotalMicroseconds / float (max 1L n[0])
        }

/// Warms the route up (JIT tiers, caches, connection pools), then measures it.
let measure (load: Load) (appCpu: unit -> TimeSpan) (redisCpu: unit -> TimeSpan) (url: string) (cookie: string option) =
    if load.WarmUp > TimeSpan.Zero then run load appCpu redisCpu load.WarmUp url cookie |> ignore
    run load appCpu redisCpu load.Duration url cookie

let cleanUp () = if scriptPath.IsValueCreated && File.Exists scriptPath.Value then File.Delete scriptPath.Value
