/// Bounds under hostile load, measured: the C# sample's app on the memory store and on the file store with default
/// bounds, flooded by wrk without cookies and grown by POSTs to its cart, while one established client keeps using its
/// session; on a build from before the bounds and on this one, in one run. Writes its section of docs/performance.md
/// and docs/flood.svg.
///
///   dotnet fsi build.fsx flood [-- --duration 60 --rounds 2 --attackers 4 --sku-kb 64 --period 5 --baseline REF]
///
/// One flood of this build alone, printed (for trying a change or a runtime setting; --keep leaves the file store's file):
///
///   dotnet run -c Release --project bench/Sesame.FloodBench -- once memory|file [--heap-limit MiB] [--keep]
module Sesame.FloodBench.Program

open System
open System.Globalization
open System.IO
open System.Text
open System.Threading
open Sesame.LoadTest
open Sesame.LoadTest.Figures
open Sesame.FloodBench.Flood

/// The commit before the bounds: the parent of the commit that added the eviction order.
let private defaultBaseline (root: string) =
    let _, added = Machine.capture "git" $"-C \"{root}\" log --diff-filter=A --format=%%H -- src/Sesame.Fs/Eviction.fs"
    match added.Split('\n', StringSplitOptions.RemoveEmptyEntries) |> Array.tryLast with
    | Some commit -> commit.Trim() + "^"
    | None -> failwith "Cannot find the commit that added src/Sesame.Fs/Eviction.fs; pass --baseline REF."

/// Builds this project on the sources of <c>reference</c> (its own sources copied in), in a folder of its own.
let private buildBaseline (root: string) (reference: string) : Build =
    let _, sha = Machine.capture "git" $"-C \"{root}\" rev-parse --short {reference}"
    let sha = sha.Trim()
    let directory = Path.Combine(Path.GetTempPath(), $"sesame-flood-baseline-{sha}")
    let dll = Path.Combine(directory, "bench", "Sesame.FloodBench", "bin", "Release", "net10.0", "Sesame.FloodBench.dll")
    if Directory.Exists directory then Directory.Delete(directory, true)
    Directory.CreateDirectory directory |> ignore
    let paths = "src samples bench/Sesame.LoadTest Directory.Build.props Directory.Packages.props Sesame.sln"
    let code, output = Machine.capture "sh" $"-c \"git -C '{root}' archive {sha} {paths} | tar -x -C '{directory}'\""
    if code <> 0 then failwith $"git archive {sha} failed:\n{output}"
    let project = Path.Combine(directory, "bench", "Sesame.FloodBench")
    Directory.CreateDirectory project |> ignore
    for file in Directory.GetFiles(Path.Combine(root, "bench", "Sesame.FloodBench")) do
        File.Copy(file, Path.Combine(project, Path.GetFileName file), true)
    // The load test's files this project links are the measuring harness too: today's, not the baseline's.
    for linked in [ "Machine.fs"; "Figures.fs"; "DocSections.fs"; "Wrk.fs" ] do
        File.Copy(Path.Combine(root, "bench", "Sesame.LoadTest", linked), Path.Combine(directory, "bench", "Sesame.LoadTest", linked), true)
    printfn "Building the baseline (%s) in %s" sha directory
    let code, output = Machine.capture "dotnet" $"build \"{project}\" -c Release --nologo -v q"
    if code <> 0 then failwith $"Building the baseline failed:\n{output}"
    { Name = $"before ({sha})"; Exe = "dotnet"; Args = $"\"{dll}\""; Environment = [] }

/// The build with the GC's heap capped (DOTNET_GCHeapHardLimit, in bytes as hex), as a container's memory limit caps it.
let private withHeapLimit (mib: int) (build: Build) = {
    build with
        Name = $"{build.Name}, heap limit {mib} MiB"
        Environment = [ "DOTNET_GCHeapHardLimit", $"0x{int64 mib * 1048576L:X}" ]
}

let private maxOf (f: Sample -> float) (run: Run) = run.Samples |> List.map f |> List.fold max 0.0

/// What restarting the file store's app on its file took (replay), or why it failed; empty for the memory store.
let private reopenText (r: Run) =
    let file = inv "F1" (float r.FileBytes / 1048576.0)
    match r.ReopenError with
    | Some error -> $"**failed** ({file} MiB file): {error}"
    | None when r.ReopenMs >= 0L ->
        $"""{inv "N0" (float r.ReopenMs)} ms, {r.ReopenSessions:N0} sessions, {file} MiB file, peak RSS {inv "F0" r.ReopenPeakRssMiB} MiB"""
    | None -> ""

/// Writes this run's section of docs/performance.md (see DocSections).
let private writeSection (path: string) (section: string) = DocSections.write path "flood" "bench/Sesame.FloodBench" section

/// A flood's settings from the command line (the defaults are the run of record's).
let private settingsOf (args: string[]) : Settings =
    let seconds (name: string) (fallback: int) = TimeSpan.FromSeconds(float (int (option args name (string fallback))))
    {
        Duration = seconds "--duration" 60
        Attackers = int (option args "--attackers" "4")
        SkuBytes = 1024 * int (option args "--sku-kb" "64")
        EstablishedPeriod = seconds "--period" 5
        Load = { Wrk.Threads = 2; Wrk.Connections = 32; Wrk.Duration = seconds "--throughput-seconds" 20; Wrk.WarmUp = TimeSpan.FromSeconds 5.0 }
    }

/// This process's folder for the store files of its runs, created.
let private scratchFolder () =
    let directory = Path.Combine(Path.GetTempPath(), $"sesame-flood-{Environment.ProcessId}")
    Directory.CreateDirectory directory |> ignore
    directory

let private runAll (args: string[]) =
    let root = Machine.repositoryRoot ()
    Machine.ensureTool "wrk" "wrk"
    let machine = Machine.describe ()
    let settings = settingsOf args
    let load = settings.Load
    let rounds = int (option args "--rounds" "2")
    let reference = option args "--baseline" (defaultBaseline root)
    let after =
        let exe, exeArgs = Machine.selfCommand ""
        { Name = "after"; Exe = exe; Args = exeArgs.Trim(); Environment = [] }
    let before = buildBaseline root reference
    let builds = [ before; after ]
    let directory = scratchFolder ()
    printfn "Machine: %d cores, %s; %s" machine.Cores machine.Cpu machine.Runtime

    printfn "The memory store's paths, in process (ns of CPU per operation, 2 threads; 3 rounds):"
    let timings = [
        for round in 1..3 do
            for build in (if round % 2 = 1 then builds else List.rev builds) do
                let t = commits build
                printfn "  %-16s commit %6.1f  load %6.1f  create past the bound %7.1f" build.Name t[0] t[1] t[2]
                build.Name, t
    ]
    let timingOf (build: Build) (i: int) =
        median [
            for name, t in timings do
                if name = build.Name then t[i]
        ]

    printfn
        "New-session throughput alone (wrk -t%d -c%d, %d s after %d s of warm-up; %d rounds, builds alternating):"
        load.Threads
        load.Connections
        (int load.Duration.TotalSeconds)
        (int load.WarmUp.TotalSeconds)
        rounds
    let throughputs = [
        for store in [ "memory"; "file" ] do
            for round in 1..rounds do
                for build in (if round % 2 = 1 then builds else List.rev builds) do
                    let m = throughput load build store directory
                    printfn "  %-6s %-16s %9.0f req/s  p99 %7.2f ms  errors %d" store build.Name m.RequestsPerSecond m.P99Ms m.Errors
                    (store, build.Name), m
    ]
    let throughputOf (store: string) (build: Build) =
        median [
            for key, m in throughputs do
                if key = (store, build.Name) then m.RequestsPerSecond
        ]

    printfn
        "Flood runs (%d s: wrk without cookies, %d attackers growing carts by %d KB a POST, an established client every %d s):"
        (int settings.Duration.TotalSeconds)
        settings.Attackers
        (settings.SkuBytes / 1024)
        (int settings.EstablishedPeriod.TotalSeconds)
    let show (r: Run) =
        printfn
            "  %-6s %-16s new sessions %8.0f/s  peak RSS %6.0f MiB  held ≤ %7.0f sessions, %6.1f MiB  POSTs %d ok, %d refused, %d failed  established kept: %b (%d visits)%s"
            r.Store
            r.Build
            r.NewSessions.RequestsPerSecond
            r.PeakRssMiB
            (maxOf (fun s -> float s.Sessions) r)
            (maxOf (fun s -> s.HeldMiB) r)
            r.Posts
            r.Refused
            r.PostErrors
            r.Kept
            r.Visits
            (match r.Died with
             | Some died -> $"  DIED: {died}"
             | None when r.FileBytes >= 0L -> $"  restart: {reopenText r}"
             | None -> "")
    let runs = [
        for store in [ "memory"; "file" ] do
            for build in builds do
                let r = run settings build store directory false
                show r
                r
    ]
    printfn "Reference for the runtime's own working set: the same load on a memory store with room for one session"
    let referenceRun = run settings after "memory" directory true
    show referenceRun
    // What a container's memory limit does: the same flood with the GC's heap capped at the goal's figure, on both
    // stores; the file store's app is then restarted on its file under the same cap, as a container would be.
    let limitMiB = int (ceil (256.0 + referenceRun.PeakRssMiB))
    printfn "The same flood with the GC heap capped at the byte bound + the runtime's working set (%d MiB):" limitMiB
    let limitRuns = [
        for store in [ "memory"; "file" ] do
            let r = run settings (withHeapLimit limitMiB after) store directory false
            show r
            r
    ]
    Directory.Delete(directory, true)
    Wrk.cleanUp ()

    // The report.
    let date = Figures.generatedAt ()
    let bound = 256.0
    let runtimeMiB = referenceRun.PeakRssMiB
    let text = StringBuilder()
    let add (line: string) = text.AppendLine line |> ignore
    add "## Under a flood: bounds"
    add ""
    add $"Generated by the flood run on {date}, on the machine above ({machine.Cores} cores, {machine.Cpu}; {machine.Runtime}). Reproduce with:"
    add ""
    add "```sh"
    add "dotnet fsi build.fsx flood"
    add "```"
    add ""
    add $"Each run starts the C# sample's app (its endpoints and its store registration, default bounds: 100,000 sessions and"
    add $"256 MiB per store; plus one route that reports what the store holds) in a process of its own, with server GC as the"
    add
        $"sample runs, and for {int settings.Duration.TotalSeconds} s drives it with `wrk -t{load.Threads} -c{load.Connections}` on `GET /` without cookies (every request"
    add $"creates a session), while {settings.Attackers} attackers grow carts (`POST /cart/items`, a {settings.SkuBytes / 1024} KB sku each; a cart refused at"
    add $"`MaxSessionBytes`, 1 MiB, is left and a new one started with a fresh cookie), and one established client (used"
    add
        $"twice before the flood) comes back every {int settings.EstablishedPeriod.TotalSeconds} s and checks that its counter went up by one. RSS and what the store holds"
    add $"are sampled every second. \"Before\" is the same app built from `{reference}`, the code before the bounds, measured in"
    add "the same run (builds alternate, so both share the machine's load)."
    add ""
    add
        "| Store | Build | New sessions/s | Peak RSS | Most sessions held | Most MiB held (as the bound counts) | Cart POSTs ok / refused | Established client kept its session | Restart (replay) |"
    add "|---|---|---:|---:|---:|---:|---:|---|---|"
    for r in runs @ [ referenceRun ] do
        let held = maxOf (fun s -> s.HeldMiB) r
        let heldText = if held <= 0.0 then "not counted" else inv "F1" held
        let lostAt = String.Join(", ", r.LostAt |> List.map (fun s -> inv "F0" s + " s"))
        let kept = if r.Kept then $"yes ({r.Visits} visits)" else $"**no**: lost at {lostAt} ({r.Visits} visits)"
        add
            $"""| {r.Store} | {r.Build} | {inv "N0" r.NewSessions.RequestsPerSecond} | {inv "F0" r.PeakRssMiB} MiB | {inv "N0" (maxOf (fun s -> float s.Sessions) r)} | {heldText} | {r.Posts:N0} / {r.Refused:N0} | {kept} | {reopenText r} |"""
    add ""
    add $"""The runtime's own working set (the last row: the same load, the store holding at most one session): **{inv "F0" runtimeMiB} MiB** peak RSS."""
    for r in runs |> List.filter (fun r -> r.Build = "after") do
        let within = r.PeakRssMiB <= bound + runtimeMiB
        add
            $"""Goal, {r.Store} store: peak RSS {inv "F0" r.PeakRssMiB} MiB {(if within then "≤" else ">")} the byte bound ({inv "F0" bound} MiB) + the runtime's working set ({inv "F0" runtimeMiB} MiB) = {inv "F0" (bound + runtimeMiB)} MiB: **{(if within then "met" else "not met")}**."""
    add ""
    add "Why RSS passes that sum: the byte bound holds (the \"held\" column never passes 256 MiB); the rest is the garbage"
    add "collector's headroom for what requests throw away. Each cart POST here parses a cart of up to 1 MiB and"
    add "writes it back, the sample's handler deserializes it (`Get<List<CartItem>>`) and serializes it into its answer:"
    add "megabytes of garbage a request, much of it strings over 85,000 bytes, which go on the large object heap"
    add "and are freed only by a full collection. The server GC lets the heap grow well past what is live before it"
    add "collects. A memory limit makes it collect sooner: the same flood with the GC's heap capped"
    add $"(`DOTNET_GCHeapHardLimit`, as a container's memory limit sets it) at {limitMiB} MiB, the byte bound plus the runtime's working set:"
    add ""
    add
        "| Store | Heap limit | New sessions/s | Peak RSS | Largest heap after a collection | Most MiB held | Cart POSTs ok / refused | Established client kept its session | Process | Restart (replay) under the limit |"
    add "|---|---:|---:|---:|---:|---:|---:|---|---|---|"
    for r in limitRuns do
        let kept = if r.Kept then $"yes ({r.Visits} visits)" else $"**no** ({r.Visits} visits)"
        let died =
            match r.Died with
            | Some d -> $"**stopped**: {d}"
            | None -> "served to the end"
        add
            $"""| {r.Store} | {limitMiB} MiB | {inv "N0" r.NewSessions.RequestsPerSecond} | {inv "F0" r.PeakRssMiB} MiB | {inv "F0" (maxOf (fun s -> s.HeapMiB) r)} MiB | {inv "F1" (maxOf (fun s -> s.HeldMiB) r)} | {r.Posts:N0} / {r.Refused:N0} | {kept} | {died} | {reopenText r} |"""
    add ""
    add "The heap limit caps the managed heap, not the runtime's native memory (code, thread stacks, the collector's own"
    add "tables), which is what RSS holds beyond it."
    add ""
    add "![RSS and bytes held over time](flood.svg)"
    add ""
    add
        $"New-session throughput alone (`wrk -t{load.Threads} -c{load.Connections}` without cookies, {int load.Duration.TotalSeconds} s after {int load.WarmUp.TotalSeconds} s of warm-up, nothing else; median of {rounds} runs per build, builds alternating):"
    add ""
    add "| Store | Before, req/s | After, req/s | After ÷ before |"
    add "|---|---:|---:|---:|"
    for store in [ "memory"; "file" ] do
        let b, a = throughputOf store before, throughputOf store after
        add $"""| {store} | {inv "N0" b} | {inv "N0" a} | **{inv "F2" (a / b)}** |"""
    add ""
    add "The memory store's own paths in process, two threads, default bounds (ns of CPU per operation, the process's user and"
    add "system time over the operations: steadier than elapsed time on a shared machine; median of 3 runs per build):"
    add "a commit to one of 1,000 live sessions (the compare-and-swap loop, now with the eviction order's bookkeeping), a"
    add "load of one, and the creation of a session in a store full at 100,000 (each creation evicts)."
    add ""
    add "| Path | Before, ns | After, ns | After ÷ before |"
    add "|---|---:|---:|---:|"
    for i, name in [ 0, "commit to a live session"; 1, "load"; 2, "create past the bound (evicts)" ] do
        let b, a = timingOf before i, timingOf after i
        add $"""| {name} | {inv "F0" b} | {inv "F0" a} | **{inv "F2" (a / b)}** |"""
    add ""
    add "A load costs more than before the bounds: the eviction order moves a returning session that is not among the most"
    add "recent sixteenth of its segment to the head, under a lock, and these 1,000 sessions are used evenly, so every load"
    add "moves one. A session that a run of requests uses (each row of the load test) stays at the head and takes no lock."
    let docs = Path.Combine(root, "docs")
    writeSection (Path.Combine(docs, "performance.md")) (text.ToString())
    let colours = dict [ "memory", "#2b7bd9"; "file", "#d9822b" ]
    let series (value: Sample -> float) =
        [
            for r in runs ->
                {
                    Chart.Name = $"{r.Store}, {(if r.Build = after.Name then after.Name else before.Name.Split(' ')[0])}"
                    Chart.Colour = colours[r.Store]
                    Chart.Dash = (if r.Build = after.Name then "" else "5 4")
                    Chart.Points = r.Samples |> List.filter (fun s -> value s >= 0.0) |> List.map (fun s -> s.Seconds, value s)
                }
        ]
        @ [
            {
                Chart.Name = "runtime alone"
                Chart.Colour = "#888888"
                Chart.Dash = ""
                Chart.Points = referenceRun.Samples |> List.filter (fun s -> value s >= 0.0) |> List.map (fun s -> s.Seconds, value s)
            }
        ]
    let panels = [
        {
            Chart.Title = "Resident set size (RSS)"
            Chart.Unit = "MiB"
            Chart.Series = series (fun s -> s.RssMiB)
            Chart.Marks = [ bound + runtimeMiB, $"""bound + runtime alone ({inv "F0" (bound + runtimeMiB)} MiB)""" ]
        }
        {
            Chart.Title = "Held, as the byte bound counts it"
            Chart.Unit = "MiB"
            Chart.Series = series (fun s -> s.HeldMiB)
            Chart.Marks = [ bound, "MaxTotalBytes (256 MiB)" ]
        }
    ]
    let subtitle =
        $"{machine.Cores} cores; wrk -t{load.Threads} -c{load.Connections} without cookies + {settings.Attackers} cart growers; dashed: before the bounds"
    File.WriteAllText(Path.Combine(docs, "flood.svg"), Chart.svg "The sample's app under a flood of new sessions and a growth attack" subtitle panels)
    printfn ""
    printfn "%s" (text.ToString())
    printfn "Wrote its section of %s and docs/flood.svg" (Path.Combine(docs, "performance.md"))
    let lost = runs |> List.filter (fun r -> r.Build = after.Name && not r.Kept)
    if lost.IsEmpty then 0 else 1

[<EntryPoint>]
let main args =
    CultureInfo.DefaultThreadCurrentCulture <- CultureInfo.InvariantCulture
    Thread.CurrentThread.CurrentCulture <- CultureInfo.InvariantCulture
    match List.ofArray args with
    | "serve" :: port :: store :: rest -> Serve.run (int port) store (rest = [ "tiny" ])
    | [ "commits" ] ->
        Commits.run ()
        0
    | "once" :: store :: rest ->
        let args = Array.ofList rest
        // One flood run of this build, printed: for trying a change or a runtime setting without the whole comparison.
        let exe, exeArgs = Machine.selfCommand ""
        let settings = settingsOf args
        let directory = scratchFolder ()
        let limit = option args "--heap-limit" ""
        let build = { Name = "this build"; Exe = exe; Args = exeArgs.Trim(); Environment = [] }
        let build = if limit = "" then build else withHeapLimit (int limit) build
        let r = run settings build store directory (List.contains "tiny" rest)
        printfn
            "%s: new sessions %.0f/s, peak RSS %.0f MiB, most held %.1f MiB, POSTs %d ok / %d refused / %d failed, wrk errors %d, kept %b%s"
            r.Store
            r.NewSessions.RequestsPerSecond
            r.PeakRssMiB
            (maxOf (fun s -> s.HeldMiB) r)
            r.Posts
            r.Refused
            r.PostErrors
            r.NewSessions.Errors
            r.Kept
            (match r.Died with
             | Some d -> ", DIED: " + d
             | None -> "")
        if r.FileBytes >= 0L then printfn "  restart: %s" (reopenText r)
        for s in r.Samples do
            if int s.Seconds % 5 = 0 then
                printfn "  %3.0f s  RSS %5.0f MiB  heap %5.0f MiB  held %5.1f MiB  %d sessions" s.Seconds s.RssMiB s.HeapMiB s.HeldMiB s.Sessions
        // --keep leaves the file store's file, to try replay on it again (the app's `serve` mode on a copy of it).
        if List.contains "--keep" rest then printfn "Kept %s" directory else Directory.Delete(directory, true)
        0
    | _ -> runAll args
