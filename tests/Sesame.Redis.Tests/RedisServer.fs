/// A real redis-server for the tests: started on a free loopback port, stopped on dispose.
module Sesame.Redis.Tests.RedisServer

open System
open System.Diagnostics
open System.IO
open System.Net
open System.Net.Sockets
open System.Text
open System.Threading
open System.Threading.Tasks
open StackExchange.Redis
open Sesame.Tests

/// The process id of the redis-server listening on the port (INFO server, over a plain socket), or None
/// when nothing answers there.
let processListeningOn (port: int) : int option =
    try
        use client = new TcpClient()
        client.Connect(IPAddress.Loopback, port)
        client.ReceiveTimeout <- 2000
        let stream = client.GetStream()
        let command = Encoding.ASCII.GetBytes "*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"
        stream.Write(command, 0, command.Length)
        let reply = StringBuilder()
        let buffer = Array.zeroCreate<byte> 4096
        let mutable complete = false
        while not complete do
            let read = stream.Read(buffer, 0, buffer.Length)
            if read = 0 then
                complete <- true
            else
                reply.Append(Encoding.ASCII.GetString(buffer, 0, read)) |> ignore
                complete <- reply.ToString().Contains "process_id:" && reply.ToString().Contains "\r\nrun_id:"
        let text = reply.ToString()
        let at = text.IndexOf "process_id:"
        if at < 0 then
            None
        else
            let digits = text.Substring(at + "process_id:".Length) |> Seq.takeWhile Char.IsAsciiDigit |> Seq.toArray |> String
            Some(int digits)
    with
    | :? SocketException
    | :? IOException -> None

/// <summary>
/// Starts redis-server on a free port and waits until it answers there. Gives the process and the port.
/// A free port can be taken by another process between the choice and redis-server's bind (tests start
/// servers in parallel), so the server that answers must be this process; if it is not (this one could
/// not bind and exits), another port is tried.
/// </summary>
let startRedisServer (fixedPort: int option) (arguments: string list) (directory: string) (log: StringBuilder) : Process * int =
    let rec attempt (tries: int) =
        let port = defaultArg fixedPort (freePort ())
        let info = ProcessStartInfo("redis-server", UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true)
        if not (isNull directory) then info.WorkingDirectory <- directory
        for argument in [ "--port"; string port; "--bind"; "127.0.0.1" ] @ arguments do
            info.ArgumentList.Add argument
        let started =
            try
                Process.Start info
            with e ->
                raise (InvalidOperationException("Could not start redis-server (CI installs it with apt-get install redis-server).", e))
        started.OutputDataReceived.Add(fun e -> lock log (fun () -> log.AppendLine e.Data |> ignore))
        started.ErrorDataReceived.Add(fun e -> lock log (fun () -> log.AppendLine e.Data |> ignore))
        started.BeginOutputReadLine()
        started.BeginErrorReadLine()
        let deadline = DateTime.UtcNow.AddSeconds 20.0
        let mutable listening = None
        while listening.IsNone && not started.HasExited do
            if processListeningOn port = Some started.Id then
                listening <- Some port
            elif DateTime.UtcNow > deadline then
                started.Kill()
                raise (InvalidOperationException($"redis-server did not start on port {port}:\n{lock log (fun () -> log.ToString())}"))
            else
                Thread.Sleep 20
        match listening with
        | Some port -> started, port
        | None when tries < 5 && Option.isNone fixedPort -> attempt (tries + 1)
        | None -> raise (InvalidOperationException($"redis-server could not start on port {port}:\n{lock log (fun () -> log.ToString())}"))
    attempt 1

/// <summary>
/// A redis-server process of its own (loopback only), so tests never touch another Redis. Stop
/// and Start restart it on the same port, as an outage would. By default nothing is persisted;
/// given <c>appendOnlyDirectory</c>, every write is appended to an AOF in that folder and fsynced
/// before Redis answers (<c>appendfsync always</c>), so what Redis acknowledged survives a Stop
/// (a kill) and is there again after Start. <c>arguments</c> are passed on (e.g. <c>--maxmemory</c>,
/// <c>--replicaof</c>).
/// </summary>
[<Sealed>]
type RedisServer(?appendOnlyDirectory: string, ?arguments: string list) =
    let mutable port = 0
    let mutable proc: Process = null
    let log = StringBuilder()
    // A folder of its own even without persistence: a replica's full sync writes dump.rdb there, and a server
    // started later in the same folder would load it.
    let scratch = Directory.CreateTempSubdirectory "sesame-redis-"

    let persistence =
        match appendOnlyDirectory with
        | None -> [ "--appendonly"; "no"; "--dir"; scratch.FullName ]
        | Some directory -> [ "--appendonly"; "yes"; "--appendfsync"; "always"; "--dir"; directory ]

    // The first start finds a free port; a restart (after Stop) keeps it.
    let start () =
        let started, listening = startRedisServer (if port = 0 then None else Some port) ([ "--save"; "" ] @ persistence @ defaultArg arguments []) null log
        proc <- started
        port <- listening

    do start ()

    /// The port it listens on (127.0.0.1).
    member _.Port = port

    /// host:port, for a StackExchange.Redis configuration.
    member _.EndPoint = $"127.0.0.1:{port}"

    /// Kills the server, as a crash would.
    member _.Stop() =
        if not proc.HasExited then
            proc.Kill()
            proc.WaitForExit()

    /// Starts it again on the same port: empty, or with what its append-only file holds.
    member _.Start() = start ()

    /// A connection as an app would make one: it reconnects by itself.
    member this.ConnectAsync(?clientName: string, ?allowAdmin: bool) : Task<ConnectionMultiplexer> =
        let settings = ConfigurationOptions.Parse this.EndPoint
        settings.AbortOnConnectFail <- false
        settings.AllowAdmin <- defaultArg allowAdmin false
        settings.ConnectTimeout <- 2000
        // No keep-alive or config-check traffic during a test: round trips are counted exactly.
        settings.KeepAlive <- 600
        settings.ConfigCheckSeconds <- 600
        clientName |> Option.iter (fun name -> settings.ClientName <- name)
        ConnectionMultiplexer.ConnectAsync(settings, null)

    /// The server's own answer to INFO commandstats: command name to number of calls.
    member this.CommandCallsAsync(admin: IConnectionMultiplexer) : Task<Map<string, int64>> = task {
        let! sections = admin.GetServer(this.EndPoint).InfoAsync(RedisValue.op_Implicit "commandstats", CommandFlags.None)
        return
            sections
            |> Seq.collect id
            |> Seq.map (fun (KeyValue(name, value)) ->
                // cmdstat_evalsha -> calls=12,usec=...
                let calls = value.Split(',') |> Array.find (fun p -> p.StartsWith "calls=")
                name.Replace("cmdstat_", ""), int64 (calls.Substring 6))
            |> Map.ofSeq
    }

    interface IDisposable with
        member this.Dispose() =
            this.Stop()
            try
                scratch.Delete true
            with _ ->
                ()

/// The quoted words of a MONITOR line (escapes kept as Redis wrote them).
let private words (text: string) =
    let result = ResizeArray<string>()
    let mutable i = 0
    while i < text.Length do
        if text[i] = '"' then
            let word = StringBuilder()
            i <- i + 1
            while i < text.Length && text[i] <> '"' do
                if text[i] = '\\' && i + 1 < text.Length then
                    word.Append(text[i]).Append(text[i + 1]) |> ignore
                    i <- i + 2
                else
                    word.Append text[i] |> ignore
                    i <- i + 1
            result.Add(word.ToString())
        i <- i + 1
    List.ofSeq result

/// <summary>
/// Reads MONITOR, Redis's own log of every command it runs (including those run inside
/// scripts, shown as coming from "lua"), through a plain socket.
/// </summary>
[<Sealed>]
type RedisMonitor(port: int) =
    let client = new TcpClient()
    do client.Connect(IPAddress.Loopback, port)
    let stream = client.GetStream()
    let reader = new StreamReader(stream, Encoding.UTF8)
    do
        let command = Encoding.ASCII.GetBytes "MONITOR\r\n"
        stream.Write(command, 0, command.Length)
        let ok = reader.ReadLine()
        if ok <> "+OK" then invalidOp $"MONITOR answered {ok}"

    /// Sends ECHO marker on a connection of its own and reads the monitor up to it: every
    /// command Redis ran before the marker, as (client address or "lua", command and arguments).
    member _.ReadUntilMarkerAsync() : Task<(string * string list) list> = task {
        let marker = $"marker-{Guid.NewGuid():N}"
        use other = new TcpClient()
        do! other.ConnectAsync(IPAddress.Loopback, port)
        let echo = Encoding.ASCII.GetBytes $"*2\r\n$4\r\nECHO\r\n${marker.Length}\r\n{marker}\r\n"
        do! other.GetStream().WriteAsync(echo, 0, echo.Length)
        let lines = ResizeArray()
        let mutable finished = false
        while not finished do
            let! line = reader.ReadLineAsync()
            if isNull line then invalidOp "MONITOR closed"
            if line.Contains marker then finished <- true else lines.Add line
        // +1700000000.000000 [0 127.0.0.1:5555] "evalsha" "abc" "1" "key"
        return [
            for line in lines do
                let opening = line.IndexOf '['
                let closing = line.IndexOf(']', opening)
                let source = line.Substring(opening + 1, closing - opening - 1)
                let client = source.Substring(source.IndexOf ' ' + 1)
                client, words (line.Substring(closing + 1))
        ]
    }

    interface IDisposable with
        member _.Dispose() =
            reader.Dispose()
            client.Dispose()

/// A logger that keeps each entry's event name and message, for tests of what the store logs.
[<Sealed>]
type LogRecorder() =
    let entries = Collections.Concurrent.ConcurrentQueue<string * string>()

    /// The messages logged under an event name, oldest first.
    member _.Of(eventName: string) = entries |> Seq.filter (fun (name, _) -> name = eventName) |> Seq.map snd |> List.ofSeq

    interface Microsoft.Extensions.Logging.ILogger with
        member _.BeginScope _ = null
        member _.IsEnabled _ = true
        member _.Log(_, eventId, state, error, formatter) = entries.Enqueue((eventId.Name, formatter.Invoke(state, error)))
