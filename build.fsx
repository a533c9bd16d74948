// Sesame's build script: `dotnet fsi build.fsx <target>`.
//   build   restore and build everything (Release, warnings as errors)
//   test    build, then run every test project; ends with one line "N passed, N failed"
//   bench   run the BenchmarkDotNet micro-benchmarks (pass BenchmarkDotNet arguments after --)
//   pack    make the NuGet packages in ./artifacts
//   loadtest  the load test against ASP.NET Core Session (writes docs/performance.md)
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

let commandExists (name: string) =
    let code, _ = run "sh" $"-c \"command -v {name} >/dev/null\"" true
    code = 0

/// Redis-backed tests start a real redis-server; install it when the machine lacks it.
let ensureRedis () =
    if not (commandExists "redis-server") then
        printfn "redis-server is missing: installing it with apt-get"
        let sudo = if Environment.UserName = "root" then "" else "sudo "
        let code, _ = run "sh" $"-c \"{sudo}apt-get update -qq && {sudo}apt-get install -y -qq redis-server >/dev/null\"" false
        if code <> 0 then printfn "warning: could not install redis-server; the Redis tests will fail"

let args = fsi.CommandLineArgs |> Array.skip 1
let target = if args.Length = 0 then "build" else args[0]
let rest =
    match Array.tryFindIndex ((=) "--") args with
    | Some i -> String.Join(" ", args[i + 1 ..])
    | None -> ""

match target with
| "build" ->
    exitOn (fst (run "dotnet" "build Sesame.sln -c Release" false))
| "test" ->
    ensureRedis ()
    exitOn (fst (run "dotnet" "build Sesame.sln -c Release" false))
    let code, lines = run "dotnet" "test Sesame.sln -c Release --no-build" true
    // dotnet test prints one summary per test project: "Passed!  - Failed: 0, Passed: 42, ..."
    let summary = Regex(@"(Passed|Failed)!\s+-\s+Failed:\s+(\d+),\s+Passed:\s+(\d+)")
    let failed, passed =
        lines
        |> List.choose (fun l -> let m = summary.Match l in if m.Success then Some(int m.Groups[2].Value, int m.Groups[3].Value) else None)
        |> List.fold (fun (f, p) (f2, p2) -> f + f2, p + p2) (0, 0)
    printfn "%d passed, %d failed" passed failed
    exit (if code <> 0 || failed > 0 || passed = 0 then 1 else 0)
| "bench" ->
    exitOn (fst (run "dotnet" $"run -c Release --project bench/Sesame.Benchmarks -- {rest}" false))
| "loadtest" ->
    // Sesame against ASP.NET Core Session and no session, with wrk; writes docs/performance.md (arguments after -- go to it).
    exitOn (fst (run "dotnet" $"run -c Release --project bench/Sesame.LoadTest -- {rest}" false))
| "pack" ->
    // Only the libraries are packages; samples, tests and benchmarks are not.
    for project in [ "src/Sesame.Fs"; "src/Sesame.Redis"; "src/Sesame.CSharpInterop" ] do
        exitOn (fst (run "dotnet" $"pack {project} -c Release -o artifacts" false))
| "sample" ->
    exitOn (fst (run "dotnet" $"run --project samples/Giraffe -- {rest}" false))
| other ->
    eprintfn "Unknown target '%s'. Targets: build, test, bench, pack, sample." other
    exit 2
