/// The Giraffe sample's promises, as a browser with a cookie jar sees them over Kestrel.
module Sesame.Tests.SampleTests

open System
open System.Diagnostics
open System.IO
open System.Net
open System.Net.Http
open System.Threading.Tasks
open Expecto
open Sesame
open Sesame.Samples.Giraffe

let private noOptions (_: SesameOptions) = ()

let private startSample () =
    startHostOn Kestrel (new MemoryStore()) noOptions (runHandler App.webApp) (new LogCapture())


/// A sample process the test started: disposing it kills the process if it still runs, so a test
/// that fails half way leaves no server behind.
type private SampleProcess(child: Process) =
    member _.Process = child

    interface IDisposable with
        member _.Dispose() =
            try
                if not child.HasExited then
                    child.Kill true
                    child.WaitForExit()
            finally
                child.Dispose()

/// Runs the built sample as a real child process until it says it is listening.
let private startSampleProcess (args: string) : Task<SampleProcess> =
    task {
        let dll = Path.Combine(AppContext.BaseDirectory, "Sesame.Samples.Giraffe.dll")
        let info = ProcessStartInfo("dotnet", $"\"{dll}\" {args}", RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
        let child = Process.Start info
        let listening = TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously)
        child.OutputDataReceived.Add(fun e -> if not (isNull e.Data) && e.Data.Contains "listening" then listening.TrySetResult true |> ignore)
        child.Exited.Add(fun _ -> listening.TrySetResult false |> ignore)
        child.EnableRaisingEvents <- true
        child.BeginOutputReadLine()
        child.BeginErrorReadLine()
        let! started = Task.WhenAny(listening.Task, Task.Delay(TimeSpan.FromSeconds 60.0))
        if not (obj.ReferenceEquals(started, listening.Task) && listening.Task.Result) then
            if not child.HasExited then child.Kill()
            failwith $"The sample did not start with {args}."
        return new SampleProcess(child)
    }

/// Stops a child process the way a service manager does (SIGTERM), and waits for it.
let private stop (sample: SampleProcess) =
    let child = sample.Process
    task {
        use term = Process.Start("kill", $"-TERM {child.Id}")
        do! term.WaitForExitAsync()
        do! child.WaitForExitAsync()
    }

[<Tests>]
let tests =
    testList "Sample" [
        testCaseTask "the counter answers 1 times!, 2 times!, 3 times! to one cookie jar" <| fun () -> task {
            use! host = startSample ()
            use client = kestrelClient host
            for expected in [ "1 times!"; "2 times!"; "3 times!" ] do
                let! body = client.GetStringAsync "/"
                Expect.equal body expected "body"
        }

        testCaseTask "the nested example doubles foo.bar.baz: 2, 4, 8 on a fresh jar" <| fun () -> task {
            use! host = startSample ()
            use client = kestrelClient host
            for expected in [ "1 times! baz = 2"; "2 times! baz = 4"; "3 times! baz = 8" ] do
                let! body = client.GetStringAsync "/nested"
                Expect.equal body expected "body"
            let! session = client.GetStringAsync "/session"
            Expect.equal session ("""{"times":3,"foo":{"bar":{"baz":8}}}""") "session"
        }

        testCase "the sample reads its store choice, refusing an unknown one" <| fun () ->
            Expect.equal (StoreChoice.parse "memory") (Ok StoreChoice.Memory) "StoreChoice.parse 'memory'"
            Expect.equal (StoreChoice.parse null) (Ok StoreChoice.Memory) "StoreChoice.parse null"
            Expect.equal (StoreChoice.parse "file:/tmp/s.db") (Ok(StoreChoice.File "/tmp/s.db")) "StoreChoice.parse 'file:/tmp/s.db'"
            Expect.equal (StoreChoice.parse "redis:127.0.0.1:6379") (Ok(StoreChoice.Redis "127.0.0.1:6379")) "StoreChoice.parse 'redis:127.0.0.1:6379'"
            match StoreChoice.parse "floppy:/a" with
            | Error message -> Expect.stringContains message "floppy" "message"
            | Ok choice -> failwith $"Unexpected {choice}"

        testCaseTask "on the file store the sample counts 1, 2, 3, restarts, and the same cookie jar gets 4 times!" <| fun () -> task {
            let directory = Directory.CreateTempSubdirectory "sesame-sample-"
            try
                let file = Path.Combine(directory.FullName, "sessions.db")
                let port = freePort ()
                let args = $"--store file:{file} --urls http://127.0.0.1:{port}"
                use client = new HttpClient(new HttpClientHandler(CookieContainer = CookieContainer()), BaseAddress = Uri $"http://127.0.0.1:{port}")
                // Each process is killed when its `use` ends, whether an assertion failed or not.
                use! first = startSampleProcess args
                for expected in [ "1 times!"; "2 times!"; "3 times!" ] do
                    let! body = client.GetStringAsync "/"
                    Expect.equal body expected "Before the restart the counter goes 1, 2, 3."
                do! stop first
                use! second = startSampleProcess args
                let! body = client.GetStringAsync "/"
                Expect.equal body "4 times!" "After the restart the same cookie jar continues at 4."
            finally
                directory.Delete true
        }
    ]
