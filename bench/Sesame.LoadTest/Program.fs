/// Sesame's load test, in one run: no session, ASP.NET Core Session, Sesame on every store and each
/// store's floor (its work without Sesame, Floors.fs), driven by wrk; the lost-update check; the memory
/// store's heap use. Writes docs/performance.md and docs/performance.svg and prints the table.
///
///   dotnet run -c Release --project bench/Sesame.LoadTest [-- --duration 3 --warmup 3 --rounds 5 --threads 2 --connections 32 --only NAME
///     --data-protection default|aes-gcm --ticket-format sealed|protected]
module Sesame.LoadTest.Program

open System
open System.Globalization
open System.IO
open System.Threading
open Sesame.LoadTest.Figures

/// The rows, in table order: the name, what the route does, the route, and where wrk's shared
/// session cookie comes from (a first request to that route), or None for no cookie.
let private scenarios =
    let from (route: string) = Some route
    [
        "plain", "no session at all", "/plain/", None
        "aspnet counter", "ASP.NET Core Session: GetInt32/SetInt32 counter, shared cookie", "/aspnet/counter", from "/aspnet/counter"
        "aspnet nested", "ASP.NET Core Session: JSON GetString/SetString, double foo.bar.baz, shared cookie", "/aspnet/nested", from "/aspnet/nested"
        "aspnet counter, new session", "ASP.NET Core Session: counter, no cookie (a new session per request)", "/aspnet/counter", None
        "memory counter", "Sesame memory store: Session.increment, shared cookie", "/memory/counter", from "/memory/counter"
        "memory nested", "Sesame memory store: node-sesame's nested doubling, shared cookie", "/memory/nested", from "/memory/nested"
        "memory read", "Sesame memory store: read the counter, change nothing, shared cookie", "/memory/read", from "/memory/counter"
        "memory untouched", "Sesame middleware, a handler that ignores the session, shared cookie", "/memory/untouched", from "/memory/counter"
        "memory counter, new session", "Sesame memory store: counter, no cookie (a new session per request)", "/memory/counter", None
        "file counter", "Sesame file store: counter, shared cookie", "/file/counter", from "/file/counter"
        "file floor",
        "No Sesame, the file store's work: per request the store's counter record (the same 101 bytes) appended to a file of its own with group-committed fsync (concurrent requests share one), the counter in a ConcurrentDictionary; shared cookie",
        "/floor/file/counter",
        from "/floor/file/counter"
        "file counter, new session", "Sesame file store: counter, no cookie (a new session per request)", "/file/counter", None
        "file floor, new session",
        "No Sesame, the file store's work: per request a new random id in a plain cookie (Sesame's is sealed: a MAC under a key Data Protection protects) and the store's new-session record (the same 134 bytes), group-committed fsync",
        "/floor/file/counter",
        None
        "redis counter", "Sesame Redis store: counter, shared cookie", "/redis/counter", from "/redis/counter"
        "redis floor",
        "No Sesame, the Redis store's round trips: per request 2 EVALSHA (load: HGETALL + PEXPIRE; commit: HINCRBY + PEXPIRE) on one ConnectionMultiplexer with the store's options; shared cookie",
        "/floor/redis/counter",
        from "/floor/redis/counter"
        "redis counter, new session", "Sesame Redis store: counter, no cookie (a new session per request)", "/redis/counter", None
        "redis floor, new session",
        "No Sesame, the Redis store's round trips: per request 1 EVALSHA (the commit script, creating the hash) and a new random id in a plain cookie (Sesame's is sealed: a MAC under a key Data Protection protects)",
        "/floor/redis/counter",
        None
        "postgres counter", "Sesame PostgreSQL store: counter, shared cookie", "/postgres/counter", from "/postgres/counter"
        "postgres counter, new session", "Sesame PostgreSQL store: counter, no cookie (a new session per request)", "/postgres/counter", None
    ]

/// Each store row and its floor (Floors.fs): the same store work without Sesame. A floor row comes right after its
/// store row in every round.
let private floors = [
    "file counter", "file floor"
    "file counter, new session", "file floor, new session"
    "redis counter", "redis floor"
    "redis counter, new session", "redis floor, new session"
]

let private runAll (args: string[]) =
    // --only TEXT keeps the rows whose name contains TEXT (and plain, the reference): a quick check
    // that prints its table and skips the lost-update check, the memory measurement and the docs.
    let scenarios, partial =
        match option args "--only" null with
        | null -> scenarios, false
        | only -> scenarios |> List.filter (fun (name, _, _, _) -> name = "plain" || name.Contains only), true
    let load = {
        Wrk.Threads = int (option args "--threads" "2")
        Wrk.Connections = int (option args "--connections" "32")
        Wrk.Duration = TimeSpan.FromSeconds(float (int (option args "--duration" "3")))
        Wrk.WarmUp = TimeSpan.FromSeconds(float (int (option args "--warmup" "3")))
    }
    let rounds = int (option args "--rounds" "5")
    // --data-protection aes-gcm: the app's Data Protection protects cookies with AES-256-GCM (a quick check, like --only).
    let dataProtection = option args "--data-protection" "default"
    if dataProtection <> "default" && dataProtection <> "aes-gcm" then failwith $"--data-protection {dataProtection}: say default or aes-gcm."
    Environment.SetEnvironmentVariable(App.DataProtectionVariable, dataProtection)
    // --ticket-format protected: Sesame's tickets protected by Data Protection each (the format before sealed tickets).
    let ticketFormat = option args "--ticket-format" "sealed"
    if ticketFormat <> "sealed" && ticketFormat <> "protected" then failwith $"--ticket-format {ticketFormat}: say sealed or protected."
    Environment.SetEnvironmentVariable(App.TicketFormatVariable, ticketFormat)
    let partial = partial || dataProtection <> "default" || ticketFormat <> "sealed"
    let root = Machine.repositoryRoot ()
    Machine.ensureTool "wrk" "wrk"
    Machine.ensureTool "redis-server" "redis-server"
    let machine = Machine.describe ()
    printfn "Machine: %d cores, %s, %s; %s" machine.Cores machine.Cpu machine.Memory machine.Runtime

    let redisPort, redis = Machine.startRedis ()
    use _redis = redis
    // A throwaway PostgreSQL with its defaults (fsync on: every commit durable, as the file store's are).
    use postgres = new Sesame.Postgres.Tests.PostgresServer.PostgresServer([ "fsync", "on" ])
    let fileDir = Path.Combine(Path.GetTempPath(), $"sesame-loadtest-{Environment.ProcessId}")
    Directory.CreateDirectory fileDir |> ignore
    // What bounds the file floor: one fsync per batch of concurrent commits. Measured on the disk the files are on,
    // with the app idle, before and after the rows: appends of one counter record, each flushed on its own.
    let measureFsync (moment: string) =
        let latencies = Floors.fsyncLatencies fileDir 200 101
        let fsync = {
            Report.When = moment
            Report.MedianMs = latencies[latencies.Length / 2]
            Report.P99Ms = latencies[latencies.Length * 99 / 100]
            Report.Count = latencies.Length
        }
        printfn "fsync of a 101-byte append on %s, %s: median %.2f ms, p99 %.2f ms (%d fsyncs)" fileDir moment fsync.MedianMs fsync.P99Ms fsync.Count
        fsync
    let fsyncBefore = measureFsync "before the rows"
    let port = Machine.freePort ()
    let baseUrl = $"http://127.0.0.1:{port}"
    let sessionFile = Path.Combine(fileDir, "sessions.db")
    let rows, comparisons, lostUpdates =
        let exe, exeArgs = Machine.selfCommand $"serve {port} {redisPort} \"{sessionFile}\" {postgres.Port}"
        use app = new Machine.Child(exe, exeArgs, "app", true)
        app.WaitReady(TimeSpan.FromSeconds 60.0)
        printfn
            "App on %s, redis-server on port %d; %d rows in %d rounds of %ds, each row paired with a plain run; %ds warm-up"
            baseUrl
            redisPort
            scenarios.Length
            rounds
            (int load.Duration.TotalSeconds)
            (int load.WarmUp.TotalSeconds)
        let cpu () = Machine.cpuTime app.Process.Id
        let redisCpu () = Machine.cpuTime redis.Process.Id
        let show (name: string) (m: Wrk.Measured) =
            printfn
                "  %-30s %10.0f req/s  p99 %7.2f ms  app CPU %5.1f µs/req  redis CPU %5.1f µs/req  errors %d"
                name
                m.RequestsPerSecond
                m.P99Ms
                m.AppCpuUs
                m.RedisCpuUs
                m.Errors
        // The file floor's records, fsyncs and µs spent in them so far: how many requests share an fsync, and how
        // long an fsync takes under the row's load.
        let fileFloorCounts () =
            let text = LostUpdates.text(baseUrl + "/floor/file/stats").GetAwaiter().GetResult()
            match text.Split(' ') |> Array.map int64 with
            | [| records; batches; fsyncUs |] -> records, batches, fsyncUs
            | _ -> failwith $"/floor/file/stats answered '{text}'."
        let plainName, _, plainRoute, _ = List.head scenarios
        let others = List.tail scenarios
        // Each row runs right after a run of plain, and its ratio is taken to that run: the load other
        // processes put on the machine drifts, and a pair shares it. Rounds go over every row in turn and
        // each row reports the median of its pairs' ratios, and its fastest run. Only the first round warms up.
        Wrk.measure load cpu redisCpu (baseUrl + plainRoute) None |> ignore
        let pairs = [
            for round in 1..rounds ->
                printfn "Round %d of %d:" round rounds
                [
                    for name, _, route, cookieFrom in others do
                        let plain = Wrk.measure { load with WarmUp = TimeSpan.Zero } cpu redisCpu (baseUrl + plainRoute) None
                        show plainName plain
                        // The shared cookie comes from a first request, as a browser's would, made just before
                        // the row runs: a new-session row fills the memory store to its bound, which rightly
                        // evicts the sessions left idle meanwhile, such as an earlier row's.
                        let cookie = cookieFrom |> Option.map (fun first -> (LostUpdates.startSession (baseUrl + first)).GetAwaiter().GetResult())
                        let fileFloor = route.StartsWith "/floor/file/"
                        let before = if fileFloor then fileFloorCounts () else (0L, 0L, 0L)
                        let measured = Wrk.measure (if round = 1 then load else { load with WarmUp = TimeSpan.Zero }) cpu redisCpu (baseUrl + route) cookie
                        show name measured
                        let perFsync =
                            if fileFloor then
                                let records0, batches0, fsyncUs0 = before
                                let records, batches, fsyncUs = fileFloorCounts ()
                                let fsyncs = float (max 1L (batches - batches0))
                                let perFsync = float (records - records0) / fsyncs, float (fsyncUs - fsyncUs0) / fsyncs / 1000.0
                                printfn "  %-30s %10.1f requests per fsync, %.2f ms per fsync" "" (fst perFsync) (snd perFsync)
                                Some perFsync
                            else
                                None
                        plain, measured, perFsync
                ]
        ]
        let best (runs: Wrk.Measured list) =
            // The fastest run, with the errors of every run.
            { List.maxBy (fun (m: Wrk.Measured) -> m.RequestsPerSecond) runs with Errors = runs |> List.sumBy (fun m -> m.Errors) }
        let plainRow =
            let _, description, _, _ = List.head scenarios
            {
                Report.Name = plainName
                Report.Description = description
                Report.Measured =
                    best [
                        for round in pairs do
                            for plain, _, _ in round -> plain
                    ]
                Report.Ratio = 1.0
            }
        let rows =
            plainRow
            :: [
                for i, (name, description, _, _) in List.indexed others ->
                    let runs = pairs |> List.map (fun round -> round[i])
                    {
                        Report.Name = name
                        Report.Description = description
                        Report.Measured = best [ for _, measured, _ in runs -> measured ]
                        Report.Ratio = median [ for plain, measured, _ in runs -> measured.RequestsPerSecond / plain.RequestsPerSecond ]
                    }
            ]
        // Each store row over its floor, round by round (the floor runs right after the row), and the median.
        let comparisons = [
            let indexOf name = others |> List.tryFindIndex (fun (n, _, _, _) -> n = name)
            for storeName, floorName in floors do
                match indexOf storeName, indexOf floorName with
                | Some i, Some j ->
                    let row name = rows |> List.find (fun (r: Report.Row) -> r.Name = name)
                    {
                        Report.Store = row storeName
                        Report.Floor = row floorName
                        Report.OverFloor =
                            median [
                                for round in pairs ->
                                    let _, store, _ = round[i]
                                    let _, floor, _ = round[j]
                                    store.RequestsPerSecond / floor.RequestsPerSecond
                            ]
                        Report.Fsyncs =
                            match [ for round in pairs -> let _, _, perFsync = round[j] in perFsync ] |> List.choose id with
                            | [] -> None
                            | counts -> Some(median (List.map fst counts), median (List.map snd counts))
                    }
                | _ -> ()
        ]
        let lostUpdates =
            if partial then
                []
            else
                printfn "Lost-update check (100 concurrent requests on one session; without, then with 10 ms of work each):"
                [
                    for name, branch in
                        [
                            "ASP.NET Core Session", "aspnet"
                            "Sesame, memory store", "memory"
                            "Sesame, file store", "file"
                            "Sesame, Redis store", "redis"
                            "Sesame, PostgreSQL store", "postgres"
                        ] do
                        let instant = (LostUpdates.check $"{baseUrl}/{branch}" 100 0).GetAwaiter().GetResult()
                        let slow = (LostUpdates.check $"{baseUrl}/{branch}" 100 10).GetAwaiter().GetResult()
                        printfn
                            "  %-22s increments kept %3d and %3d of 100, different keys kept %3d and %3d of 100"
                            name
                            instant.Increments
                            slow.Increments
                            instant.Keys
                            slow.Keys
                        name, instant, slow
                ]
        rows, comparisons, lostUpdates
    let fsyncAfter = measureFsync "after the rows"
    Directory.Delete(fileDir, true)
    Wrk.cleanUp ()

    let floorText = Report.floorText machine load [ fsyncBefore; fsyncAfter ] rows comparisons
    if partial then
        printfn ""
        printfn "%s" (Report.table rows)
        printfn "%s" floorText
    else
        printfn "Memory store heap use (a process of its own):"
        let memory =
            let exe, exeArgs = Machine.selfCommand "memory"
            let code, output = Machine.capture exe exeArgs
            match output.Split('\n') |> Array.tryFind (fun l -> l.StartsWith "MEMORY ") with
            | Some line when code = 0 -> Some(MemoryUse.parse line)
            | _ ->
                printfn "  the measurement failed:\n%s" output
                None
        memory |> Option.iter (Report.memoryText >> printfn "%s")
        // The options this run was given, so that the document's command reproduces it (its rounds above all).
        let command =
            let given = if args.Length = 0 then "" else " -- " + String.Join(" ", args)
            "dotnet run -c Release --project bench/Sesame.LoadTest" + given
        let docs = Path.Combine(root, "docs")
        Directory.CreateDirectory docs |> ignore
        let performance = Path.Combine(docs, "performance.md")
        let previous = if File.Exists performance then File.ReadAllText performance else ""
        File.WriteAllText(performance, Report.keepSections previous (Report.markdown machine load rounds command rows floorText lostUpdates memory))
        let subtitle = $"{machine.Cores} cores, {machine.Cpu}; {machine.Runtime}; wrk -t{load.Threads} -c{load.Connections} -d{int load.Duration.TotalSeconds}s"
        File.WriteAllText(Path.Combine(docs, "performance.svg"), Report.svg rows subtitle)
        printfn ""
        printfn "%s" (Report.table rows)
        printfn "%s" floorText
        printfn "%s" (Report.lostUpdateTable lostUpdates)
        printfn "Wrote %s and performance.svg" (Path.Combine(docs, "performance.md"))
    let failedRows = rows |> List.filter (fun r -> r.Measured.Errors > 0L)
    if failedRows.IsEmpty then 0 else 1

[<EntryPoint>]
let main args =
    CultureInfo.DefaultThreadCurrentCulture <- CultureInfo.InvariantCulture
    Thread.CurrentThread.CurrentCulture <- CultureInfo.InvariantCulture
    match List.ofArray args with
    | "serve" :: port :: redisPort :: filePath :: postgresPort :: _ ->
        App.serve (int port) (int redisPort) filePath (int postgresPort)
        0
    | "memory" :: _ ->
        printfn "%s" (MemoryUse.format (MemoryUse.measure ()))
        0
    | _ -> runAll args
