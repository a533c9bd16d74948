/// The file store with durability on (every commit flushed with fsync before it returns): commits per second
/// for one writer and for 32 concurrent writers (group commit), new sessions from 32 writers, and the bytes one one-key commit appends to
/// a 16 KB session. Run: dotnet run -c Release --project bench/Sesame.Benchmarks -- --filter '*FileStore*' --job short
module Sesame.Benchmarks.FileStoreBenchmarks

open System
open System.Threading
open System.Threading.Tasks
open BenchmarkDotNet.Attributes
open BenchmarkDotNet.Columns
open BenchmarkDotNet.Configs
open BenchmarkDotNet.Reports
open Sesame

/// Commits per benchmark invocation, the same for every writer count, so per-commit figures compare.
[<Literal>]
let CommitsPerInvoke = 256

/// A session of about 16 KB: 64 fields of 250 characters.
let session16K = Json.object [ for i in 1..64 -> $"field{i}", Json.string (String('v', 250)) ]

let private commitOptions = { IdleTimeout = TimeSpan.FromMinutes 20.0; MustExist = false; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }

/// One-key changes, made once so the benchmark measures the store, not the fold.
let private oneKeyChanges = [| for n in 0..255 -> SessionChange(Patch.fold [ Update.set (SessionPath.parse "field7") (Json.int64 (int64 n)) ]) |]

/// What a new visitor's first request commits: a counter, and the session's creation fact.
let private newSessionChange =
    SessionChange(
        Patch.fold [ Update.set (SessionPath.parse "times") (Json.int64 1L) ],
        Patch.fold [ Update.set (SessionPath.ofKeys [ SessionMeta.Created ]) (Json.int64 1764633600000L) ]
    )

/// A session id as long as Sesame's (32 characters).
let private sessionId (n: int) = $"bench-session-{n:D18}"

let private newDirectory () =
    let directory = IO.Path.Combine(IO.Path.GetTempPath(), "sesame-file-store-bench", Guid.NewGuid().ToString "N")
    IO.Directory.CreateDirectory directory |> ignore
    directory

/// The bytes one one-key commit appends to the file, and the size of the 16 KB session it changes.
let measureBytesPerCommit () : int64 * int64 =
    let directory = newDirectory ()
    try
        use store = FileStore.Open(IO.Path.Combine(directory, "sessions"))
        let sessions = store :> SessionStore
        sessions.CommitAsync(sessionId 0, SessionChange(Patch.fold [ Update.set SessionPath.root session16K ]), commitOptions, CancellationToken.None).Wait()
        let before = store.FileLength
        sessions.CommitAsync(sessionId 0, oneKeyChanges[1], commitOptions, CancellationToken.None).Wait()
        store.FileLength - before, JsonSize.utf8Length session16K
    finally
        IO.Directory.Delete(directory, true)

/// Durable commits per second, all writers together: the inverse of the mean time per commit.
type CommitsPerSecondColumn() =
    interface IColumn with
        member _.Id = "CommitsPerSecond"
        member _.ColumnName = "Commits/s"
        member _.AlwaysShow = true
        member _.Category = ColumnCategory.Custom
        member _.PriorityInCategory = 0
        member _.IsNumeric = true
        member _.UnitType = UnitType.Dimensionless
        member _.Legend = "Durable commits completed per second, all writers together (1 s / mean time per commit)"
        member _.IsAvailable(_summary) = true
        member _.IsDefault(_summary, _benchmarkCase) = false
        member this.GetValue(summary, benchmarkCase) = (this :> IColumn).GetValue(summary, benchmarkCase, SummaryStyle.Default)

        member _.GetValue(summary, benchmarkCase, _style) =
            match summary[benchmarkCase] with
            | null -> "-"
            | report when isNull report.ResultStatistics -> "-"
            | report -> (1e9 / report.ResultStatistics.Mean).ToString("N0", Globalization.CultureInfo.InvariantCulture)

/// What one one-key commit appends to the file, against the whole 16 KB session (measured once, in the host process).
type BytesPerCommitColumn() =
    static let measured = lazy (measureBytesPerCommit ())

    interface IColumn with
        member _.Id = "BytesPerCommit"
        member _.ColumnName = "Bytes/commit (of session)"
        member _.AlwaysShow = true
        member _.Category = ColumnCategory.Custom
        member _.PriorityInCategory = 1
        member _.IsNumeric = false
        member _.UnitType = UnitType.Dimensionless
        member _.Legend = "Bytes one one-key commit appends to the file, and the size of the session it changes"
        member _.IsAvailable(_summary) = true
        member _.IsDefault(_summary, _benchmarkCase) = false
        member this.GetValue(summary, benchmarkCase) = (this :> IColumn).GetValue(summary, benchmarkCase, SummaryStyle.Default)

        member _.GetValue(_summary, _benchmarkCase, _style) =
            let appended, session = measured.Value
            $"{appended} B of {session} B"

/// Adds the two columns.
type FileStoreConfig() as this =
    inherit ManualConfig()
    do this.AddColumn(CommitsPerSecondColumn(), BytesPerCommitColumn()) |> ignore

/// One-key commits to 16 KB sessions, each flushed to disk before it returns.
[<MemoryDiagnoser; Config(typeof<FileStoreConfig>)>]
type FileStoreCommits() =
    let mutable created = 0
    let mutable directory = ""
    let mutable store: FileStore = Unchecked.defaultof<FileStore>

    member private _.Writer(session: int, commits: int) : Task = task {
        let sessions = store :> SessionStore
        for n in 1..commits do
            let! _ = sessions.CommitAsync(sessionId session, oneKeyChanges[n &&& 255], commitOptions, CancellationToken.None)
            ()
    }

    [<GlobalSetup>]
    member _.Setup() =
        directory <- newDirectory ()
        store <- FileStore.Open(IO.Path.Combine(directory, "sessions"))
        for session in 0..31 do
            (store :> SessionStore)
                .CommitAsync(sessionId session, SessionChange(Patch.fold [ Update.set SessionPath.root session16K ]), commitOptions, CancellationToken.None)
                .Wait()

    [<GlobalCleanup>]
    member _.Cleanup() =
        store.Dispose()
        IO.Directory.Delete(directory, true)

    /// New sessions from 32 concurrent writers, each a first request's commit (a counter and its creation fact).
    [<Benchmark(OperationsPerInvoke = CommitsPerInvoke)>]
    member _.NewSessionsThirtyTwoWriters() : Task =
        let sessions = store :> SessionStore
        Task.WhenAll [|
            for _ in 0..31 ->
                Task.Run(
                    Func<Task>(fun () -> task {
                        for _ in 1 .. CommitsPerInvoke / 32 do
                            let id = sessionId (1_000_000 + Interlocked.Increment &created)
                            let! _ = sessions.CommitAsync(id, newSessionChange, commitOptions, CancellationToken.None)
                            ()
                    })
                )
        |]

    /// One writer: every commit waits for its own flush.
    [<Benchmark(Baseline = true, OperationsPerInvoke = CommitsPerInvoke)>]
    member this.OneWriter() : Task = this.Writer(0, CommitsPerInvoke)

    /// 32 concurrent writers, each on its own session: their commits share flushes.
    [<Benchmark(OperationsPerInvoke = CommitsPerInvoke)>]
    member this.ThirtyTwoWriters() : Task =
        Task.WhenAll [| for session in 0..31 -> Task.Run(Func<Task>(fun () -> this.Writer(session, CommitsPerInvoke / 32))) |]
