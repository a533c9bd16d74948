/// A real Redis Cluster for the tests: three primaries and three replicas on free loopback ports,
/// made with redis-cli --cluster create, torn down when disposed.
module Sesame.Redis.Tests.RedisCluster

open System
open System.Diagnostics
open System.IO
open System.Net
open System.Net.Sockets
open System.Threading
open System.Threading.Tasks
open System.Text
open StackExchange.Redis
open Sesame.Redis.Tests.RedisServer

/// Runs redis-cli with the arguments; gives its output, or fails with it.
let redisCli (arguments: string list) : string =
    let info = ProcessStartInfo("redis-cli", UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true)
    for argument in arguments do
        info.ArgumentList.Add argument
    use cli =
        try
            Process.Start info
        with e ->
            raise (InvalidOperationException("Could not start redis-cli (CI installs it with apt-get install redis-server).", e))
    let output = cli.StandardOutput.ReadToEndAsync()
    let error = cli.StandardError.ReadToEnd()
    cli.WaitForExit()
    if cli.ExitCode <> 0 then invalidOp $"redis-cli {String.Join(' ', arguments)} failed ({cli.ExitCode}): {output.Result} {error}"
    output.Result

/// Polls until the condition holds; fails with the description after the timeout.
let waitUntil (timeout: TimeSpan) (what: string) (condition: unit -> bool) =
    let clock = Stopwatch.StartNew()
    while not (condition ()) do
        if clock.Elapsed > timeout then raise (TimeoutException($"Waited {timeout} for {what}."))
        Thread.Sleep 50

/// One node of the cluster as CLUSTER NODES describes it.
type ClusterNode = {
    Id: string
    Port: int
    IsPrimary: bool
    Failed: bool
    /// The id of its primary, for a replica.
    PrimaryId: string
    /// How many hash slots it serves.
    Slots: int
}

/// One redis-server of the cluster: its own folder (for nodes.conf), on a free port found at its first
/// start, restartable on that port.
[<Sealed>]
type ClusterServer(directory: string, nodeTimeout: int) =
    let mutable proc: Process = null
    let mutable port = 0
    let log = StringBuilder()

    member _.Port = port

    member _.IsRunning = not (isNull proc) && not proc.HasExited

    member _.Start() =
        let arguments = [
            "--save"
            ""
            "--appendonly"
            "no"
            "--cluster-enabled"
            "yes"
            "--cluster-config-file"
            "nodes.conf"
            "--cluster-node-timeout"
            string nodeTimeout
        ]
        let started, listening = startRedisServer (if port = 0 then None else Some port) arguments directory log
        proc <- started
        port <- listening

    /// SIGKILL, as a crash would.
    member _.Kill() =
        if not (isNull proc) && not proc.HasExited then
            proc.Kill()
            proc.WaitForExit()

    interface IDisposable with
        member this.Dispose() = this.Kill()

/// <summary>
/// Three primaries and three replicas (redis-server --cluster-enabled yes, redis-cli --cluster create
/// --cluster-replicas 1), ready when every slot is served and every replica is in sync.
/// </summary>
[<Sealed>]
type RedisCluster() =
    /// Short enough for a failover in a few seconds, long enough that a busy machine does not fail a node over by itself.
    static let nodeTimeout = 2000
    let directory = Directory.CreateTempSubdirectory("sesame-cluster-").FullName
    let servers = [
        for node in 1..6 ->
            let folder = Path.Combine(directory, string node)
            Directory.CreateDirectory folder |> ignore
            new ClusterServer(folder, nodeTimeout)
    ]

    let alive () = servers |> List.filter _.IsRunning

    let nodes () : ClusterNode list =
        let text = redisCli [ "-p"; string (alive ()).Head.Port; "cluster"; "nodes" ]
        [
            for line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries) do
                let parts = line.Trim().Split(' ')
                let address = parts[1].Split('@')[0]
                let flags = parts[2].Split(',')
                let slots =
                    parts
                    |> Array.skip 8
                    |> Array.sumBy (fun range ->
                        if range.StartsWith "[" then
                            0
                        else
                            match range.Split('-') with
                            | [| first; last |] -> int last - int first + 1
                            | _ -> 1)
                {
                    Id = parts[0]
                    Port = int (address.Substring(address.LastIndexOf ':' + 1))
                    IsPrimary = Array.contains "master" flags
                    Failed = Array.contains "fail" flags
                    PrimaryId = parts[3]
                    Slots = slots
                }
        ]

    let replicaInSync (port: int) =
        let info = redisCli [ "-p"; string port; "info"; "replication" ]
        info.Contains "role:slave" && info.Contains "master_link_status:up" && not (info.Contains "master_sync_in_progress:1")

    let healthy () =
        let all = nodes ()
        (alive ()) |> List.forall (fun s -> (redisCli [ "-p"; string s.Port; "cluster"; "info" ]).Contains "cluster_state:ok")
        && all |> List.filter (fun n -> n.IsPrimary && not n.Failed && n.Slots > 0) |> List.length = 3
        && all |> List.filter (fun n -> not n.IsPrimary && not n.Failed) |> List.forall (fun n -> replicaInSync n.Port)
        && all |> List.filter (fun n -> not n.IsPrimary && not n.Failed) |> List.length = 3

    do
        for server in servers do
            server.Start()
        redisCli ([ "--cluster"; "create" ] @ [ for server in servers -> $"127.0.0.1:{server.Port}" ] @ [ "--cluster-replicas"; "1"; "--cluster-yes" ])
        |> ignore
        waitUntil (TimeSpan.FromSeconds 60.0) "the cluster to serve every slot with its replicas in sync" healthy

    /// A StackExchange.Redis configuration naming every node.
    member _.Configuration = String.Join(",", [ for server in servers -> $"127.0.0.1:{server.Port}" ])

    /// The nodes as a live node sees them now.
    member _.Nodes() = nodes ()

    /// The server on a port.
    member _.Server(port: int) = servers |> List.find (fun s -> s.Port = port)

    /// Waits until every slot is served by three primaries whose replicas are in sync.
    member _.WaitHealthy(timeout: TimeSpan) = waitUntil timeout "the cluster to be healthy" healthy

    /// A connection as an app would make one (it reconnects and follows the cluster by itself).
    member this.ConnectAsync() : Task<ConnectionMultiplexer> =
        let settings = ConfigurationOptions.Parse this.Configuration
        settings.AbortOnConnectFail <- false
        settings.ConnectTimeout <- 2000
        settings.BacklogPolicy <- BacklogPolicy.FailFast
        ConnectionMultiplexer.ConnectAsync(settings, null)

    /// Moves <paramref name="slots"/> slots from one primary to another with redis-cli --cluster reshard.
    member _.Reshard(fromId: string, toId: string, slots: int) =
        let port = (alive ()).Head.Port
        redisCli [
            "--cluster"
            "reshard"
            $"127.0.0.1:{port}"
            "--cluster-from"
            fromId
            "--cluster-to"
            toId
            "--cluster-slots"
            string slots
            "--cluster-yes"
        ]
        |> ignore

    interface IDisposable with
        member _.Dispose() =
            for server in servers do
                (server :> IDisposable).Dispose()
            try
                Directory.Delete(directory, true)
            with _ ->
                ()

/// The cluster and a connection to it for the whole test run: started when the first test needs them, stopped
/// when the run ends.
let shared =
    lazy
        (let started = new RedisCluster()
         let connection = started.ConnectAsync().GetAwaiter().GetResult()
         AppDomain.CurrentDomain.ProcessExit.Add(fun _ -> (started :> IDisposable).Dispose())
         started, connection)
