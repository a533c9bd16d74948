/// What bounding the facts costs a commit that adds flash, when the facts are large: `facts-bound [items] [rounds]`
/// stores one session whose facts hold a flashed array of that many numbers (300,000 by default: 600 KB of JSON, under
/// the default 1 MiB), then times, in turn, its load, a commit of the data tree alone and a commit that flashes one
/// more small value (which measures the facts: every node of them), on a redis-server and a PostgreSQL of its own.
/// Redis: Redis's own time for the operation's commands (`SLOWLOG`, every command logged), which every other client
/// of that Redis waits behind. PostgreSQL: the operation's time, as the app waits for it. Medians over the rounds.
module Sesame.Benchmarks.FactsBoundCost

open System
open System.Diagnostics
open System.Threading
open Npgsql
open Sesame
open Sesame.Postgres
open Sesame.Postgres.Tests.PostgresServer
open Sesame.Redis
open StackExchange.Redis
open Sesame.Benchmarks.RedisBenchmarks

let private options = { IdleTimeout = TimeSpan.FromHours 1.0; MustExist = true; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }

let private flashAt (name: string) (value: Json) = SessionChange(Patch.empty, Patch.fold [ Update.set (SessionPath.ofKeys [ SessionMeta.Flash; name ]) value ])

let private median (values: float list) = values |> List.sort |> List.item (values.Length / 2)

/// The three operations, each `rounds` times in turn, timed by `time`: medians of the load, the data commit, the flash commit.
let private measure (store: SessionStore) (items: int) (rounds: int) (time: (unit -> unit) -> float) =
    let id = SessionId.create ()
    let wait (task: Threading.Tasks.Task<'t>) = task.GetAwaiter().GetResult() |> ignore
    let start = SessionChange(Patch.fold [ Update.set (SessionPath.ofKeys [ "n" ]) (Json.int64 0L) ])
    wait (store.CommitAsync(id, start, { options with MustExist = false }, CancellationToken.None))
    wait (store.CommitAsync(id, flashAt "big" (Json.array [ for _ in 1..items -> Json.int64 0L ]), options, CancellationToken.None))
    let loads, commits, flashes = ResizeArray(), ResizeArray(), ResizeArray()
    for round in 1..rounds do
        loads.Add(time (fun () -> wait (store.LoadAsync(id, options.IdleTimeout, CancellationToken.None))))
        let increment = SessionChange(Patch.fold [ Update.Increment(SessionPath.ofKeys [ "n" ], JsonNumber.OfInt64 1L) ])
        commits.Add(time (fun () -> wait (store.CommitAsync(id, increment, options, CancellationToken.None))))
        flashes.Add(time (fun () -> wait (store.CommitAsync(id, flashAt $"k{round}" (Json.string "x"), options, CancellationToken.None))))
    struct (median (List.ofSeq loads), median (List.ofSeq commits), median (List.ofSeq flashes))

/// `facts-bound [items] [rounds]`.
let run (args: string list) =
    let items, rounds =
        match args with
        | [ items; rounds ] -> int items, int rounds
        | [ items ] -> int items, 15
        | _ -> 300_000, 15
    do
        use redis = new LocalRedis([ "--slowlog-log-slower-than"; "0"; "--slowlog-max-len"; "100000" ])
        let settings = ConfigurationOptions.Parse redis.EndPoint
        settings.AllowAdmin <- true
        use connection = ConnectionMultiplexer.Connect settings
        let server = connection.GetServer redis.EndPoint
        use store = new RedisStore(connection, RedisStoreOptions(SweepInterval = TimeSpan.Zero), null)
        let redisTime (operation: unit -> unit) =
            server.SlowlogReset()
            operation ()
            server.SlowlogGet 100000 |> Array.sumBy (fun entry -> entry.Duration.TotalMilliseconds)
        let struct (load, commit, flash) = measure store items rounds redisTime
        printfn
            "Redis %s, facts of %d items: Redis's time a load %.2f ms, a data commit %.2f ms, a flash commit %.2f ms"
            (string server.Version)
            items
            load
            commit
            flash
    do
        use postgres = new PostgresServer()
        use dataSource = NpgsqlDataSource.Create(postgres.ConnectionString())
        use store = new PostgresStore(dataSource, PostgresStoreOptions(TableName = "facts_bound", SweepInterval = Timeout.InfiniteTimeSpan), null)
        let elapsed (operation: unit -> unit) =
            let clock = Stopwatch.StartNew()
            operation ()
            clock.Elapsed.TotalMilliseconds
        let struct (load, commit, flash) = measure store items rounds elapsed
        printfn "PostgreSQL, facts of %d items: a load %.2f ms, a data commit %.2f ms, a flash commit %.2f ms" items load commit flash
