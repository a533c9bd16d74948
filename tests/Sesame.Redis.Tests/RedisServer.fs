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

let private accepts (port: int) =
    try
        use client = new TcpClient()
        client.Connect(IPAddress.Loopback, port)
        true
    with :? SocketException ->
        false

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
    let port = freePort ()
    let mutable proc: Process = null
    let log = StringBuilder()

    let persistence =
        match appendOnlyDirectory with
        | None -> [ "--appendonly"; "no" ]
        | Some directory -> [ "--appendonly"; "yes"; "--appendfsync"; "always"; "--dir"; directory ]

    let start () =
        let info = ProcessStartInfo("redis-server", UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true)
        for argument in [ "--port"; string port; "--save"; ""; "--bind"; "127.0.0.1" ] @ persistence @ defaultArg arguments [] do
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
        proc <- started
        let deadline = DateTime.UtcNow.AddSeconds 20.0
        while not (accepts port) do
            if started.HasExited || DateTime.UtcNow > deadline then
                raise (InvalidOperationException($"redis-server did not start on port {port}:\n{lock log (fun () -> log.ToString())}"))
            Thread.Sleep 20

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
    member this.CommandCallsAsync(admin: IConnectionMultiplexer) : Task<Map<string, int64>> =
        task {
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
        member this.Dispose() = this.Stop()

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
    member _.ReadUntilMarkerAsync() : Task<(string * string list) list> =
        task {
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
            return
                [ for line in lines do
                      let opening = line.IndexOf '['
                      let closing = line.IndexOf(']', opening)
                      let source = line.Substring(opening + 1, closing - opening - 1)
                      let client = source.Substring(source.IndexOf ' ' + 1)
                      client, words (line.Substring(closing + 1)) ]
        }

    interface IDisposable with
        member _.Dispose() =
            reader.Dispose()
            client.Dispose()
