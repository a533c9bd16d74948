[<AutoOpen>]
module Sesame.Tests.Helpers

open Sesame
open System
open System.Threading
open System.Threading.Tasks
open Expecto

/// Parses JSON text in a test.
let json (text: string) = Json.parse text

/// Parses a path in a test.
let path (text: string) = SessionPath.parse text

/// A token for store calls in tests: cancels after a minute so a hung store fails the test instead of CI.
let testToken () = (new CancellationTokenSource(TimeSpan.FromMinutes 1.0)).Token

/// A folder of its own under the system temp folder, deleted with everything in it when disposed.
type TempDirectory(prefix: string) =
    let directory = IO.Directory.CreateTempSubdirectory prefix

    /// A folder for the file store's tests.
    new() = new TempDirectory("sesame-file-store-tests-")

    /// The folder.
    member _.Info = directory

    /// A file's path in the folder.
    member _.File(name: string) = IO.Path.Combine(directory.FullName, name)

    interface IDisposable with
        member _.Dispose() =
            try
                directory.Delete true
            with _ ->
                ()

/// A free TCP port on loopback, for a server a test starts.
/// Writes a session file (format version 2) record by record, each payload framed as the file store frames it.
let writeRecords (file: string) (payloads: byte[] list) =
    let bytes = Array.zeroCreate<byte>(FileLog.FileHeaderLength + (payloads |> List.sumBy (fun p -> FileLog.RecordHeaderLength + p.Length)))
    FileLog.fileHeader().CopyTo(bytes, 0)
    let mutable at = FileLog.FileHeaderLength
    for payload in payloads do
        at <- at + FileLog.frame bytes at (int64 at) payload
    IO.File.WriteAllBytes(file, bytes)

let freePort () =
    let listener = new Net.Sockets.TcpListener(Net.IPAddress.Loopback, 0)
    listener.Start()
    let port = (listener.LocalEndpoint :?> Net.IPEndPoint).Port
    listener.Stop()
    port

/// Fails unless `work` throws exactly 'error (not a subclass), as xunit's Assert.Throws did; gives the exception.
/// Waits until the condition holds, for at most 10 s (what runs off the thread that caused it, such as the handlers
/// of an eviction); the caller then asserts what it waited for.
let eventually (condition: unit -> bool) : Task = task {
    let clock = Diagnostics.Stopwatch.StartNew()
    while not (condition ()) && clock.Elapsed < TimeSpan.FromSeconds 10.0 do
        do! Task.Delay 10
}

let throws<'error when 'error :> exn> (work: unit -> unit) : 'error =
    let outcome =
        try
            work ()
            None
        with e ->
            Some e
    match outcome with
    | Some(:? 'error as e) when e.GetType() = typeof<'error> -> e
    | Some e -> failtestf "Expected %s, but %s was thrown: %s" typeof<'error>.Name (e.GetType().Name) e.Message
    | None -> failtestf "Expected %s, but nothing was thrown." typeof<'error>.Name

/// Fails unless `work` throws 'error or a subclass of it; gives the exception.
let throwsAny<'error when 'error :> exn> (work: unit -> unit) : 'error =
    let outcome =
        try
            work ()
            None
        with e ->
            Some e
    match outcome with
    | Some(:? 'error as e) -> e
    | Some e -> failtestf "Expected %s or a subclass, but %s was thrown: %s" typeof<'error>.Name (e.GetType().Name) e.Message
    | None -> failtestf "Expected %s, but nothing was thrown." typeof<'error>.Name

/// Fails unless the task `work` starts throws exactly 'error (not a subclass); gives the exception.
let throwsAsync<'error when 'error :> exn> (work: unit -> Task) : Task<'error> = task {
    let! outcome = task {
        try
            do! work ()
            return None
        with e ->
            return Some e
    }
    return
        match outcome with
        | Some(:? 'error as e) when e.GetType() = typeof<'error> -> e
        | Some e -> failtestf "Expected %s, but %s was thrown: %s" typeof<'error>.Name (e.GetType().Name) e.Message
        | None -> failtestf "Expected %s, but nothing was thrown." typeof<'error>.Name
}

/// Fails unless the value is exactly of type 'expected (not a subclass); gives it as that type.
let isType<'expected> (value: obj) : 'expected =
    match value with
    | :? 'expected as typed when value.GetType() = typeof<'expected> -> typed
    | null -> failtestf "Expected a %s, got null." typeof<'expected>.Name
    | other -> failtestf "Expected a %s, got a %s: %A" typeof<'expected>.Name (other.GetType().Name) other

/// Fails unless the sequence holds exactly one item; gives it.
let single (items: seq<'item>) : 'item =
    match List.ofSeq items with
    | [ item ] -> item
    | other -> failtestf "Expected exactly one item, got %d: %A" other.Length other

type SessionStore with
    /// <summary>Loads a session's tree (without its facts) as an option: what most tests compare.</summary>
    member store.LoadTreeAsync(id: string, idleTimeout: TimeSpan, cancellationToken: CancellationToken) : Threading.Tasks.Task<Json option> = task {
        let! loaded = store.LoadAsync(id, idleTimeout, cancellationToken)
        return loaded |> Option.ofObj |> Option.map _.Data
    }
