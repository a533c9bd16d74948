/// PostgreSQL store figures, measured against a throwaway cluster of the run's own (initdb, pg_ctl; fsync on, as a
/// real server) or the server a connection string names. Not BenchmarkDotNet: what counts here is WAL bytes and
/// throughput of the database, measured over whole runs, always beside a baseline measured in the same run.
///
///   postgres [--connection CS] [--commits N]   commits/s (1 and 32 writers) and WAL bytes per commit of a one-key
///                                              change in a 16 KB session: Sesame against the usual way (read the
///                                              session, rewrite its whole JSON in one row).
///   postgres-churn [--connection CS] [--sessions N] [--operations N]
///                                              N sessions, then a churn of loads, commits, sign-ins, deletes and
///                                              expiry with the sweeper and autovacuum running: table and index
///                                              sizes, dead tuples and HOT updates before and after.
module Sesame.Benchmarks.PostgresBenchmarks

open System
open System.Diagnostics
open System.Threading
open System.Threading.Tasks
open Npgsql
open Sesame
open Sesame.Postgres
open Sesame.Postgres.Tests.PostgresServer

let private option (name: string) (args: string list) =
    let rec find args =
        match args with
        | flag :: value :: _ when flag = name -> Some value
        | _ :: rest -> find rest
        | [] -> None
    find args

/// The server to measure: the one named by --connection, or a cluster of the run's own (stopped at the end).
let private serverFor (args: string list) (settings: (string * string) list) : string * IDisposable =
    match option "--connection" args with
    | Some connection ->
        connection,
        {
            new IDisposable with
                member _.Dispose() = ()
        }
    | None ->
        let server = new PostgresServer(settings)
        server.ConnectionString(), (server :> IDisposable)

let private words = [|
    "amber"
    "basil"
    "cedar"
    "delta"
    "ember"
    "fjord"
    "garnet"
    "harbor"
    "indigo"
    "juniper"
    "kelp"
    "lumen"
    "maple"
    "nectar"
    "onyx"
    "pepper"
    "quartz"
    "raven"
    "saffron"
    "tundra"
    "umber"
    "violet"
    "willow"
    "yarrow"
|]

/// A session of about 16 KB of compact JSON, as an app might keep: a profile, preferences, a cart, a history.
let sixteenKilobyteSession (seed: int) : Json =
    let random = Random seed
    let phrase n = String.Join(" ", Array.init n (fun _ -> words[random.Next words.Length])) + $" {random.Next 100000}"
    let item i =
        let euros, cents = 1 + random.Next 199, random.Next 100
        Json.object [
            "sku", Json.String $"SKU-{random.Next 1000000:D7}"
            "name", Json.String(phrase 4)
            "price", Json.Number(JsonNumber.Parse $"{euros}.{cents:D2}")
            "quantity", Json.int64 (int64 (1 + random.Next 5))
            "added", Json.int64 (1_700_000_000_000L + int64 i * 37_000L)
        ]
    let tree count =
        Json.object [
            "user", Json.object [ "id", Json.String $"u-{random.Next 1000000}"; "name", Json.String(phrase 2); "email", Json.String "someone@example.com" ]
            "prefs", Json.object [ "theme", Json.String "light"; "language", Json.String "en-GB"; "currency", Json.String "EUR"; "pageSize", Json.int64 25L ]
            "cart", Json.object [ "items", Json.array [ for i in 1..count -> item i ]; "coupon", Json.Null ]
            "history", Json.array [ for _ in 1 .. count * 2 -> Json.String("/catalog/" + (phrase 2).Replace(' ', '-')) ]
            "visits", Json.int64 1L
        ]
    // Grow the cart and history until the session is about 16 KB.
    let rec grow count =
        let json = tree count
        if JsonSize.utf8Length json >= 16_384L then json else grow (count + 1)
    grow 10

let private walPosition (dataSource: NpgsqlDataSource) : Task<int64> = task {
    use command = dataSource.CreateCommand "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
    let! position = command.ExecuteScalarAsync()
    return unbox<int64> position
}

let private execute (dataSource: NpgsqlDataSource) (sql: string) : Task = task {
    use command = dataSource.CreateCommand sql
    let! _ = command.ExecuteNonQueryAsync()
    ()
}

/// The usual way a session store keeps a session: its whole JSON in one row, read when a request starts and
/// written back whole when it ends (what connect-pg-simple, activerecord-session_store and the PostgreSQL
/// IDistributedCache do, one text value per session).
[<Sealed>]
type private WholeRowStore(dataSource: NpgsqlDataSource) =
    member _.CreateAsync() =
        execute dataSource "CREATE TABLE IF NOT EXISTS whole_sessions (id text PRIMARY KEY, data text NOT NULL, expires_at timestamptz NOT NULL)"

    member _.SaveAsync(id: string, session: Json) : Task = task {
        use command =
            dataSource.CreateCommand
                "INSERT INTO whole_sessions (id, data, expires_at) VALUES ($1, $2, now() + interval '20 minutes') ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at"
        command.Parameters.Add(NpgsqlParameter<string>(TypedValue = id)) |> ignore
        command.Parameters.Add(NpgsqlParameter<string>(TypedValue = Json.serialize session)) |> ignore
        let! _ = command.ExecuteNonQueryAsync()
        ()
    }

    member _.LoadAsync(id: string) : Task<Json> = task {
        use command = dataSource.CreateCommand "SELECT data FROM whole_sessions WHERE id = $1"
        command.Parameters.Add(NpgsqlParameter<string>(TypedValue = id)) |> ignore
        let! data = command.ExecuteScalarAsync()
        return Json.parse (string data)
    }

    /// One request's change the usual way: read the session, change it, write the whole JSON back.
    member this.ChangeAsync(id: string, update: Update) : Task = task {
        let! session = this.LoadAsync id
        do! this.SaveAsync(id, Update.apply update session)
    }

let private options = { IdleTimeout = TimeSpan.FromMinutes 20.0; MustExist = true; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }

/// The one-key change of a request: the preferred theme flips.
let private oneKeyChange (i: int) = Update.Set(SessionPath.parse "prefs.theme", Json.String(if i % 2 = 0 then "dark" else "light"))

/// Runs `writers` loops of `perWriter` changes each, writer w on session `ids[w]`; gives commits per second.
let private throughput (writers: int) (perWriter: int) (change: int -> int -> Task) : Task<float> = task {
    let stopwatch = Stopwatch.StartNew()
    let loop (w: int) = task {
        for i in 1..perWriter do
            do! change w i
    }
    let! _ = Task.WhenAll [| for w in 0 .. writers - 1 -> loop w |]
    return float (writers * perWriter) / stopwatch.Elapsed.TotalSeconds
}

let run (args: string list) : int =
    let commits = option "--commits" args |> Option.map int |> Option.defaultValue 2000
    // A real server's durability (fsync on); autovacuum off so that only the commits measured write WAL.
    let connection, server = serverFor args [ "fsync", "on"; "autovacuum", "off"; "max_wal_size", "4GB"; "checkpoint_timeout", "30min" ]
    use _server = server
    use dataSource = PostgresStore.CreateDataSource connection
    use store = new PostgresStore(dataSource, PostgresStoreOptions(TableName = "bench_sessions", SweepInterval = Timeout.InfiniteTimeSpan), null)
    let whole = WholeRowStore dataSource
    (task {
        do! store.EnsureSchemaAsync CancellationToken.None
        do! whole.CreateAsync()
        let session = sixteenKilobyteSession 42
        printfn "Session: %d bytes of compact JSON." (JsonSize.utf8Length session)
        let ids = [| for w in 0..31 -> $"bench-{w:D2}-{Guid.NewGuid():N}" |]
        for id in ids do
            let! _ = store.MoveAsync(null, id, SessionChange(Patch.fold [ Update.Set(SessionPath.root, session) ]), options, CancellationToken.None)
            do! whole.SaveAsync(id, session)
        // What a session takes on disk, tables, TOAST and indexes together, before anything churns.
        let size (relations: string list) = task {
            let sum = String.Join(" + ", relations |> List.map (fun r -> $"pg_total_relation_size('{r}')"))
            use command = dataSource.CreateCommand("SELECT " + sum)
            let! bytes = command.ExecuteScalarAsync()
            return float (unbox<int64> bytes) / float ids.Length
        }
        let! sesameBytes = size [ "sesame.bench_sessions"; "sesame.bench_sessions_nodes" ]
        let! usualBytes = size [ "whole_sessions" ]
        let sesame (w: int) (i: int) : Task = store.CommitAsync(ids[w], SessionChange(Patch.fold [ oneKeyChange i ]), options, CancellationToken.None)
        let usual (w: int) (i: int) : Task = whole.ChangeAsync(ids[w], oneKeyChange i)
        // Warm both paths (plans, caches), then a checkpoint before each measured phase, so both pay the
        // full-page images of the pages they touch first.
        let! _ = throughput 1 50 sesame
        let! _ = throughput 1 50 usual
        let walPerCommit (change: int -> int -> Task) = task {
            do! execute dataSource "CHECKPOINT"
            let! before = walPosition dataSource
            let! _ = throughput 1 commits change
            let! after = walPosition dataSource
            return float (after - before) / float commits
        }
        let! sesameWal = walPerCommit sesame
        let! usualWal = walPerCommit usual
        let! sesameOne = throughput 1 commits sesame
        let! usualOne = throughput 1 commits usual
        let perWriter = max 10 (commits / 32)
        let! sesameMany = throughput 32 perWriter sesame
        let! usualMany = throughput 32 perWriter usual
        let! check = store.LoadAsync(ids[0], options.IdleTimeout, CancellationToken.None)
        // Whatever the theme ended as, nothing else changed.
        if SessionPath.set (SessionPath.parse "prefs.theme") (Json.String "light") check.Data <> session then
            failwith "The benchmark session changed beyond its one key: the change is not the one measured."
        printfn ""
        printfn "One-key change in a 16 KB session (%d commits per phase, fsync on):" commits
        printfn "| | Sesame (one statement, node rows) | usual (read, rewrite the whole row) | ratio |"
        printfn "|---|---:|---:|---:|"
        printfn "| WAL bytes per commit | %.0f | %.0f | %.3f |" sesameWal usualWal (sesameWal / usualWal)
        printfn "| bytes stored per session (tables, TOAST, indexes) | %.0f | %.0f | %.2f |" sesameBytes usualBytes (sesameBytes / usualBytes)
        printfn "| commits/s, 1 writer | %.0f | %.0f | %.2f |" sesameOne usualOne (sesameOne / usualOne)
        printfn "| commits/s, 32 writers (own sessions) | %.0f | %.0f | %.2f |" sesameMany usualMany (sesameMany / usualMany)
    })
        .GetAwaiter()
        .GetResult()
    0

/// Size, dead tuples and HOT updates of the store's tables.
let private tableReport (dataSource: NpgsqlDataSource) (table: string) = task {
    use command =
        dataSource.CreateCommand
            $"""SELECT c.relname, pg_table_size(c.oid), pg_indexes_size(c.oid), s.n_live_tup, s.n_dead_tup, s.n_tup_upd, s.n_tup_hot_upd, s.autovacuum_count
                    FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
                    WHERE c.relname IN ('{table}', '{table}_nodes') ORDER BY c.relname"""
    use! reader = command.ExecuteReaderAsync()
    let rows = ResizeArray<string>()
    let mutable more = true
    while more do
        let! read = reader.ReadAsync()
        if read then
            let mib (b: int64) = float b / 1048576.0
            let updates = reader.GetInt64 5
            let hot = reader.GetInt64 6
            rows.Add(
                sprintf
                    "| %s | %.1f | %.1f | %d | %d | %d | %s | %d |"
                    (reader.GetString 0)
                    (mib (reader.GetInt64 1))
                    (mib (reader.GetInt64 2))
                    (reader.GetInt64 3)
                    (reader.GetInt64 4)
                    updates
                    (if updates = 0L then "-" else sprintf "%.0f%%" (100.0 * float hot / float updates))
                    (reader.GetInt64 7)
            )
        else
            more <- false
    return List.ofSeq rows
}

let churn (args: string list) : int =
    let sessions = option "--sessions" args |> Option.map int |> Option.defaultValue 1_000_000
    let operations = option "--operations" args |> Option.map int |> Option.defaultValue 200_000
    // Autovacuum as a server runs it by default (the tables ask for it at 2% dead rows), waking a little more
    // often so that a short run sees it work.
    let connection, server = serverFor args [ "fsync", "off"; "autovacuum_naptime", "15s"; "max_wal_size", "4GB"; "shared_buffers", "512MB" ]
    use _server = server
    use dataSource = PostgresStore.CreateDataSource connection
    let table = "churn_sessions"
    let storeOptions = PostgresStoreOptions(TableName = table, SweepInterval = TimeSpan.FromSeconds 5.0)
    use store = new PostgresStore(dataSource, storeOptions, null)
    (task {
        do! store.EnsureSchemaAsync CancellationToken.None
        let random = Random 11
        let small i = Json.object [ "cart", Json.array [ Json.int64 (int64 i) ]; "visits", Json.int64 1L; "lang", Json.String "en" ]
        let ids = Array.init sessions (fun i -> $"churn-{i:D8}-{random.Next():X8}")
        let stopwatch = Stopwatch.StartNew()
        // One session made by the store, then copied row for row in SQL: a million sessions through the store
        // would take a quarter of an hour here, and the churn is what is measured.
        let! _ =
            store.MoveAsync(
                null,
                ids[0],
                SessionChange(Patch.fold [ Update.Set(SessionPath.root, small 0) ]),
                { options with MustExist = false; IdleTimeout = TimeSpan.FromHours 2.0 },
                CancellationToken.None
            )
        use copy =
            dataSource.CreateCommand
                $"""WITH template AS (SELECT * FROM sesame.{table} WHERE id = $1),
                    made AS (
                        INSERT INTO sesame.{table} (id, user_id, size, last_seen, expires_at, sweep_at)
                        SELECT ids.id, NULL, t.size, t.last_seen, t.expires_at, t.expires_at FROM template t, unnest($2::text[]) AS ids(id)
                        RETURNING sid)
                    INSERT INTO sesame.{table}_nodes (sid, path, value, bytes)
                    SELECT m.sid, n.path, n.value, n.bytes FROM made m, template t JOIN sesame.{table}_nodes n ON n.sid = t.sid"""
        copy.CommandTimeout <- 3600
        copy.Parameters.Add(NpgsqlParameter<string>(TypedValue = ids[0])) |> ignore
        copy.Parameters.Add(NpgsqlParameter<string[]>(TypedValue = ids[1..])) |> ignore
        let! _ = copy.ExecuteNonQueryAsync()
        printfn "Filled %d sessions in %.0f s." sessions stopwatch.Elapsed.TotalSeconds
        use vacuum = dataSource.CreateCommand "VACUUM ANALYZE"
        vacuum.CommandTimeout <- 3600
        let! _ = vacuum.ExecuteNonQueryAsync()
        let! before = tableReport dataSource table
        // The churn: mostly loads and one-key commits, some sign-ins (moves), deletes and sessions that expire.
        let stopwatch = Stopwatch.StartNew()
        let live = Collections.Concurrent.ConcurrentDictionary<int, string>()
        for i in 0 .. sessions - 1 do
            live[i] <- ids[i]
        let work (w: int) = task {
            let random = Random(100 + w)
            for _ in 1 .. operations / 16 do
                let slot = random.Next sessions
                match live.TryGetValue slot with
                | true, id ->
                    match random.Next 100 with
                    | r when r < 50 ->
                        let! _ = store.LoadAsync(id, TimeSpan.FromHours 2.0, CancellationToken.None)
                        ()
                    | r when r < 85 ->
                        let! _ =
                            store.CommitAsync(
                                id,
                                SessionChange(Patch.fold [ Update.Increment(SessionPath.parse "visits", JsonNumber.OfInt64 1L) ]),
                                { options with IdleTimeout = TimeSpan.FromHours 2.0 },
                                CancellationToken.None
                            )
                        ()
                    | r when r < 90 ->
                        let fresh = $"churn-{slot:D8}-{random.Next():X8}"
                        let signIn =
                            SessionChange(Patch.empty, Patch.fold [ Update.Set(SessionPath.ofKeys [ SessionMeta.User ], Json.String $"user-{slot % 50000}") ])
                        let! moved =
                            store.MoveAsync(
                                id,
                                fresh,
                                signIn,
                                { options with IdleTimeout = TimeSpan.FromHours 2.0; UserLimit = { MaxSessions = 5; Policy = UserLimitPolicy.EndLeastRecent } },
                                CancellationToken.None
                            )
                        if moved = CommitResult.Committed then live[slot] <- fresh
                    | r when r < 95 ->
                        let! _ = store.DeleteAsync(id, CancellationToken.None)
                        let fresh = $"churn-{slot:D8}-{random.Next():X8}"
                        let! _ =
                            store.MoveAsync(
                                null,
                                fresh,
                                SessionChange(Patch.fold [ Update.Set(SessionPath.root, small slot) ]),
                                { options with MustExist = false; IdleTimeout = TimeSpan.FromHours 2.0 },
                                CancellationToken.None
                            )
                        live[slot] <- fresh
                    | _ ->
                        // A session that expires within seconds: the sweeper ends it; a new one takes its place.
                        let! _ =
                            store.CommitAsync(
                                id,
                                SessionChange(Patch.fold [ Update.Set(SessionPath.parse "leaving", Json.Bool true) ]),
                                { options with IdleTimeout = TimeSpan.FromSeconds 2.0 },
                                CancellationToken.None
                            )
                        let fresh = $"churn-{slot:D8}-{random.Next():X8}"
                        let! _ =
                            store.MoveAsync(
                                null,
                                fresh,
                                SessionChange(Patch.fold [ Update.Set(SessionPath.root, small slot) ]),
                                { options with MustExist = false; IdleTimeout = TimeSpan.FromHours 2.0 },
                                CancellationToken.None
                            )
                        live[slot] <- fresh
                | _ -> ()
        }
        let! _ = Task.WhenAll [| for w in 0..15 -> work w |]
        let elapsed = stopwatch.Elapsed.TotalSeconds
        printfn "Churn: %d operations in %.0f s (%.0f/s, 16 workers)." operations elapsed (float operations / elapsed)
        // Let the sweeper and autovacuum catch up, as they would between bursts.
        do! Task.Delay(TimeSpan.FromSeconds 90.0)
        let! after = tableReport dataSource table
        printfn ""
        printfn "| table | table MiB | index MiB | live tuples | dead tuples | updates | HOT | autovacuums |"
        printfn "|---|---:|---:|---:|---:|---:|---:|---:|"
        for row in before do
            printfn "%s (before)" row
        for row in after do
            printfn "%s (after)" row
    })
        .GetAwaiter()
        .GetResult()
    0
