/// Writes sessions with Sesame's Redis store into a throwaway redis-server and asks Redis what they cost:
/// MEMORY USAGE of every key they use, against the same JSON as one plain string key per session.
module Sesame.RedisMemory.Measure

open System
open System.Collections.Generic
open System.Globalization
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging.Abstractions
open Sesame
open Sesame.Redis
open Sesame.RedisMemory.Cases
open StackExchange.Redis

/// Redis's hash encoding limits for one run, and the store's inline limit.
type Config = {
    Name: string
    /// hash-max-listpack-entries
    Entries: int
    /// hash-max-listpack-value
    Value: int
    /// RedisStoreOptions.InlineLimit (0: no leaf inline, format 2)
    Inline: int
}

/// What one case cost under one config, per session.
type Figures = {
    Case: Case
    Config: Config
    Sessions: int
    /// The tree's compact JSON, on average.
    JsonBytes: float
    /// A sample session hash's field count and its longest field name or value, in bytes.
    Fields: int
    Longest: int
    /// The sample's bytes of field names and of values (what any encoding must hold).
    NameBytes: int
    ValueBytes: int
    /// How many session hashes have each encoding.
    Encodings: (string * int) list
    /// MEMORY USAGE (SAMPLES 0) of the session hashes, per session.
    HashBytes: float
    /// MEMORY USAGE of every other key the store made (the shards' expiry and id sets, bound hashes, user indexes), per session.
    IndexBytes: float
    /// The encodings of the shards' id sets.
    IndexEncoding: string
    /// MEMORY USAGE of the same JSON as one string key per session (same key names, same TTL).
    PlainBytes: float
    /// used_memory's growth per session, Sesame's layout and plain strings (a cross-check: it counts the keyspace's
    /// and the expiry table's own growth too).
    SesameUsed: float
    PlainUsed: float
} with

    member f.SesameBytes = f.HashBytes + f.IndexBytes
    member f.Ratio = f.SesameBytes / f.PlainBytes

/// What a load and a commit cost Redis under one config: its own time per script call (INFO commandstats).
type Cost = { LoadMicroseconds: float; CommitMicroseconds: float }

/// Redis, the connection and the store under measure.
type Bench(port: int) =
    let connection = ConnectionMultiplexer.Connect($"127.0.0.1:{port},allowAdmin=true,abortConnect=false,syncTimeout=60000,asyncTimeout=60000")
    let server = connection.GetServer($"127.0.0.1:{port}")
    let db = connection.GetDatabase()
    let options = RedisStoreOptions(SweepInterval = TimeSpan.Zero)
    /// A store per inline limit, on the one connection.
    let stores = Dictionary<int, RedisStore>()
    let storeOf (config: Config) =
        match stores.TryGetValue config.Inline with
        | true, store -> store
        | _ ->
            let store = new RedisStore(connection, RedisStoreOptions(SweepInterval = TimeSpan.Zero, InlineLimit = config.Inline), NullLogger.Instance)
            stores[config.Inline] <- store
            store
    let idle = TimeSpan.FromHours 1.0

    let commitOptions mustExist = { IdleTimeout = idle; MustExist = mustExist; MaxSizeBytes = SesameOptions.DefaultMaxSessionBytes; UserLimit = UserLimit.None }

    let ms (t: DateTimeOffset) = Json.int64 (t.ToUnixTimeMilliseconds())
    let fact (name: string) (json: Json) = Update.Set(SessionPath.ofKeys [ name ], json)

    /// Runs `work` for 0 .. count-1, `parallel` at a time.
    let forEach (count: int) (width: int) (work: int -> Task) =
        let next = ref -1
        let worker () = task {
            let mutable i = Interlocked.Increment &next.contents
            while i < count do
                do! work i
                i <- Interlocked.Increment &next.contents
        }
        Task.WhenAll(Array.init width (fun _ -> worker () :> Task)).GetAwaiter().GetResult()

    let usedMemory () =
        let info = server.Info "memory"
        info |> Seq.collect id |> Seq.find (fun kv -> kv.Key = "used_memory") |> fun kv -> float (Int64.Parse(kv.Value, CultureInfo.InvariantCulture))

    let memoryUsage (key: RedisKey) = task {
        let! reply = db.ExecuteAsync("MEMORY", [| box "USAGE"; box key; box "SAMPLES"; box "0" |])
        return int64 reply
    }

    /// Every key in the database.
    let allKeys () = server.Keys(pattern = RedisValue.op_Implicit "*", pageSize = 1000) |> Array.ofSeq

    /// The key a session lives under (Layout.lua's sessionKey, for ids Sesame makes).
    let sessionKey (id: string) = options.KeyPrefix + "{" + string id[0] + "}:" + id

    /// Writes session i of the case as Sesame's first commit of a new session does; gives its id.
    let write (store: RedisStore) (case: Case) (i: int) : Task<string> = task {
        let data = Patch.fold [ Update.Set(SessionPath.root, Json.parse (case.Json i)) ]
        let created = DateTimeOffset.UtcNow
        if case.SignedIn then
            let user = $"user-{i}@example.com"
            let device = Json.object [ "userAgent", Json.string userAgent; "ip", Json.string $"203.0.113.{i % 250}"; "signedIn", ms created ]
            let meta = Patch.fold [ fact SessionMeta.Created (ms created); fact SessionMeta.User (Json.string user); fact SessionMeta.Device device ]
            let id = SessionId.createFor user
            let! result = store.MoveAsync(null, id, SessionChange(data, meta), commitOptions false, CancellationToken.None)
            if result <> CommitResult.Committed then failwith $"The sign-in of session {i} gave {result}."
            return id
        else
            let id = SessionId.create ()
            let meta = Patch.fold [ fact SessionMeta.Created (ms created) ]
            let! result = store.CommitAsync(id, SessionChange(data, meta), commitOptions false, CancellationToken.None)
            if result <> CommitResult.Committed then failwith $"The commit of session {i} gave {result}."
            return id
    }

    let configure (config: Config) =
        server.ConfigSet("hash-max-listpack-entries", config.Entries)
        server.ConfigSet("hash-max-listpack-value", config.Value)

    let flush () = server.FlushAllDatabases()

    /// Redis's own time per script call since the last reset: FCALL (the store's function library, Redis 7 and
    /// later) or EVALSHA, with the SELECT that StackExchange.Redis writes before each FCALL.
    let scriptMicroseconds () =
        let stats = server.Info "commandstats" |> Seq.collect id |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq
        let field (name: string) (command: string) =
            match stats.TryFind $"cmdstat_{command}" with
            | Some value ->
                let part = value.Split(',') |> Array.find (fun p -> p.StartsWith(name + "="))
                Double.Parse(part.Substring(name.Length + 1), CultureInfo.InvariantCulture)
            | None -> 0.0
        let calls = field "calls" "fcall" + field "calls" "evalsha"
        (field "usec" "fcall" + field "usec" "evalsha" + field "usec" "select") / calls

    /// The redis-server's version line.
    member _.Version = server.Version.ToString()

    /// The server's current hash limits (its defaults before any run).
    member _.CurrentLimits() =
        let get (name: string) = int (server.ConfigGet(RedisValue.op_Implicit name) |> Array.exactlyOne).Value
        get "hash-max-listpack-entries", get "hash-max-listpack-value"

    /// The zset limit the shards' id and expiry sets fall under.
    member _.ZsetEntries = int (server.ConfigGet(RedisValue.op_Implicit "zset-max-listpack-entries") |> Array.exactlyOne).Value

    /// Writes `sessions` sessions of the case under the config, then the same JSON as plain strings, and measures both.
    member _.Measure(config: Config, case: Case, sessions: int) : Figures =
        configure config
        flush ()
        let store = storeOf config
        let before = usedMemory ()
        let ids = Array.zeroCreate sessions
        forEach sessions 32 (fun i -> task {
            let! id = write store case i
            ids[i] <- id
        })
        let sesameUsed = usedMemory () - before
        let keys = allKeys ()
        let isSession (key: RedisKey) = (string key).Contains "}:"
        let usage = Array.zeroCreate keys.Length
        forEach keys.Length 32 (fun k -> task {
            let! bytes = memoryUsage keys[k]
            usage[k] <- bytes
        })
        let hashBytes, otherBytes =
            Array.zip keys usage |> Array.partition (fun (key, _) -> isSession key) |> fun (s, o) -> Array.sumBy snd s, Array.sumBy snd o
        let sessionKeys = keys |> Array.filter isSession
        if sessionKeys.Length <> sessions then failwith $"{sessions} sessions written, {sessionKeys.Length} session keys found."
        let encodings = Dictionary<string, int>()
        for key in sessionKeys do
            let encoding = string (db.Execute("OBJECT", [| box "ENCODING"; box key |]))
            encodings[encoding] <-
                (match encodings.TryGetValue encoding with
                 | true, n -> n
                 | _ -> 0)
                + 1
        let sample = db.HashGetAll(RedisKey.op_Implicit (sessionKey ids[sessions / 2]))
        let longest = sample |> Array.collect (fun e -> [| (e.Name: RedisValue).GetByteCount(); (e.Value: RedisValue).GetByteCount() |]) |> Array.max
        let indexEncoding =
            keys
            |> Array.filter (fun k -> (string k).EndsWith "}ids")
            |> Array.map (fun k -> string (db.Execute("OBJECT", [| box "ENCODING"; box k |])))
            |> Array.distinct
            |> String.concat "/"
        let jsonBytes = Array.init sessions (fun i -> Text.Encoding.UTF8.GetByteCount(case.Json i)) |> Array.averageBy float
        // The same JSON as one string key per session: the same key names, the same TTL.
        flush ()
        let before = usedMemory ()
        let ttl = string (int64 idle.TotalMilliseconds)
        forEach sessions 32 (fun i -> task {
            let! _ = db.ExecuteAsync("SET", [| box (sessionKey ids[i]); box (case.Json i); box "PX"; box ttl |])
            ()
        })
        let plainUsed = usedMemory () - before
        let plain = Array.zeroCreate sessions
        forEach sessions 32 (fun i -> task {
            let! bytes = memoryUsage (RedisKey.op_Implicit (sessionKey ids[i]))
            plain[i] <- bytes
        })
        flush ()
        let per (total: int64) = float total / float sessions
        {
            Case = case
            Config = config
            Sessions = sessions
            JsonBytes = jsonBytes
            Fields = sample.Length
            Longest = longest
            NameBytes = sample |> Array.sumBy (fun e -> e.Name.GetByteCount())
            ValueBytes = sample |> Array.sumBy (fun e -> e.Value.GetByteCount())
            Encodings = [ for KeyValue(k, n) in encodings -> k, n ] |> List.sort
            HashBytes = per hashBytes
            IndexBytes = per otherBytes
            IndexEncoding = indexEncoding
            PlainBytes = per (Array.sum plain)
            SesameUsed = sesameUsed / float sessions
            PlainUsed = plainUsed / float sessions
        }

    /// Redis's time per load and per commit (a counter incremented and the last page set, as a request does) of
    /// `sessions` sessions of the case under the config.
    member _.Cost(config: Config, case: Case, sessions: int) : Cost =
        configure config
        flush ()
        let store = storeOf config
        let ids = Array.zeroCreate sessions
        forEach sessions 16 (fun i -> task {
            let! id = write store case i
            ids[i] <- id
        })
        server.ConfigResetStatistics()
        forEach sessions 8 (fun i -> task {
            let! stored = store.LoadAsync(ids[i], idle, CancellationToken.None)
            if isNull stored then failwith $"Session {i} is missing."
        })
        let load = scriptMicroseconds ()
        server.ConfigResetStatistics()
        forEach sessions 8 (fun i -> task {
            let data =
                Patch.fold [
                    Update.Increment(SessionPath.ofKeys [ "visits" ], JsonNumber.OfInt64 1L)
                    Update.Set(SessionPath.ofKeys [ "lastPage" ], Json.string $"/products/{i}?ref=cart")
                ]
            let! result = store.CommitAsync(ids[i], SessionChange data, commitOptions true, CancellationToken.None)
            if result <> CommitResult.Committed then failwith $"The commit to session {i} gave {result}."
        })
        let commit = scriptMicroseconds ()
        flush ()
        { LoadMicroseconds = load; CommitMicroseconds = commit }

    interface IDisposable with
        member _.Dispose() =
            for store in stores.Values do
                (store :> IDisposable).Dispose()
            connection.Dispose()
