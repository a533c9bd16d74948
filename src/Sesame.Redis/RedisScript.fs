namespace Sesame.Redis

open System
open System.IO
open System.Security.Cryptography
open System.Text
open System.Threading.Tasks
open StackExchange.Redis

/// <summary>
/// One of the store's Lua scripts: its text (embedded in this assembly) and SHA-1, called by
/// EVALSHA so a call sends the hash rather than the script; when Redis answers NOSCRIPT (after
/// a restart, a failover or SCRIPT FLUSH), the call is sent again with the script's text.
/// </summary>
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

    /// <summary>Runs the script on one key: EVALSHA, then EVAL if Redis no longer has it.</summary>
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
