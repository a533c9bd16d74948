/// How fast the file store replays a file on open, and the memory it then holds.
/// `replay generate DIR` writes three files: `small.sessions` (723,000 new sessions, each a counter's increment and its
/// creation fact, as a flood of new visitors leaves them: the records the sample writes, each new session whole, as the
/// store records a new session), `small-changes.sessions` (the same sessions as the store recorded them before, each as
/// its change) and `kb.sessions` (100,000 sessions of about 1 KB, each created and then changed three times).
/// `replay open FILE [rounds]` opens a file (in a process of its own), rounds times, and prints the replay time,
/// sessions/s, the managed heap the store holds against the sessions' live JSON, and what a listing page of 100 costs.
/// `replay profile FILE` times replay's parts, with what each allocates and how the ring's arrays came.
module Sesame.Benchmarks.ReplayBenchmarks

open System
open System.Diagnostics
open System.Threading
open Sesame

let private commitOptions = { IdleTimeout = TimeSpan.FromDays 30.0; MustExist = false; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }

/// A session id as long as Sesame's (32 characters), distinct per number.
let private sessionId (prefix: char) (n: int) = $"{prefix}{n:D31}"

let private path (text: string) = SessionPath.parse text

/// About 1 KB of JSON: a user, a six-item cart, preferences, a history; the values depend on n.
let private kbSession (n: int) =
    Json.object [
        "user", Json.object [ "name", Json.string $"user {n}"; "email", Json.string $"user{n}@example.com"; "id", Json.int64 (int64 n) ]
        "cart",
        Json.object [
            "items",
            Json.array [
                for i in 1..6 ->
                    Json.object [
                        "sku", Json.string $"SKU-{n % 9973}-{i}"
                        "qty", Json.int64 (int64 (1 + (n + i) % 5))
                        "price", Json.decimal (decimal ((n + i) % 10000) / 100M)
                    ]
            ]
            "currency", Json.string "EUR"
        ]
        "prefs", Json.object [ "theme", Json.string "dark"; "language", Json.string "en-GB"; "newsletter", Json.Bool(n % 2 = 0) ]
        "history", Json.array [ for i in 1..16 -> Json.string $"/products/{(n * 7 + i) % 100000}/reviews?page={i}" ]
    ]

/// Writes records straight into a new file, as the store frames them.
let private writeFile (file: string) (records: seq<byte[]>) =
    if IO.File.Exists file then IO.File.Delete file
    use handle = IO.File.OpenHandle(file, IO.FileMode.CreateNew, IO.FileAccess.ReadWrite)
    IO.RandomAccess.Write(handle, ReadOnlySpan(FileLog.fileHeader ()), 0L)
    let writer = RecordWriter(handle, int64 FileLog.FileHeaderLength, int64 FileLog.FileHeaderLength, false)
    for payload in records do
        writer.Append payload
    writer.Flush()
    IO.RandomAccess.FlushToDisk handle

let private creation (t: int64) = Patch.fold [ Update.set (SessionPath.ofKeys [ SessionMeta.Created ]) (Json.int64 ((t - DateTime.UnixEpoch.Ticks) / 10_000L)) ]

let private record (kind: byte) (id: string) (t: int64) (change: SessionChange) =
    FileLog.payload kind (t + TimeSpan.FromDays(30.0).Ticks) t id (FileLog.changeBody change)

/// A new session's record as the store writes it: the value the change makes of the empty session, whole.
let private created (id: string) (t: int64) (change: SessionChange) =
    let value = SessionText.Of(change.ApplyTo null)
    FileLog.snapshotPayload FileLog.KindCreate (t + TimeSpan.FromDays(30.0).Ticks) t id value.Data value.Meta

/// Writes small.sessions and kb.sessions into the directory.
let generate (directory: string) =
    IO.Directory.CreateDirectory directory |> ignore
    let t0 = DateTime.UtcNow.Ticks
    // What the sample's counter commits on a first visit: an increment, and the creation fact.
    let firstVisit (t: int64) = SessionChange(Patch.fold [ Update.increment (path "times") 1m ], creation t)
    writeFile
        (IO.Path.Combine(directory, "small.sessions"))
        (seq {
            for n in 0..722_999 do
                let t = t0 + int64 n * 1000L
                yield created (sessionId 's' n) t (firstVisit t)
        })
    writeFile
        (IO.Path.Combine(directory, "small-changes.sessions"))
        (seq {
            for n in 0..722_999 do
                let t = t0 + int64 n * 1000L
                yield record FileLog.KindCreate (sessionId 's' n) t (firstVisit t)
        })
    let kbs = 100_000
    writeFile
        (IO.Path.Combine(directory, "kb.sessions"))
        (seq {
            for n in 0 .. kbs - 1 do
                let t = t0 + int64 n * 1000L
                yield created (sessionId 'k' n) t (SessionChange(Patch.fold [ Update.set SessionPath.root (kbSession n) ], creation t))
            // Three rounds of changes, interleaved across sessions as requests are.
            for round in 1..3 do
                for n in 0 .. kbs - 1 do
                    let t = t0 + int64 (round * kbs + n) * 1000L
                    let change =
                        match round with
                        | 1 -> Patch.fold [ Update.increment (path "cart.items[0].qty") 1M ]
                        | 2 -> Patch.fold [ Update.set (path "prefs.theme") (Json.string "light") ]
                        | _ -> Patch.fold [ Update.append (path "history") (Json.string $"/checkout/{n}") ]
                    yield record FileLog.KindPatch (sessionId 'k' n) t (SessionChange change)
        })
    for name in [ "small.sessions"; "small-changes.sessions"; "kb.sessions" ] do
        printfn "%s: %d bytes" name (IO.FileInfo(IO.Path.Combine(directory, name))).Length

/// The live JSON (tree and facts) of every session the store holds, through the public listing.
let private liveJson (store: FileStore) =
    let sessions = store :> SessionStore
    let mutable after: string = null
    let mutable total = 0L
    let mutable count = 0
    let mutable more = true
    while more do
        let page = sessions.ListAsync({ SessionQuery.All 100_000 with After = after }, CancellationToken.None).Result
        for summary in page.Sessions do
            total <- total + summary.SizeBytes + JsonSize.utf8Length summary.Meta
            count <- count + 1
        after <- page.Next
        more <- not (isNull after)
    struct (count, total)

/// Opens a copy of the file (replay may cut or compact it), rounds times, and prints what each open took and held.
let openFile (file: string) (rounds: int) =
    let options = FileStoreOptions(MaxSessions = 10_000_000, MaxTotalBytes = Int64.MaxValue / 4L, CompactionMinBytes = Int64.MaxValue)
    for round in 1..rounds do
        let copy = file + ".open"
        IO.File.Copy(file, copy, true)
        // Flushed now, so that the store's own flush on open does not write the copy out inside the measured time.
        (use handle = IO.File.OpenHandle(copy, IO.FileMode.Open, IO.FileAccess.ReadWrite)
         IO.RandomAccess.FlushToDisk handle)
        let before = GC.GetTotalMemory true
        let gcs = GC.CollectionCount 0, GC.CollectionCount 1, GC.CollectionCount 2
        let pause = GC.GetTotalPauseDuration()
        let allocated = GC.GetTotalAllocatedBytes true
        let cpu = Process.GetCurrentProcess().TotalProcessorTime
        let stopwatch = Stopwatch.StartNew()
        let store = FileStore.Open(copy, options)
        let elapsed = stopwatch.Elapsed
        let cpuDuring = Process.GetCurrentProcess().TotalProcessorTime - cpu
        let allocatedDuring = GC.GetTotalAllocatedBytes true - allocated
        let pauseDuring = GC.GetTotalPauseDuration() - pause
        // Counted now: the listing below collects too.
        let g0, g1, g2 = gcs
        let gen0, gen1, gen2 = GC.CollectionCount 0 - g0, GC.CollectionCount 1 - g1, GC.CollectionCount 2 - g2
        let held = GC.GetTotalMemory true - before
        let struct (count, json) = liveJson store
        printfn
            "round %d: %s: %d sessions in %.0f ms = %.0f sessions/s (CPU %.0f ms); GC pauses %.0f ms (gen0 %d, gen1 %d, gen2 %d); allocated %.1f MiB; held %.1f MiB for %.1f MiB of live JSON = %.2fx (%.0f B/session)"
            round
            (IO.Path.GetFileName file)
            count
            elapsed.TotalMilliseconds
            (float count / elapsed.TotalSeconds)
            cpuDuring.TotalMilliseconds
            pauseDuring.TotalMilliseconds
            gen0
            gen1
            gen2
            (float allocatedDuring / 1048576.0)
            (float held / 1048576.0)
            (float json / 1048576.0)
            (float held / float json)
            (float held / float count)
        // What an admin page of the sessions costs over a store this large: the first page of 100, then one from the
        // middle of the ids (listing pages are cut from sessions held in no order).
        for after in [ null; (store :> SessionStore).ListAsync(SessionQuery.All(count / 2), CancellationToken.None).Result.Next ] do
            let pageAllocated = GC.GetAllocatedBytesForCurrentThread()
            let pageTime = Stopwatch.StartNew()
            let page = (store :> SessionStore).ListAsync({ SessionQuery.All 100 with After = after }, CancellationToken.None).Result
            printfn
                "  a page of %d sessions (%s): %.1f ms, %.1f MiB allocated"
                page.Sessions.Count
                (if isNull after then "the first" else "from the middle")
                pageTime.Elapsed.TotalMilliseconds
                (float (GC.GetAllocatedBytesForCurrentThread() - pageAllocated) / 1048576.0)
        store.Dispose()
        IO.File.Delete copy

/// Where replay's time goes: reading and applying the records, then building the store's map (no bounds, no writer).
let profile (file: string) =
    let copy = file + ".open"
    IO.File.Copy(file, copy, true)
    use handle = IO.File.OpenHandle(copy, IO.FileMode.Open, IO.FileAccess.ReadWrite)
    let logger = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance
    let cpu () = Process.GetCurrentProcess().TotalProcessorTime
    let pause = GC.GetTotalPauseDuration()
    let allocated = GC.GetTotalAllocatedBytes true
    let cpu0 = cpu ()
    let stopwatch = Stopwatch.StartNew()
    let replayed = FileReplay.run logger copy handle
    let read = stopwatch.Elapsed
    let cpuRead = cpu () - cpu0
    let readPause = GC.GetTotalPauseDuration() - pause
    let readAllocated = GC.GetTotalAllocatedBytes true - allocated
    let sessions = FileReplay.live DateTime.UtcNow.Ticks 10_000_000 Int64.MaxValue replayed
    let total = stopwatch.Elapsed
    let cpuTotal = cpu () - cpu0
    let totalPause = GC.GetTotalPauseDuration() - pause
    let totalAllocated = GC.GetTotalAllocatedBytes true - allocated
    let mib (bytes: int64) = float bytes / 1048576.0
    printfn
        "%s: %d sessions; records read in %.0f ms (CPU %.0f ms, GC pauses %.0f ms, %.0f MiB allocated; the ring's arrays %d made ready ahead, %d on the spot); store built in %.0f ms (CPU %.0f ms, GC pauses %.0f ms, %.0f MiB allocated)"
        (IO.Path.GetFileName file)
        sessions.Count
        read.TotalMilliseconds
        cpuRead.TotalMilliseconds
        readPause.TotalMilliseconds
        (mib readAllocated)
        replayed.ArraysReady
        replayed.ArraysOnTheSpot
        (total - read).TotalMilliseconds
        (cpuTotal - cpuRead).TotalMilliseconds
        (totalPause - readPause).TotalMilliseconds
        (mib (totalAllocated - readAllocated))
    IO.File.Delete copy

/// `generate DIR`, `open FILE [rounds]` or `profile FILE`.
let run (args: string list) =
    match args with
    | [ "generate"; directory ] -> generate directory
    | [ "open"; file ] -> openFile file 1
    | [ "open"; file; rounds ] -> openFile file (int rounds)
    | [ "profile"; file ] -> profile file
    | _ -> eprintfn "usage: replay generate DIR | replay open FILE [rounds]"
