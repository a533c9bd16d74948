// Sesame's build script: `dotnet fsi build.fsx <target>`.
//   build   restore and build everything (Release, warnings as errors)
//   test    build, then run every test project (the Expecto programs, then `dotnet test` for the
//           xunit projects under tests/); ends with one line "N passed, N failed" and fails if any test or runner failed
//   soak    Expecto's stress mode on the concurrency tests (those whose names mention "concurrent"),
//           both F# test programs at once, for the minutes given after it (`soak 1`; default 5); not run in CI
//   bench   run the BenchmarkDotNet micro-benchmarks (pass BenchmarkDotNet arguments after --)
//   pack    make the NuGet packages (and their .snupkg symbol packages) of the libraries in ./artifacts
//   packtest  pack into a temporary folder, check each package's metadata, then build a fresh C# app and a fresh
//           F# app on those packages (restored from that folder) and count visits on their counter endpoint
//   docs    the API reference and guides as a static site with fsdocs (artifacts/docs), checked in headless Chromium
//   loadtest  the load test against ASP.NET Core Session (writes docs/performance.md)
//   flood   the sample's app under a flood of new sessions and a growth attack, on the memory and file stores,
//           before and after the bounds (about 12 minutes; writes its section of docs/performance.md and docs/flood.svg)
//   sample  run samples/Giraffe (arguments after -- go to the sample)
//   format        format every F# file (src, tests, samples, bench, build/, this script) with Fantomas, the local tool in
//                 .config/dotnet-tools.json; settings in .editorconfig, files left alone in .fantomasignore
//   format-check  fail, listing them, if any F# file is not formatted (run in CI; changes nothing)

#load "build/Shell.fsx" "build/PackTest.fsx" "build/Docs.fsx"

open System
open System.Diagnostics
open System.Text.RegularExpressions
open Shell

let args = fsi.CommandLineArgs |> Array.skip 1
let target = if args.Length = 0 then "build" else args[0]
// The arguments for the target: those after "--", or (since `dotnet fsi` may swallow the "--")
// all those after the target's name.
let rest =
    match Array.tryFindIndex ((=) "--") args with
    | Some i -> String.Join(" ", args[i + 1 ..])
    | None -> String.Join(" ", Array.skip (min 1 args.Length) args)

match target with
| "build" -> exitOn (fst (run "dotnet" "build Sesame.sln -c Release" false))
| "test" ->
    ensureRedis ()
    ensurePostgres ()
    ensureChromium ()
    exitOn (fst (run "dotnet" "build Sesame.sln -c Release" false))
    let expectoRuns = [ for project in expectoProjects -> project, run "dotnet" $"run --no-build -c Release --project {project} -- {plainExpecto}" true ]
    let xunitRuns = [ for project in xunitProjects -> project, run "dotnet" $"test {project} -c Release --no-build" true ]
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
    let soaks = [
        for project in expectoProjects ->
            let args =
                $"run --no-build -c Release --project {project} -- --stress {string minutes} --stress-timeout 2 --stress-memory-limit 1000 --filter-test-case concurrent {plainExpecto}"
            printfn "> dotnet %s" args
            Process.Start(ProcessStartInfo("dotnet", args, WorkingDirectory = root, UseShellExecute = false))
    ]
    for p in soaks do
        p.WaitForExit()
    let codes = soaks |> List.map (fun p -> p.ExitCode)
    printfn "soak of %s minutes: exit codes %A" (string minutes) codes
    exit (if List.forall ((=) 0) codes then 0 else 1)
| "bench" -> exitOn (fst (run "dotnet" $"run -c Release --project bench/Sesame.Benchmarks -- {rest}" false))
| "loadtest" ->
    ensurePostgres ()
    // Sesame against ASP.NET Core Session and no session, with wrk; writes docs/performance.md (arguments after -- go to it).
    exitOn (fst (run "dotnet" $"run -c Release --project bench/Sesame.LoadTest -- {rest}" false))
| "flood" ->
    // Bounds under hostile load (bench/Sesame.FloodBench; arguments after -- go to it, e.g. `--duration 60 --rounds 2`).
    exitOn (fst (run "dotnet" "build bench/Sesame.FloodBench -c Release" false))
    exitOn (fst (run "dotnet" $"bench/Sesame.FloodBench/bin/Release/net10.0/Sesame.FloodBench.dll {rest}" false))
| "pack" -> packInto (IO.Path.Combine(root, "artifacts"))
| "packtest" -> exit (PackTest.run ())
| "docs" -> exit (Docs.run (if rest = "" then "/" else rest))
| "sample" -> exitOn (fst (run "dotnet" $"run --project samples/Giraffe -- {rest}" false))
| "format"
| "format-check" ->
    // Fantomas takes its settings from .editorconfig and skips what .fantomasignore names.
    let sources = "src tests samples bench build build.fsx"
    exitOn (fst (run "dotnet" "tool restore" false))
    if target = "format" then
        exitOn (fst (run "dotnet" $"fantomas {sources}" false))
    else
        // Exit code 0: all formatted; 99: some files need formatting (Fantomas lists them); anything else: an error,
        // such as a file Fantomas cannot parse (also listed).
        let code, _ = run "dotnet" $"fantomas --check {sources}" false
        if code = 99 then
            eprintfn "The F# files listed above are not formatted. Run `dotnet fsi build.fsx format` and commit the result."
            exit 1
        elif code <> 0 then
            eprintfn "Fantomas failed (exit code %d) on the files listed above." code
            exit 1
| other ->
    eprintfn "Unknown target '%s'. Targets: build, test, soak, bench, pack, packtest, docs, loadtest, flood, sample, format, format-check." other
    exit 2
