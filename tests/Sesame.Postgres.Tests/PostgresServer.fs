/// A real PostgreSQL server for the tests: a throwaway cluster (initdb) on a free loopback port in a temporary
/// folder, started with pg_ctl and deleted when the test run ends.
module Sesame.Postgres.Tests.PostgresServer

open System
open System.Diagnostics
open System.IO
open System.Net
open System.Net.Sockets
open System.Threading
open Npgsql

/// A free TCP port on loopback.
let private freeLoopbackPort () =
    let listener = new TcpListener(IPAddress.Loopback, 0)
    listener.Start()
    let port = (listener.LocalEndpoint :?> IPEndPoint).Port
    listener.Stop()
    port

/// The folder of PostgreSQL's server programs: the newest /usr/lib/postgresql/N/bin (Debian), else whatever
/// folder of the PATH holds pg_ctl.
let private binDirectory =
    lazy
        (let debian =
            if Directory.Exists "/usr/lib/postgresql" then
                Directory.GetDirectories "/usr/lib/postgresql"
                |> Array.choose (fun d ->
                    match Int32.TryParse(Path.GetFileName d) with
                    | true, version when File.Exists(Path.Combine(d, "bin", "pg_ctl")) -> Some(version, Path.Combine(d, "bin"))
                    | _ -> None)
                |> Array.sortByDescending fst
                |> Array.tryHead
                |> Option.map snd
            else
                None
         match debian with
         | Some bin -> bin
         | None ->
             let path = Environment.GetEnvironmentVariable "PATH"
             path.Split(Path.PathSeparator)
             |> Array.tryFind (fun d -> File.Exists(Path.Combine(d, "pg_ctl")))
             |> Option.defaultWith (fun () ->
                 failwith "PostgreSQL's server programs (initdb, pg_ctl) were not found: install them (Debian: apt-get install postgresql)."))

/// initdb refuses to run as root: as root, the cluster belongs to the `postgres` user (which Debian's package
/// makes) and its programs run through runuser.
let private asRoot = Environment.UserName = "root"

/// runuser lives in /usr/sbin on Debian, which a root PATH may lack.
let private runuser = [ "/usr/sbin/runuser"; "/sbin/runuser" ] |> List.tryFind File.Exists |> Option.defaultValue "runuser"

let private runTool (tool: string) (arguments: string list) (timeout: TimeSpan) =
    let program = Path.Combine(binDirectory.Value, tool)
    let info =
        if asRoot then
            let info = ProcessStartInfo(runuser)
            for argument in [ "-u"; "postgres"; "--"; program ] @ arguments do
                info.ArgumentList.Add argument
            info
        else
            let info = ProcessStartInfo(program)
            for argument in arguments do
                info.ArgumentList.Add argument
            info
    info.UseShellExecute <- false
    info.RedirectStandardOutput <- true
    info.RedirectStandardError <- true
    use proc = Process.Start info
    let output = proc.StandardOutput.ReadToEndAsync()
    let error = proc.StandardError.ReadToEndAsync()
    if not (proc.WaitForExit(int timeout.TotalMilliseconds)) then
        proc.Kill true
        failwithf "%s %s did not finish within %O" tool (String.Join(" ", arguments)) timeout
    if proc.ExitCode <> 0 then failwithf "%s %s failed (exit %d):\n%s\n%s" tool (String.Join(" ", arguments)) proc.ExitCode output.Result error.Result

let private chownToPostgres (directory: string) =
    use proc = Process.Start(ProcessStartInfo("chown", $"postgres:postgres {directory}", UseShellExecute = false))
    proc.WaitForExit()
    if proc.ExitCode <> 0 then failwithf "chown postgres %s failed: is there a postgres user (Debian's postgresql package makes it)?" directory

/// <summary>
/// A PostgreSQL cluster of its own: created in a temporary folder, listening on 127.0.0.1 on a free port, with a
/// superuser <c>sesame</c> that needs no password (trust, loopback only). Stop and Start restart it on the same
/// port, as an outage would; Crash stops it as a crash would (no shutdown checkpoint: it replays its WAL).
/// </summary>
[<Sealed>]
type PostgresServer(?settings: (string * string) list) =
    let port = freeLoopbackPort ()
    let folder = Directory.CreateTempSubdirectory("sesame-pg-").FullName
    let data = Path.Combine(folder, "data")
    let log = Path.Combine(folder, "server.log")
    let mutable running = false

    let options =
        [
            "listen_addresses", "127.0.0.1"
            "port", string port
            "unix_socket_directories", folder
            "max_connections", "400"
            // Tests restart and crash it: fsync makes no difference to a process crash (the kernel keeps what was
            // written), only to the machine's, and it makes every commit wait for the disk.
            "fsync", "off"
            "log_min_messages", "warning"
        ]
        @ defaultArg settings []

    do
        if asRoot then chownToPostgres folder
        runTool "initdb" [ "-D"; data; "-U"; "sesame"; "--auth=trust"; "-E"; "UTF8"; "--locale=C"; "--no-sync" ] (TimeSpan.FromMinutes 2.0)

    let start () =
        let serverOptions = String.Join(" ", options |> List.map (fun (name, value) -> $"-c {name}={value}"))
        runTool "pg_ctl" [ "-D"; data; "-l"; log; "-o"; serverOptions; "-w"; "-t"; "60"; "start" ] (TimeSpan.FromMinutes 2.0)
        running <- true

    do start ()

    /// The port it listens on (127.0.0.1).
    member _.Port = port

    /// A connection string for database <c>database</c> (default <c>postgres</c>), as an app would have it.
    member _.ConnectionString(?database: string, ?extra: string) =
        let builder =
            NpgsqlConnectionStringBuilder(
                Host = "127.0.0.1",
                Port = port,
                Username = "sesame",
                Database = defaultArg database "postgres",
                Timeout = 15,
                CancellationTimeout = 1000
            )
        match extra with
        | Some more -> builder.ConnectionString + ";" + more
        | None -> builder.ConnectionString

    /// Creates a database of its own for one test list.
    member this.CreateDatabase(name: string) : string =
        use dataSource = NpgsqlDataSource.Create(this.ConnectionString())
        use command = dataSource.CreateCommand($"CREATE DATABASE \"{name}\"")
        command.ExecuteNonQuery() |> ignore
        this.ConnectionString name

    /// The server's log so far.
    member _.Log = if File.Exists log then File.ReadAllText log else ""

    /// Stops it cleanly (pg_ctl stop -m fast: sessions are told the server is shutting down).
    member _.Stop() =
        if running then
            runTool "pg_ctl" [ "-D"; data; "-m"; "fast"; "-w"; "stop" ] (TimeSpan.FromMinutes 1.0)
            running <- false

    /// Stops it as a crash would (pg_ctl stop -m immediate: no checkpoint; the next start replays the WAL).
    member _.Crash() =
        if running then
            runTool "pg_ctl" [ "-D"; data; "-m"; "immediate"; "-w"; "stop" ] (TimeSpan.FromMinutes 1.0)
            running <- false

    /// Starts it again on the same port, with what it had.
    member _.Start() = if not running then start ()

    interface IDisposable with
        member this.Dispose() =
            try
                this.Crash()
            with _ ->
                ()
            try
                Directory.Delete(folder, true)
            with _ ->
                ()

/// One server for the whole test run, started when first used and stopped when the run ends.
let shared =
    lazy
        (let server = new PostgresServer()
         AppDomain.CurrentDomain.ProcessExit.Add(fun _ -> (server :> IDisposable).Dispose())
         server)

let private databases = ref 0

/// A database of its own on the shared server: its connection string.
let freshDatabase (purpose: string) =
    let n = Interlocked.Increment databases
    shared.Value.CreateDatabase $"{purpose}_{n}"
