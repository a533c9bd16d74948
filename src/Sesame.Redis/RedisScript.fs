namespace Sesame.Redis

open System
open System.Runtime.ExceptionServices
open System.Security.Cryptography
open System.Text
open System.Threading.Tasks
open StackExchange.Redis

/// <summary>
/// One of the store's Lua scripts, run one of two ways. As a function of the store's library (Redis 7 and later,
/// see RedisLibrary): FCALL with its name; when the server does not have the library, it is loaded there and the call
/// is made again. Or as a script: its text (the shared parts and its own) and SHA-1; a call sends EVALSHA with the
/// hash; when Redis answers NOSCRIPT (after a restart, a failover or SCRIPT FLUSH) it is sent again with the text,
/// once, and then the hash works again.
/// </summary>
/// <remarks>
/// Why not StackExchange.Redis's own script handling for every call: the overload that takes the
/// text recovers from NOSCRIPT by itself (it pipelines SCRIPT LOAD and EVAL, then uses EVALSHA),
/// but it finds the hash by looking the whole text up in a per-server table, which hashes the
/// commit script's 13,000 characters on every call (about 20 µs of CPU here, a fifth of a
/// loopback round trip). The overload that takes the hash writes it as it is. So the hash
/// overload is the steady state, and the text overload is the fallback after NOSCRIPT, where its
/// SCRIPT LOAD also re-registers the script with the client and the server (a loaded script is
/// never evicted from the server's cache). <c>LuaScript</c>/<c>LoadedLuaScript</c> do not fit:
/// they bind named parameters from an object's members, and a commit's ARGV has a length of its
/// own; in 3.x they also go through the text overload.
/// </remarks>
[<Sealed>]
type internal RedisScript private (name: string, text: string) =
    let hash = SHA1.HashData(Encoding.UTF8.GetBytes text)
    let hashHex = Convert.ToHexStringLower hash
    let functionName = RedisLibrary.functionOf name

    static let isNoScript (e: RedisServerException) = e.Message.StartsWith("NOSCRIPT", StringComparison.Ordinal)


    /// The script's name, for logs.
    member _.Name = name

    /// The script's source.
    member _.Text = text

    /// The script's SHA-1, as EVALSHA takes it.
    member _.Hash = hash

    /// <summary>
    /// Loads an embedded script (its logical name is Sesame.Redis.NAME.lua) with the shared parts it builds on
    /// (Layout, and Patch for scripts that change a session) before it, as one text: KEYS and ARGV become locals
    /// that Layout.lua's bind sets, as the library's functions do.
    /// </summary>
    static member Embedded(name: string, parts: string list) =
        let body = String.concat "\n" [ for part in parts -> RedisLibrary.read part ]
        RedisScript(name, $"local KEYS, ARGV = KEYS, ARGV\n{body}\nbind(KEYS, ARGV)\n{RedisLibrary.read name}")

    /// The arguments after FCALL, EVALSHA or EVAL: what to run (the function's name, the SHA-1 in hex, the text), the
    /// number of keys, the keys, the arguments.
    member private _.CommandArguments(command: string, keys: RedisKey[], arguments: RedisValue[]) : obj[] =
        let all = Array.zeroCreate<obj>(2 + keys.Length + arguments.Length)
        all[0] <-
            match command with
            | "FCALL" -> box functionName
            | "EVALSHA" -> box hashHex
            | _ -> box text
        all[1] <- box keys.Length
        for i in 0 .. keys.Length - 1 do
            all[2 + i] <- box keys[i]
        for i in 0 .. arguments.Length - 1 do
            all[2 + keys.Length + i] <- box arguments[i]
        all

    /// <summary>
    /// Runs the script as a function of the store's library, falling back to <paramref name="asScript"/> (EVALSHA) for
    /// this one call where FCALL cannot run it: the server still has no library after the store loaded it (the call
    /// was redirected to a server importing the keys' slot, or Redis refused to load it because it is over
    /// maxmemory), or Redis refused the function before it ran where it would have let a script start (see
    /// RedisLibrary.isRefusedUpFront; only for the scripts that may run when Redis is full).
    /// </summary>
    /// <remarks>Redis's refusal when it cannot run functions at all (see RedisLibrary.isUnavailable) is raised as it
    /// is: the store then runs its scripts with EVALSHA.</remarks>
    member private _.WithFallback(server: unit -> IServer, onLoad: unit -> unit, call: unit -> Task<'reply>, asScript: unit -> Task<'reply>) : Task<'reply> =
        task {
            try
                return! call ()
            with
            | :? RedisServerException as e when RedisLibrary.isMissing e ->
                let! loaded = RedisLibrary.tryLoadAsync (server ())
                if loaded then onLoad ()
                try
                    return! call ()
                with :? RedisServerException as e when RedisLibrary.isMissing e ->
                    return! asScript ()
            | :? RedisServerException as e when RedisLibrary.mayRunWhenFull name && RedisLibrary.isRefusedUpFront e -> return! asScript ()
        }

    /// <summary>Runs the script as a function of the store's library (FCALL), loading the library on the keys' server
    /// when it is missing there; where FCALL cannot run it, by EVALSHA (see WithFallback).</summary>
    /// <param name="connection">Where the server that owns the keys is found, to load the library there.</param>
    /// <param name="database">Where to run it.</param>
    /// <param name="keys">The keys the script declares (all in one Redis Cluster slot).</param>
    /// <param name="arguments">ARGV.</param>
    /// <param name="onLoad">Called when the library was missing and this call loaded it.</param>
    /// <param name="onReload">Called when the script went by EVALSHA, Redis had lost it, and it was sent again.</param>
    member this.CallAsync
        (connection: IConnectionMultiplexer, database: IDatabaseAsync, keys: RedisKey[], arguments: RedisValue[], onLoad: unit -> unit, onReload: unit -> unit)
        : Task<RedisResult> =
        let call = this.CommandArguments("FCALL", keys, arguments)
        this.WithFallback(
            (fun () -> connection.GetServer(keys[0], null, CommandFlags.None)),
            onLoad,
            (fun () -> database.ExecuteAsync("FCALL", call, CommandFlags.None)),
            (fun () -> this.EvaluateAsync(database, keys, arguments, onReload))
        )

    /// <summary>Runs the script: EVALSHA, then the text if Redis no longer has it.</summary>
    /// <param name="database">Where to run it.</param>
    /// <param name="keys">The keys the script declares (all in one Redis Cluster slot).</param>
    /// <param name="arguments">ARGV.</param>
    /// <param name="onReload">Called when Redis had lost the script and it is sent again.</param>
    member _.EvaluateAsync(database: IDatabaseAsync, keys: RedisKey[], arguments: RedisValue[], onReload: unit -> unit) : Task<RedisResult> = task {
        try
            return! database.ScriptEvaluateAsync(hash, keys, arguments, CommandFlags.None)
        with :? RedisServerException as e when isNoScript e ->
            onReload ()
            return! database.ScriptEvaluateAsync(text, keys, arguments, CommandFlags.None)
    }

    /// <summary>
    /// Runs the script and then <c>WAIT replicas timeout</c> on the same connection, written together (one round
    /// trip, plus the replicas' acknowledgement). Gives the script's reply and the number of replicas that
    /// acknowledged every write made so far on that connection, the script's among them.
    /// </summary>
    /// <remarks>
    /// On Redis Cluster both go to the server that owns the keys' slot by <see cref="T:StackExchange.Redis.IServer"/>,
    /// the script with <c>NoRedirect</c>: had it been redirected (MOVED, ASK), the WAIT would have gone to another
    /// server than the one that ran it, so a redirect is an error (the script did not run) that the caller retries
    /// once the client knows the slot's new owner. Elsewhere both go through the database (one primary). With
    /// <c>functions</c> the script goes as FCALL of the library's function, and a server without the library gets
    /// it first (FUNCTION LOAD); otherwise as EVALSHA, and EVAL after NOSCRIPT.
    /// </remarks>
    member this.EvaluateAndWaitAsync
        (
            connection: IConnectionMultiplexer,
            database: IDatabaseAsync,
            cluster: bool,
            keys: RedisKey[],
            arguments: RedisValue[],
            replicas: int,
            timeoutMilliseconds: int64,
            functions: bool,
            onLoad: unit -> unit,
            onReload: unit -> unit
        ) : Task<struct (RedisResult * int64)> =
        let waitArguments: obj[] = [| box replicas; box timeoutMilliseconds |]
        // command is FCALL, EVALSHA or EVAL.
        let send (command: string) : struct (Task<RedisResult> * Task<RedisResult>) =
            if cluster then
                let server = connection.GetServer(keys[0], null, CommandFlags.None)
                let ran = server.ExecuteAsync(command, this.CommandArguments(command, keys, arguments), CommandFlags.NoRedirect)
                struct (ran, server.ExecuteAsync("WAIT", waitArguments, CommandFlags.None))
            else
                let ran =
                    match command with
                    | "FCALL" -> database.ExecuteAsync("FCALL", this.CommandArguments(command, keys, arguments), CommandFlags.None)
                    | "EVALSHA" -> database.ScriptEvaluateAsync(hash, keys, arguments, CommandFlags.None)
                    | _ -> database.ScriptEvaluateAsync(text, keys, arguments, CommandFlags.None)
                struct (ran, database.ExecuteAsync("WAIT", waitArguments, CommandFlags.None))
        // Both replies; if the command failed, the WAIT's own failure is observed and the command's raised.
        let run (command: string) : Task<struct (RedisResult * int64)> =
            let struct (ran, waited) = send command
            task {
                try
                    let! reply = ran
                    let! acknowledged = waited
                    return struct (reply, (RedisResult.op_Explicit acknowledged: int64))
                with e ->
                    waited.ContinueWith((fun (t: Task<RedisResult>) -> t.Exception |> ignore), TaskContinuationOptions.OnlyOnFaulted) |> ignore
                    ExceptionDispatchInfo.Throw e
                    return Unchecked.defaultof<_>
            }
        let asScript () : Task<struct (RedisResult * int64)> = task {
            try
                return! run "EVALSHA"
            with :? RedisServerException as e when isNoScript e ->
                onReload ()
                return! run "EVAL"
        }
        if functions then
            this.WithFallback((fun () -> connection.GetServer(keys[0], null, CommandFlags.None)), onLoad, (fun () -> run "FCALL"), asScript)
        else
            asScript ()
