namespace Sesame.Redis

open System
open System.IO
open System.Reflection
open System.Security.Cryptography
open System.Text
open System.Threading.Tasks
open StackExchange.Redis

/// <summary>
/// The store's Lua sources (embedded in this assembly), and all its scripts as one Redis function library
/// (Redis 7 and later): the shared parts (Layout.lua, Patch.lua) run once, when the library is loaded, where a
/// script sent by EVALSHA runs them again on every call. For a commit that was about 6.4 µs of Redis's own time of
/// about 23 (INFO commandstats).
/// </summary>
/// <remarks>
/// <para>The library's name holds a hash of its text, so two versions of Sesame on one Redis (during a rolling
/// deploy) each call their own functions. A library that no instance uses any more can be removed with
/// <c>FUNCTION DELETE</c>. It is loaded on a server when a call there finds it missing (a new server, a restart
/// without persistence, <c>FUNCTION FLUSH</c>); a primary passes it on to its replicas.</para>
/// <para>Flags: a commit or a move may grow what Redis holds, so Redis refuses them before they run when it is over
/// <c>maxmemory</c> (its default for functions). Loads, deletes, sweeps and listings write nothing that grows it
/// and must keep working when Redis is full (a sign-out frees memory): they are <c>allow-oom</c>.</para>
/// </remarks>
module internal RedisLibrary =

    /// An embedded Lua source by name (its logical name is Sesame.Redis.NAME.lua).
    let read (name: string) =
        use stream = Assembly.GetExecutingAssembly().GetManifestResourceStream $"Sesame.Redis.{name}.lua"
        if isNull stream then invalidOp $"The embedded script {name}.lua is missing from Sesame.Redis."
        use reader = new StreamReader(stream, Encoding.UTF8)
        reader.ReadToEnd()

    /// The shared parts, in the order every script needs them.
    let shared = [ "Layout"; "Patch" ]

    /// Each script, and whether it may run when Redis is over maxmemory (allow-oom).
    let private scripts = [ "Commit", false; "Move", false; "Load", true; "Delete", true; "MoveGap", true; "Sweep", true; "ListUser", true; "ListShard", true ]

    /// Whether a script writes nothing that grows what Redis holds (loads, deletes, sweeps, listings): it runs when
    /// Redis is over maxmemory, and where Redis refuses it before it runs for another reason, it goes as a script
    /// by EVALSHA, which Redis refuses only at a write.
    let mayRunWhenFull (script: string) = scripts |> List.exists (fun (name, allowOom) -> name = script && allowOom)

    /// Stands for the library's name while its text is hashed.
    let private placeholder = "\u0000NAME\u0000"

    /// The library's text with the placeholder for its name. KEYS and ARGV are locals of the library that each
    /// function sets (Layout.lua's bind) before its script's own text runs.
    let private template =
        let builder = StringBuilder()
        builder.Append("#!lua name=").Append(placeholder).Append("\nlocal KEYS, ARGV\n") |> ignore
        for part in shared do
            builder.Append(read part).Append('\n') |> ignore
        for script, allowOom in scripts do
            builder
                .Append("redis.register_function{function_name='")
                .Append(placeholder)
                .Append('_')
                .Append(script.ToLowerInvariant())
                .Append("', callback=function(keys, args)\nbind(keys, args)\n")
                .Append(read script)
                .Append("\nend")
                .Append(if allowOom then ", flags={'allow-oom'}" else "")
                .Append("}\n")
            |> ignore
        builder.ToString()

    /// The library's name: "sesame_" and the first 16 hex digits of the SHA-1 of its text (sources, flags and all).
    let name = "sesame_" + Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes template)).Substring(0, 16)

    /// The function a script is in the library.
    let functionOf (script: string) = $"{name}_{script.ToLowerInvariant()}"

    /// The library's text, as FUNCTION LOAD takes it.
    let text = template.Replace(placeholder, name)

    /// Whether Redis refused a call because this library is not loaded on the server that got it.
    let isMissing (e: RedisServerException) = e.Message.Contains("Function not found", StringComparison.Ordinal)

    /// Whether Redis cannot run functions for this store: too old (before 7.0: no FCALL or FUNCTION), or a user the
    /// ACL does not allow the commands ("NOPERM ... to run the 'fcall' command"; a key the ACL forbids is another
    /// refusal, which EVALSHA would meet too).
    let isUnavailable (e: RedisServerException) =
        let message = e.Message
        message.StartsWith("ERR unknown command", StringComparison.OrdinalIgnoreCase)
        || message.StartsWith("NOPERM", StringComparison.Ordinal)
           && (message.Contains("'fcall'", StringComparison.OrdinalIgnoreCase) || message.Contains("'function", StringComparison.OrdinalIgnoreCase))

    /// Why functions are unavailable, for a log: Redis's own message names the call's keys, and so a session id.
    let describeUnavailable (e: RedisServerException) =
        if e.Message.StartsWith("NOPERM", StringComparison.Ordinal) then
            "the ACL does not let this user run FCALL or FUNCTION"
        else
            "FCALL is an unknown command: Redis before 7.0, or the command renamed"

    /// Whether Redis refused a write before running anything, where EVAL would have started and been refused only
    /// at its first write: over maxmemory (OOM; FUNCTION LOAD is refused too), too few replicas (NOREPLICAS), a
    /// failed save (MISCONF).
    let isRefusedUpFront (e: RedisServerException) =
        let message = e.Message
        message.StartsWith("OOM", StringComparison.Ordinal)
        || message.StartsWith("NOREPLICAS", StringComparison.Ordinal)
        || message.StartsWith("MISCONF", StringComparison.Ordinal)

    /// Loads the library on a server. Gives false when it was there already (another call or instance loaded it), or
    /// when Redis refuses to load it now (see isRefusedUpFront): the call then goes as a script.
    let tryLoadAsync (server: IServer) : Task<bool> = task {
        try
            let! _ = server.ExecuteAsync("FUNCTION", [| box "LOAD"; box text |])
            return true
        with :? RedisServerException as e when e.Message.Contains("already exists", StringComparison.Ordinal) || isRefusedUpFront e ->
            return false
    }
