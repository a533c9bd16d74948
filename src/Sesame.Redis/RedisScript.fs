namespace Sesame.Redis

open System
open System.IO
open System.Security.Cryptography
open System.Text
open System.Threading.Tasks
open StackExchange.Redis

/// <summary>
/// One of the store's Lua scripts: its text (embedded in this assembly) and SHA-1. A call sends
/// EVALSHA with the hash; when Redis answers NOSCRIPT (after a restart, a failover or SCRIPT
/// FLUSH) it is sent again with the text, once, and then the hash works again.
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

    /// The script's name, for logs.
    member _.Name = name

    /// The script's source.
    member _.Text = text

    /// Loads an embedded script (its logical name is Sesame.Redis.NAME.lua).
    static member Embedded(name: string) =
        use stream = typeof<RedisScript>.Assembly.GetManifestResourceStream $"Sesame.Redis.{name}.lua"
        if isNull stream then invalidOp $"The embedded script {name}.lua is missing from Sesame.Redis."
        use reader = new StreamReader(stream, Encoding.UTF8)
        RedisScript(name, reader.ReadToEnd())

    /// <summary>Runs the script on one key: EVALSHA, then the text if Redis no longer has it.</summary>
    /// <param name="database">Where to run it.</param>
    /// <param name="key">The only key the script touches (so it is cluster-safe).</param>
    /// <param name="arguments">ARGV.</param>
    /// <param name="onReload">Called when Redis had lost the script and it is sent again.</param>
    member _.EvaluateAsync(database: IDatabaseAsync, key: RedisKey, arguments: RedisValue[], onReload: unit -> unit) : Task<RedisResult> =
        task {
            let keys = [| key |]
            try
                return! database.ScriptEvaluateAsync(hash, keys, arguments, CommandFlags.None)
            with :? RedisServerException as e when e.Message.StartsWith("NOSCRIPT", StringComparison.Ordinal) ->
                onReload ()
                return! database.ScriptEvaluateAsync(text, keys, arguments, CommandFlags.None)
        }
