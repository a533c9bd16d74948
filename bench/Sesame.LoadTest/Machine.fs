/// What the load test needs from the machine: free ports, tools (installed when missing),
/// child processes, and a description of the hardware for the report.
module Sesame.LoadTest.Machine

open System
open System.Diagnostics
open System.IO
open System.Net
open System.Net.Sockets
open System.Runtime.InteropServices
open System.Threading

/// A loopback port nobody listens on right now.
let freePort () =
    use listener = new TcpListener(IPAddress.Loopback, 0)
    listener.Start()
    (listener.LocalEndpoint :?> IPEndPoint).Port

/// Waits until something accepts connections on a loopback port.
let waitForPort (port: int) (timeout: TimeSpan) =
    let deadline = DateTime.UtcNow + timeout
    let mutable up = false
    while not up do
        try
            use client = new TcpClient()
            client.Connect(IPAddress.Loopback, port)
            up <- true
        with :? SocketException ->
            if DateTime.UtcNow > deadline then failwith $"Nothing listens on 127.0.0.1:{port} after {timeout}."
            Thread.Sleep 100

/// Runs a command to completion and gives its exit code and standard output.
let capture (file: string) (args: string) =
    let info = ProcessStartInfo(file, args, UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true)
    use p = Process.Start info
    let output = p.StandardOutput.ReadToEndAsync()
    let errors = p.StandardError.ReadToEndAsync()
    p.WaitForExit()
    p.ExitCode, output.Result.Trim() + (if p.ExitCode <> 0 then "\n" + errors.Result.Trim() else "")

let private onPath (tool: string) = fst (capture "sh" $"-c \"command -v {tool}\"") = 0

/// Makes sure a tool is on the PATH, installing its Debian package with apt-get when it is not.
let ensureTool (tool: string) (package: string) =
    if not (onPath tool) then
        printfn "%s is missing: installing the %s package with apt-get" tool package
        let sudo = if Environment.UserName = "root" then "" else "sudo "
        let code, output = capture "sh" $"-c \"{sudo}apt-get update -qq && {sudo}apt-get install -y -qq {package}\""
        if code <> 0 || not (onPath tool) then failwith $"Could not install {package}:\n{output}"

/// A child process whose output is echoed with a prefix (when asked), and which is killed with its tree on disposal.
type Child(file: string, args: string, name: string, echoOutput: bool) =
    let ready = new ManualResetEventSlim(false)
    let p = Process.Start(ProcessStartInfo(file, args, UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true))
    let echo (line: string) =
        if not (isNull line) then
            if line.Contains "READY" then ready.Set()
            elif echoOutput then printfn "  [%s] %s" name line
    do
        p.OutputDataReceived.Add(fun e -> echo e.Data)
        p.ErrorDataReceived.Add(fun e -> echo e.Data)
        p.BeginOutputReadLine()
        p.BeginErrorReadLine()

    /// Waits for the child to print a line containing READY.
    member _.WaitReady(timeout: TimeSpan) = if not (ready.Wait timeout) then failwith $"{name} did not become ready within {timeout}."

    member _.Process = p

    interface IDisposable with
        member _.Dispose() =
            if not p.HasExited then
                p.Kill true
                p.WaitForExit()
            p.Dispose()
            ready.Dispose()

/// The CPU time (user + system) a process has used so far, from /proc.
let cpuTime (pid: int) =
    // Fields after the command name (which may hold spaces, hence the last ')'): utime and stime are the 12th and 13th.
    let stat = File.ReadAllText $"/proc/{pid}/stat"
    let fields = stat.Substring(stat.LastIndexOf ')' + 2).Split(' ')
    let ticks = Int64.Parse fields[11] + Int64.Parse fields[12]
    // Clock ticks are 1/100 s on Linux (USER_HZ).
    TimeSpan.FromMilliseconds(float ticks * 10.0)

/// A throwaway redis-server on a free loopback port, without persistence.
let startRedis () =
    let port = freePort ()
    // Quiet: its start-up banner and advice on kernel settings say nothing about this run.
    let child = new Child("redis-server", $"--port {port} --bind 127.0.0.1 --save \"\" --appendonly no --loglevel warning", "redis", false)
    waitForPort port (TimeSpan.FromSeconds 10.0)
    port, child

/// The command that runs this program again (as a child process).
let selfCommand (args: string) =
    let exe = Environment.ProcessPath
    if Path.GetFileNameWithoutExtension(exe).Equals("dotnet", StringComparison.OrdinalIgnoreCase) then
        exe, $"\"{Reflection.Assembly.GetEntryAssembly().Location}\" {args}"
    else
        exe, args

/// The repository root: the nearest directory upwards holding Sesame.sln.
let repositoryRoot () =
    let rec up (dir: DirectoryInfo) =
        if isNull dir then failwith "Cannot find Sesame.sln above the current directory or the program."
        elif File.Exists(Path.Combine(dir.FullName, "Sesame.sln")) then dir.FullName
        else up dir.Parent
    try
        up (DirectoryInfo(Directory.GetCurrentDirectory()))
    with _ ->
        up (DirectoryInfo AppContext.BaseDirectory)

/// The machine, for the report: cores, CPU model, memory, OS, .NET.
type Description = { Cores: int; Cpu: string; Memory: string; OperatingSystem: string; Runtime: string; Sdk: string; Wrk: string; Redis: string }

let describe () =
    let cpu =
        try
            File.ReadLines "/proc/cpuinfo"
            |> Seq.tryFind (fun l -> l.StartsWith "model name")
            |> Option.map (fun l -> l.Substring(l.IndexOf ':' + 1).Trim())
            |> Option.defaultValue "unknown"
        with _ ->
            "unknown"
    let memory =
        try
            File.ReadLines "/proc/meminfo"
            |> Seq.tryFind (fun l -> l.StartsWith "MemTotal")
            |> Option.map (fun l ->
                let kb = Int64.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1])
                $"{float kb / 1024.0 / 1024.0:F1} GiB")
            |> Option.defaultValue "unknown"
        with _ ->
            "unknown"
    let firstLine (text: string) = (text.Split('\n')[0]).Trim()
    {
        Cores = int (snd (capture "nproc" "") |> fun s -> if s = "" then string Environment.ProcessorCount else s)
        Cpu = cpu
        Memory = memory
        OperatingSystem = RuntimeInformation.OSDescription
        Runtime = RuntimeInformation.FrameworkDescription
        Sdk = snd (capture "dotnet" "--version") |> firstLine
        Wrk = snd (capture "sh" "-c \"wrk --version 2>&1 | head -1\"") |> firstLine
        Redis = snd (capture "redis-server" "--version") |> firstLine
    }
