/// The Giraffe sample's promises, as a browser with a cookie jar sees them over Kestrel.
module Sesame.Tests.SampleTests

open System
open System.Diagnostics
open System.IO
open System.Net
open System.Net.Http
open System.Threading.Tasks
open Xunit
open Sesame
open Sesame.Samples.Giraffe

let private noOptions (_: SesameOptions) = ()

let private startSample () =
    startHostOn Kestrel (new MemoryStore()) noOptions (runHandler App.webApp) (new LogCapture())

[<Fact>]
let ``the counter answers 1 times!, 2 times!, 3 times! to one cookie jar`` () =
    task {
        use! host = startSample ()
        use client = kestrelClient host
        for expected in [ "1 times!"; "2 times!"; "3 times!" ] do
            let! body = client.GetStringAsync "/"
            Assert.Equal(expected, body)
    }

[<Fact>]
let ``the nested example doubles foo.bar.baz: 2, 4, 8 on a fresh jar`` () =
    task {
        use! host = startSample ()
        use client = kestrelClient host
        for expected in [ "1 times! baz = 2"; "2 times! baz = 4"; "3 times! baz = 8" ] do
            let! body = client.GetStringAsync "/nested"
            Assert.Equal(expected, body)
        let! session = client.GetStringAsync "/session"
        Assert.Equal("""{"times":3,"foo":{"bar":{"baz":8}}}""", session)
    }

[<Fact>]
let ``the sample reads its store choice, refusing an unknown one`` () =
    Assert.Equal(Ok StoreChoice.Memory, StoreChoice.parse "memory")
    Assert.Equal(Ok StoreChoice.Memory, StoreChoice.parse null)
    Assert.Equal(Ok(StoreChoice.File "/tmp/s.db"), StoreChoice.parse "file:/tmp/s.db")
    Assert.Equal(Ok(StoreChoice.Redis "127.0.0.1:6379"), StoreChoice.parse "redis:127.0.0.1:6379")
    match StoreChoice.parse "floppy:/a" with
    | Error message -> Assert.Contains("floppy", message)
    | Ok choice -> failwith $"Unexpected {choice}"

/// Runs the built sample as a real child process until it says it is listening.
let private startSampleProcess (args: string) : Task<Process> =
    task {
        let dll = Path.Combine(AppContext.BaseDirectory, "Sesame.Samples.Giraffe.dll")
        let info = ProcessStartInfo("dotnet", $"\"{dll}\" {args}", RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
        let child = Process.Start info
        let listening = TaskCompletionSource<bool>()
        child.OutputDataReceived.Add(fun e -> if not (isNull e.Data) && e.Data.Contains "listening" then listening.TrySetResult true |> ignore)
        child.Exited.Add(fun _ -> listening.TrySetResult false |> ignore)
        child.EnableRaisingEvents <- true
        child.BeginOutputReadLine()
        child.BeginErrorReadLine()
        let! started = Task.WhenAny(listening.Task, Task.Delay(TimeSpan.FromSeconds 60.0))
        if not (obj.ReferenceEquals(started, listening.Task) && listening.Task.Result) then
            if not child.HasExited then child.Kill()
            failwith $"The sample did not start with {args}."
        return child
    }

/// Stops a child process the way a service manager does (SIGTERM), and waits for it.
let private stop (child: Process) =
    task {
        use term = Process.Start("kill", $"-TERM {child.Id}")
        do! term.WaitForExitAsync()
        do! child.WaitForExitAsync()
    }

[<Fact>]
let ``on the file store the sample counts 1, 2, 3, restarts, and the same cookie jar gets 4 times!`` () =
    task {
        let directory = Directory.CreateTempSubdirectory "sesame-sample-"
        let file = Path.Combine(directory.FullName, "sessions.db")
        let port = freePort ()
        let args = $"--store file:{file} --urls http://127.0.0.1:{port}"
        use client = new HttpClient(new HttpClientHandler(CookieContainer = CookieContainer()), BaseAddress = Uri $"http://127.0.0.1:{port}")
        let! first = startSampleProcess args
        for expected in [ "1 times!"; "2 times!"; "3 times!" ] do
            let! body = client.GetStringAsync "/"
            Assert.Equal(expected, body)
        do! stop first
        let! second = startSampleProcess args
        try
            let! body = client.GetStringAsync "/"
            Assert.Equal("4 times!", body)
        finally
            second.Kill()
            second.WaitForExit()
            directory.Delete true
    }
