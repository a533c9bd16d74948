// Sesame's build script: `dotnet fsi build.fsx <target>`.
//   build   restore and build everything (Release, warnings as errors)
//   test    build, then run every test project (the Expecto programs, then `dotnet test` for the
//           xunit projects under tests/); ends with one line "N passed, N failed" and fails if any test or runner failed
//   soak    Expecto's stress mode on the concurrency tests (those whose names mention "concurrent"),
//           both F# test programs at once, for the minutes given after it (`soak 1`; default 5); not run in CI
//   bench   run the BenchmarkDotNet micro-benchmarks (pass BenchmarkDotNet arguments after --)
//   pack    make the NuGet packages in ./artifacts
//   loadtest  the load test against ASP.NET Core Session (writes docs/performance.md)
//   flood   the sample's app under a flood of new sessions and a growth attack, on the memory and file stores,
//           before and after the bounds (about 12 minutes; writes its section of docs/performance.md and docs/flood.svg)
//   sample  run samples/Giraffe (arguments after -- go to the sample)
open System
open System.Diagnostics
open System.Text.RegularExpressions

let root = __SOURCE_DIRECTORY__

/// Runs a command in the repository root, echoing its output; returns exit code and output lines.
let run (file: string) (args: string) (capture: bool) =
    printfn "> %s %s" file args
    let info = ProcessStartInfo(file, args, WorkingDirectory = root, UseShellExecute = false, RedirectStandardOutput = capture)
    use p = Process.Start info
    let lines = ResizeArray<string>()
    if capture then
        let mutable line = p.StandardOutput.ReadLine()
        while not (isNull line) do
            Console.WriteLine line
            lines.Add line
            line <- p.StandardOutput.ReadLine()
    p.WaitForExit()
    p.ExitCode, List.ofSeq lines

let exitOn (code: int) = if code <> 0 then exit code

/// The F# test projects: Expecto console programs, run with `dotnet run --no-build`.
let expectoProjects =
    [ "tests/Sesame.Tests"; "tests/Sesame.Redis.Tests"; "tests/Sesame.Postgres.Tests"; "tests/Sesame.Readme.Tests"; "tests/Sesame.Browser.Tests" ]

/// The C# test projects, run with `dotnet test`: every project under tests/ that references xunit
/// (tests/Sesame.CSharpInterop.Tests, tests/Sesame.ExampleStore.Tests, and any added later).
let xunitProjects =
    IO.Directory.GetFiles(IO.Path.Combine(root, "tests"), "*.csproj", IO.SearchOption.AllDirectories)
    |> Array.filter (fun project -> IO.File.ReadAllText(project).Contains "<PackageReference Include=\"xunit\"")
    |> Array.map (fun project -> IO.Path.GetRelativePath(root, IO.Path.GetDirectoryName project).Replace('\\', '/'))
    |> Array.sort
    |> List.ofArray

/// Expecto's arguments for a run whose output is read: plain text, no spinner.
let plainExpecto = "--colours 0 --no-spinner"

/// The counts in one runner's output: (passed, failed), failed including errored tests.
let countsOf (lines: string list) =
    // Expecto: "EXPECTO! 217 tests run in 00:01:04 for miscellaneous – 217 passed, 0 ignored, 0 failed, 0 errored."
    let expecto = Regex(@"EXPECTO!.*\s(\d+) passed, (\d+) ignored, (\d+) failed, (\d+) errored")
    // dotnet test (xunit): "Passed!  - Failed: 0, Passed: 42, Skipped: 0, ..."
    let xunit = Regex(@"(Passed|Failed)!\s+-\s+Failed:\s+(\d+),\s+Passed:\s+(\d+)")
    lines
    |> List.choose (fun line ->
        let e = expecto.Match line
        if e.Success then
            Some(int e.Groups[1].Value, int e.Groups[3].Value + int e.Groups[4].Value)
        else
            let x = xunit.Match line
            if x.Success then Some(int x.Groups[3].Value, int x.Groups[2].Value) else None)
    |> List.fold (fun (p, f) (p2, f2) -> p + p2, f + f2) (0, 0)

let commandExists (name: string) =
    let code, _ = run "sh" $"-c \"command -v {name} >/dev/null\"" true
    code = 0

/// Installs a Debian package with apt-get when what it provides is missing (the tests start real servers and a browser).
let ensurePackage (package: string) (installed: bool) (whatFails: string) =
    if not installed then
        printfn "%s is missing: installing it with apt-get" package
        let sudo = if Environment.UserName = "root" then "" else "sudo "
        let code, _ = run "sh" $"-c \"{sudo}apt-get update -qq && {sudo}apt-get install -y -qq {package} >/dev/null\"" false
        if code <> 0 then printfn "warning: could not install %s; %s will fail" package whatFails

/// Redis-backed tests start a real redis-server.
let ensureRedis () = ensurePackage "redis-server" (commandExists "redis-server") "the Redis tests"

/// PostgreSQL-backed tests start a throwaway cluster with initdb and pg_ctl.
let ensurePostgres () =
    let installed =
        commandExists "pg_ctl"
        || (IO.Directory.Exists "/usr/lib/postgresql"
            && IO.Directory.GetDirectories "/usr/lib/postgresql" |> Array.exists (fun d -> IO.File.Exists(IO.Path.Combine(d, "bin", "initdb"))))
    ensurePackage "postgresql" installed "the PostgreSQL tests"

/// The browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
let ensureChromium () = ensurePackage "chromium" (IO.File.Exists "/usr/bin/chromium") "the browser tests"

let args = fsi.CommandLineArgs |> Array.skip 1
let target = if args.Length = 0 then "build" else args[0]
// The arguments for the target: those after "--", or (since `dotnet fsi` may swallow the "--")
// all those after the target's name.
let rest =
    match Array.tryFindIndex ((=) "--") args with
    | Some i -> String.Join(" ", args[i + 1 ..])
    | None -> String.Join(" ", Array.skip (min 1 args.Length) args)

match target with
| "build" ->
    exitOn (fst (run "dotnet" "build Sesame.sln -c Release" false))
| "test" ->
    ensureRedis ()
    ensurePostgres ()
    ensureChromium ()
    exitOn (fst (run "dotnet" "build Sesame.sln -c Release" false))
    let expectoRuns =
        [ for project in expectoProjects -> project, run "dotnet" $"run --no-build -c Release --project {project} -- {plainExpecto}" true ]
    let xunitRuns =
        [ for project in xunitProjects -> project, run "dotnet" $"test {project} -c Release --no-build" true ]
    let runs = expectoRuns @ xunitRuns
    let mutable passed, failed, runnersFailed = 0, 0, 0
    for project, (code, lines) in runs do
        let p, f = countsOf lines
        printfn "%s: passed %d, failed %d, exit code %d" project p f code
        passed <- passed + p
        failed <- failed + f
        // A runner that failed, or that ran nothing, fails the build even if it counted no failure.
        if code <> 0 || p + f = 0 then runnersFailed <- runnersFailed + 1
    printfn "%d passed, %d failed" passed failed
    exit (if runnersFailed > 0 || failed > 0 || passed = 0 then 1 else 0)
| "soak" ->
    // Expecto's stress mode: the selected tests run again and again, in random order and in
    // parallel, for the given minutes; a test still running stress-timeout minutes after the end is
    // reported as a deadlock. Both programs run at once, so the soak takes the minutes given.
    let minutes =
        match Double.TryParse(rest, Globalization.NumberStyles.Float, Globalization.CultureInfo.InvariantCulture) with
        | true, m when m > 0.0 -> m
        | _ -> 5.0
    ensureRedis ()
    ensurePostgres ()
    exitOn (fst (run "dotnet" "build Sesame.sln -c Release" false))
    let soaks =
        [ for project in expectoProjects ->
              let args = $"run --no-build -c Release --project {project} -- --stress {string minutes} --stress-timeout 2 --stress-memory-limit 1000 --filter-test-case concurrent {plainExpecto}"
              printfn "> dotnet %s" args
              Process.Start(ProcessStartInfo("dotnet", args, WorkingDirectory = root, UseShellExecute = false)) ]
    for p in soaks do p.WaitForExit()
    let codes = soaks |> List.map (fun p -> p.ExitCode)
    printfn "soak of %s minutes: exit codes %A" (string minutes) codes
    exit (if List.forall ((=) 0) codes then 0 else 1)
| "bench" ->
    exitOn (fst (run "dotnet" $"run -c Release --project bench/Sesame.Benchmarks -- {rest}" false))
| "loadtest" ->
    ensurePostgres ()
    // Sesame against ASP.NET Core Session and no session, with wrk; writes docs/performance.md (arguments after -- go to it).
    exitOn (fst (run "dotnet" $"run -c Release --project bench/Sesame.LoadTest -- {rest}" false))
| "flood" ->
    // Bounds under hostile load (bench/Sesame.FloodBench; arguments after -- go to it, e.g. `--duration 60 --rounds 2`).
    exitOn (fst (run "dotnet" "build bench/Sesame.FloodBench -c Release" false))
    exitOn (fst (run "dotnet" $"bench/Sesame.FloodBench/bin/Release/net10.0/Sesame.FloodBench.dll {rest}" false))
| "pack" ->
    // Only the libraries are packages; samples, tests and benchmarks are not.
    for project in [ "src/Sesame.Fs"; "src/Sesame.Redis"; "src/Sesame.Postgres"; "src/Sesame.CSharpInterop" ] do
        exitOn (fst (run "dotnet" $"pack {project} -c Release -o artifacts" false))
    // The store contract suite, for authors of stores.
    exitOn (fst (run "dotnet" "pack src/Sesame.Testing -c Release -o artifacts" false))
| "sample" ->
    exitOn (fst (run "dotnet" $"run --project samples/Giraffe -- {rest}" false))
| other ->
    eprintfn "Unknown target '%s'. Targets: build, test, soak, bench, pack, loadtest, flood, sample." other
    exit 2
