/// The flood run: the sample's app under `wrk` without cookies (a new session per request) and a growth attack (POSTs
/// that enlarge carts), while one established client keeps using its session; RSS, sessions and bytes held sampled
/// every second. Each run is made on a build from before the bounds and on this one, in the same conditions.
module Sesame.FloodBench.Flood

open System
open System.Collections.Concurrent
open System.Diagnostics
open System.IO
open System.Net
open System.Net.Http
open System.Text
open System.Threading
open System.Threading.Tasks
open Sesame.LoadTest

/// A build of the app: what it is called in the report, the command that runs it, and environment variables for the
/// app's process (a runtime setting such as a GC heap limit).
type Build = { Name: string; Exe: string; Args: string; Environment: (string * string) list }

/// The app in a child process: its output lines are kept; it is stopped with SIGTERM (a graceful stop that flushes the
/// file store), killed if it does not stop.
type Server(build: Build, port: int, store: string, tiny: bool) =
    let lines = ConcurrentQueue<string>()
    let ready = new ManualResetEventSlim(false)
    let args = $"""{build.Args} serve {port} "{store}"{(if tiny then " tiny" else "")}"""
    let proc =
        let start = ProcessStartInfo(build.Exe, args, UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true)
        for name, value in build.Environment do
            start.Environment[name] <- value
        Process.Start start
    do
        let keep (line: string) =
            if not (isNull line) then
                lines.Enqueue line
                if line.StartsWith "READY" then ready.Set()
        proc.OutputDataReceived.Add(fun e -> keep e.Data)
        proc.ErrorDataReceived.Add(fun e -> keep e.Data)
        proc.BeginOutputReadLine()
        proc.BeginErrorReadLine()
        if not (ready.Wait(TimeSpan.FromSeconds 120.0)) then
            (try
                proc.Kill true
             with _ ->
                 ())
            failwith $"The app did not start: {String.Join('\n', lines)}"

    member _.Url = $"http://127.0.0.1:{port}"
    member _.Pid = proc.Id

    /// The "OPENED ms sessions ..." line: how long opening the store took, and what it held.
    member _.Opened =
        lines
        |> Seq.tryFind (fun l -> l.StartsWith "OPENED ")
        |> Option.map (fun l -> l.Split ' ' |> Array.skip 1 |> Array.map Int64.Parse)
        |> Option.defaultValue [||]

    /// Resident set size now, and its peak so far, in MiB (from /proc; zero once the process is gone).
    member _.Rss() =
        let read (field: string) =
            try
                File.ReadLines $"/proc/{proc.Id}/status"
                |> Seq.tryFind (fun l -> l.StartsWith field)
                |> Option.map (fun l -> float (l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0)
                |> Option.defaultValue 0.0
            with :? IOException ->
                0.0
        read "VmRSS:", read "VmHWM:"

    member _.Output = List.ofSeq lines

    /// Why the app stopped on its own, if it did: its exit code and the first line that names an exception.
    member _.Died: string option =
        if not proc.HasExited then
            None
        else
            let cause = lines |> Seq.tryFind (fun l -> l.Contains "Exception") |> Option.defaultValue "no exception printed"
            Some $"exited with code {proc.ExitCode}: {cause.Trim()}"

    interface IDisposable with
        member _.Dispose() =
            if not proc.HasExited then
                Machine.capture "kill" $"-TERM {proc.Id}" |> ignore
                if not (proc.WaitForExit 30_000) then
                    proc.Kill true
                    proc.WaitForExit()
            proc.Dispose()
            ready.Dispose()

/// One second of a run.
type Sample = {
    Seconds: float
    RssMiB: float
    Sessions: int64
    /// As the byte bound counts them; negative where the store had no such count.
    HeldMiB: float
    HeapMiB: float
}

/// What one run measured.
type Run = {
    Build: string
    Store: string
    Samples: Sample list
    PeakRssMiB: float
    /// Requests per second of wrk without cookies: each one creates a session.
    NewSessions: Wrk.Measured
    Posts: int
    Refused: int
    PostErrors: int
    /// Whether every visit of the established client found its count one higher than the last.
    Kept: bool
    Visits: int
    LostAt: float list
    /// Reopening the store after the run (the file store replays its file): ms, and the sessions it held.
    ReopenMs: int64
    ReopenSessions: int64
    /// The reopened app's peak RSS once its store is open, in MiB: what replay took.
    ReopenPeakRssMiB: float
    /// Why reopening the file failed, if it did (the run itself went through).
    ReopenError: string option
    FileBytes: int64
    /// Set when the app stopped on its own during the run (say, out of memory under a heap limit).
    Died: string option
}

let private newClient () =
    let handler = new SocketsHttpHandler(UseCookies = true, CookieContainer = CookieContainer(), PooledConnectionLifetime = TimeSpan.FromMinutes 5.0)
    new HttpClient(handler, Timeout = TimeSpan.FromSeconds 60.0)

/// The established client: two requests to start (it is a returning session from then on), then one every period; the
/// counter must go up by one each time, or the session was lost. Gives (kept, visits, seconds at which it was lost).
let private established (url: string) (period: TimeSpan) (clock: Stopwatch) (stop: CancellationToken) = task {
    use client = newClient ()
    let visit () = task {
        let! text = client.GetStringAsync(url + "/")
        return Int32.Parse(text.Split(' ')[0])
    }
    let! _ = visit ()
    let! second = visit ()
    let mutable expected = second + 1
    let mutable visits = 2
    let lost = ResizeArray<float>()
    if second <> 2 then lost.Add clock.Elapsed.TotalSeconds
    while not stop.IsCancellationRequested do
        try
            do! Task.Delay(period, stop)
            let! n = visit ()
            visits <- visits + 1
            if n <> expected then lost.Add clock.Elapsed.TotalSeconds
            expected <- n + 1
        with :? OperationCanceledException when stop.IsCancellationRequested ->
            ()
    return lost.Count = 0, visits, List.ofSeq lost
}

/// Counts of the growth attack.
type private Attack() =
    member val Posts = 0 with get, set
    member val Refused = 0 with get, set
    member val Errors = 0 with get, set

/// One attacker: adds items with a large sku to its cart until the cart passes MaxSessionBytes (the commit is refused,
/// a 500), then starts another cart with a fresh cookie jar.
let private attacker (url: string) (skuBytes: int) (attack: Attack) (stop: CancellationToken) = task {
    let mutable client = newClient ()
    let padding = String('x', skuBytes)
    while not stop.IsCancellationRequested do
        try
            let body = $"""{{"sku":"{Guid.NewGuid():N}{padding}","qty":1}}"""
            use content = new StringContent(body, Encoding.UTF8, "application/json")
            use! response = client.PostAsync(url + "/cart/items", content, stop)
            let! _ = response.Content.ReadAsByteArrayAsync(stop)
            if response.IsSuccessStatusCode then
                lock attack (fun () -> attack.Posts <- attack.Posts + 1)
            else
                lock attack (fun () -> attack.Refused <- attack.Refused + 1)
                client.Dispose()
                client <- newClient ()
        with
        | :? OperationCanceledException when stop.IsCancellationRequested -> ()
        | _ ->
            lock attack (fun () -> attack.Errors <- attack.Errors + 1)
            client.Dispose()
            client <- newClient ()
    client.Dispose()
}

/// The run's settings.
type Settings = { Duration: TimeSpan; Attackers: int; SkuBytes: int; EstablishedPeriod: TimeSpan; Load: Wrk.Load }

let private storeArgument (store: string) (directory: string) (tag: string) =
    if store = "memory" then "memory" else $"""file:{Path.Combine(directory, tag + ".db")}"""

/// One flood run on a fresh app: wrk without cookies, the growth attack and the established client together.
let run (settings: Settings) (build: Build) (store: string) (directory: string) (tiny: bool) : Run =
    let tag = $"""{build.Name}-{store}{(if tiny then "-tiny" else "")}-{Guid.NewGuid():N}"""
    let storeText = storeArgument store directory tag
    let port = Machine.freePort ()
    let samples = ResizeArray<Sample>()
    let mutable peak = 0.0
    let clock = Stopwatch.StartNew()
    let result =
        use server = new Server(build, port, storeText, tiny)
        use http = new HttpClient(Timeout = TimeSpan.FromSeconds 10.0)
        use stop = new CancellationTokenSource()
        let attack = Attack()
        clock.Restart()
        let sample () =
            let rss, hwm = server.Rss()
            peak <- max peak hwm
            try
                let parts = http.GetStringAsync(server.Url + "/_flood/stats").GetAwaiter().GetResult().Split ' ' |> Array.map Int64.Parse
                samples.Add {
                    Seconds = clock.Elapsed.TotalSeconds
                    RssMiB = rss
                    Sessions = parts[0]
                    HeldMiB = (if parts[1] < 0L then -1.0 else float parts[1] / 1048576.0)
                    HeapMiB = float parts[2] / 1048576.0
                }
            with _ ->
                samples.Add { Seconds = clock.Elapsed.TotalSeconds; RssMiB = rss; Sessions = -1L; HeldMiB = -1.0; HeapMiB = -1.0 }
        sample ()
        let sampler =
            Task.Run(fun () ->
                while not stop.IsCancellationRequested do
                    Thread.Sleep 1000
                    sample ())
        let client = established server.Url settings.EstablishedPeriod clock stop.Token
        let attackers = [ for _ in 1 .. settings.Attackers -> attacker server.Url settings.SkuBytes attack stop.Token :> Task ]
        // The app may die under a heap limit: its last CPU time stands, and the run says so.
        let mutable lastCpu = TimeSpan.Zero
        let cpu () =
            try
                lastCpu <- Machine.cpuTime server.Pid
            with :? IOException ->
                ()
            lastCpu
        let flood =
            Wrk.measure { settings.Load with Duration = settings.Duration; WarmUp = TimeSpan.Zero } cpu (fun () -> TimeSpan.Zero) (server.Url + "/") None
        stop.Cancel()
        Task.WaitAll(Array.ofList attackers, TimeSpan.FromSeconds 60.0) |> ignore
        sampler.Wait()
        let kept, visits, lostAt =
            try
                client.GetAwaiter().GetResult()
            with _ when server.Died.IsSome ->
                false, 0, [ clock.Elapsed.TotalSeconds ]
        let _, hwm = server.Rss()
        peak <- max peak hwm
        {
            Build = build.Name
            Store = (if tiny then "memory, room for 1 session" else store)
            Samples = List.ofSeq samples
            PeakRssMiB = peak
            NewSessions = flood
            Posts = attack.Posts
            Refused = attack.Refused
            PostErrors = attack.Errors
            Kept = kept
            Visits = visits
            LostAt = lostAt
            ReopenMs = -1L
            ReopenSessions = -1L
            ReopenPeakRssMiB = -1.0
            ReopenError = None
            FileBytes = -1L
            Died = server.Died
        }
    if store = "file" && not tiny && result.Died.IsNone then
        // Restart on the file the run left: replay at the bound.
        let file = storeText.Substring 5
        let bytes = FileInfo(file).Length
        try
            use again = new Server(build, Machine.freePort (), storeText, false)
            let opened = again.Opened
            { result with ReopenMs = opened[0]; ReopenSessions = opened[1]; ReopenPeakRssMiB = snd (again.Rss()); FileBytes = bytes }
        with e ->
            // Reported with the run, which itself went through.
            { result with ReopenError = Some e.Message; FileBytes = bytes }
    else
        result

/// New-session throughput alone (wrk without cookies, nothing else), on a fresh app, after a warm-up.
let throughput (load: Wrk.Load) (build: Build) (store: string) (directory: string) : Wrk.Measured =
    let storeText = storeArgument store directory $"{build.Name}-{store}-throughput-{Guid.NewGuid():N}"
    use server = new Server(build, Machine.freePort (), storeText, false)
    Wrk.measure load (fun () -> Machine.cpuTime server.Pid) (fun () -> TimeSpan.Zero) (server.Url + "/") None

/// The in-process timings of the memory store's paths (Commits.fs) of a build: commit, load and create, in ns.
let commits (build: Build) : float[] =
    let code, output = Machine.capture build.Exe $"{build.Args} commits"
    match output.Split('\n') |> Array.tryFind (fun l -> l.StartsWith "COMMITS ") with
    | Some line when code = 0 ->
        line.Split ' ' |> Array.skip 1 |> Array.take 3 |> Array.map (fun s -> Double.Parse(s, Globalization.CultureInfo.InvariantCulture))
    | _ -> failwith $"The commit timings of {build.Name} failed:\n{output}"
