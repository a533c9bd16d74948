/// The build script's shell: the repository root, running commands, the test projects, installing what tests need.
module Shell

open System
open System.Diagnostics
open System.Text.RegularExpressions

let root = IO.Path.GetFullPath(IO.Path.Combine(__SOURCE_DIRECTORY__, ".."))

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
let expectoProjects = [
    "tests/Sesame.Tests"
    "tests/Sesame.Redis.Tests"
    "tests/Sesame.Postgres.Tests"
    "tests/Sesame.Readme.Tests"
    "tests/Sesame.Browser.Tests"
]

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

/// The libraries, each a NuGet package; samples, tests and benchmarks are not packages.
/// Sesame.Testing is the store contract suite, for authors of stores.
let libraryProjects = [ "src/Sesame.Fs"; "src/Sesame.Redis"; "src/Sesame.Postgres"; "src/Sesame.CSharpInterop"; "src/Sesame.Testing" ]

/// Packs every library, with its .snupkg symbol package, into the folder.
let packInto (folder: string) =
    for project in libraryProjects do
        exitOn (fst (run "dotnet" $"pack {project} -c Release -o \"{folder}\"" false))

/// Runs a command in a folder, echoing its output; returns its exit code.
let runAt (folder: string) (file: string) (args: string) =
    printfn "> (%s) %s %s" folder file args
    use p = Process.Start(ProcessStartInfo(file, args, WorkingDirectory = folder, UseShellExecute = false))
    p.WaitForExit()
    p.ExitCode
