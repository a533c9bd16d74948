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

let private startSample () = startHostOn Kestrel (new MemoryStore()) noOptions (runHandler App.webApp) (new LogCapture())


/// A client of the sample with its own cookie jar and user agent; it follows redirects, as a browser does.
let private device (host: Microsoft.Extensions.Hosting.IHost) (agent: string) =
    let jar = CookieContainer()
    let client = new HttpClient(new HttpClientHandler(CookieContainer = jar, UseCookies = true), BaseAddress = addressOf host)
    client.DefaultRequestHeaders.UserAgent.ParseAdd agent
    client, jar

/// The session cookie a client holds, or None.
let private sessionCookie (host: Microsoft.Extensions.Hosting.IHost) (jar: CookieContainer) =
    jar.GetCookies(addressOf host) |> Seq.tryFind (fun c -> c.Name = SesameOptions.DefaultCookieName && not c.Expired && c.Value <> "") |> Option.map _.Value

/// Posts a form and gives the body of the page it ends on (after redirects).
let private postForm (client: HttpClient) (path: string) (fields: (string * string) list) = task {
    use content = new FormUrlEncodedContent(fields |> List.map (fun (k, v) -> Collections.Generic.KeyValuePair(k, v)))
    use! response = client.PostAsync(path, content)
    let! body = response.Content.ReadAsStringAsync()
    Expect.isTrue response.IsSuccessStatusCode $"POST {path} ends on a page ({int response.StatusCode}): {body}"
    return body
}

let private count (fragment: string) (text: string) = Text.RegularExpressions.Regex.Matches(text, Text.RegularExpressions.Regex.Escape fragment).Count

/// The handles of the other devices' sign-out buttons on a devices page.
let private otherHandles (page: string) =
    Text.RegularExpressions.Regex.Matches(page, "name=\"handle\" value=\"([^\"]+)\"") |> Seq.map (fun m -> m.Groups[1].Value) |> List.ofSeq

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

/// Runs the built sample as a real child process, in the working directory given (None: this one's), until it says it
/// is listening.
let private startSampleProcessIn (workingDirectory: string option) (args: string) : Task<SampleProcess> = task {
    let dll = Path.Combine(AppContext.BaseDirectory, "Sesame.Samples.Giraffe.dll")
    let info = ProcessStartInfo("dotnet", $"\"{dll}\" {args}", RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
    workingDirectory |> Option.iter (fun directory -> info.WorkingDirectory <- directory)
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

/// Runs the built sample as a real child process until it says it is listening.
let private startSampleProcess (args: string) = startSampleProcessIn None args

/// Stops a child process the way a service manager does (SIGTERM), and waits for it.
let private stop (sample: SampleProcess) =
    let child = sample.Process
    task {
        use term = Process.Start("kill", $"-TERM {child.Id}")
        do! term.WaitForExitAsync()
        do! child.WaitForExitAsync()
    }

/// Runs the built sample to its end (it is expected to refuse to start): its exit code and what it wrote to stderr.
let private runSampleToExit (args: string) : Task<int * string> = task {
    let dll = Path.Combine(AppContext.BaseDirectory, "Sesame.Samples.Giraffe.dll")
    let info = ProcessStartInfo("dotnet", $"\"{dll}\" {args}", RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
    use child = Process.Start info
    let stderr = child.StandardError.ReadToEndAsync()
    let! _ = child.StandardOutput.ReadToEndAsync()
    use timeout = new Threading.CancellationTokenSource(TimeSpan.FromSeconds 60.0)
    do! child.WaitForExitAsync timeout.Token
    let! errors = stderr
    return child.ExitCode, errors
}

[<Tests>]
let tests =
    testList "Sample" [
        testCaseTask "the counter answers 1 times!, 2 times!, 3 times! to one cookie jar"
        <| fun () -> task {
            use! host = startSample ()
            use client = kestrelClient host
            for expected in [ "1 times!"; "2 times!"; "3 times!" ] do
                let! body = client.GetStringAsync "/"
                Expect.equal body expected "body"
        }

        testCaseTask "the nested example doubles foo.bar.baz: 2, 4, 8 on a fresh jar"
        <| fun () -> task {
            use! host = startSample ()
            use client = kestrelClient host
            for expected in [ "1 times! baz = 2"; "2 times! baz = 4"; "3 times! baz = 8" ] do
                let! body = client.GetStringAsync "/nested"
                Expect.equal body expected "body"
            let! session = client.GetStringAsync "/session"
            Expect.equal session ("""{"times":3,"foo":{"bar":{"baz":8}}}""") "session"
        }

        testCaseTask "login names the user; logout signs out, and the old cookie no longer signs anyone in"
        <| fun () -> task {
            use! host = startSample ()
            let client, jar = device host "laptop"
            use _ = client
            let! page = client.GetStringAsync "/me"
            Expect.stringContains page "Not signed in." "Before login the account page says so."
            let! page = postForm client "/login" [ "user", "ada" ]
            Expect.stringContains page "Signed in as <b id=\"user\">ada</b>" "The login ends on the account page, naming the user."
            let signedInCookie = sessionCookie host jar
            Expect.isSome signedInCookie "The login issued a session cookie."
            let! page = postForm client "/logout" []
            Expect.stringContains page "Not signed in." "The logout ends on the login page, signed out."
            Expect.isNone (sessionCookie host jar) "The logout expired the cookie."
            // Someone who kept the old cookie gets nothing from it.
            let thief, thiefJar = device host "thief"
            use _ = thief
            thiefJar.Add(addressOf host, Cookie(SesameOptions.DefaultCookieName, signedInCookie.Value))
            let! page = thief.GetStringAsync "/me"
            Expect.stringContains page "Not signed in." "The session the logout destroyed is gone."
        }

        testCaseTask "login rotates the id and keeps the session's data; a fresh login starts with an empty session"
        <| fun () -> task {
            use! host = startSample ()
            let client, jar = device host "laptop"
            use _ = client
            let! _ = client.GetStringAsync "/"
            let! _ = client.GetStringAsync "/"
            let before = sessionCookie host jar
            let! _ = postForm client "/login" [ "user", "ada" ]
            Expect.notEqual (sessionCookie host jar) before "The login moved the session to a new id (against fixation)."
            let! data = client.GetStringAsync "/session"
            Expect.equal data """{"times":2}""" "The login kept what the session held."

            let fresh, _ = device host "kiosk"
            use _ = fresh
            let! _ = fresh.GetStringAsync "/"
            let! page = postForm fresh "/login" [ "user", "bob"; "fresh", "on" ]
            Expect.stringContains page "Signed in as <b id=\"user\">bob</b>" "The fresh login signed in."
            let! data = fresh.GetStringAsync "/session"
            Expect.equal data "{}" "The fresh login started with an empty session."
        }

        testCaseTask "the devices page lists a user's sessions with their user agents, and ends one or all others"
        <| fun () -> task {
            use! host = startSample ()
            let laptop, _ = device host "laptop-agent"
            let phone, _ = device host "phone-agent"
            let tablet, _ = device host "tablet-agent"
            let other, _ = device host "other-user-agent"
            use _ = laptop
            use _ = phone
            use _ = tablet
            use _ = other
            for client in [ laptop; phone; tablet ] do
                let! _ = postForm client "/login" [ "user", "ada" ]
                ()
            let! _ = postForm other "/login" [ "user", "grace" ]
            let! page = laptop.GetStringAsync "/devices"
            Expect.equal (count "<tr class=\"device" page) 3 "Ada's three sessions are listed, not Grace's."
            Expect.equal (count "<tr class=\"device current\"" page) 1 "One is marked current."
            for agent in [ "laptop-agent"; "phone-agent"; "tablet-agent" ] do
                Expect.stringContains page agent "Each device's user agent is shown."
            Expect.isFalse (page.Contains "other-user-agent") "Another user's device is not shown."
            let handles = otherHandles page
            Expect.hasLength handles 2 "The two other devices have a sign-out button each."

            // Grace cannot end Ada's sessions by posting their handles.
            let! _ = postForm other "/devices/end" [ "handle", handles.Head ]
            let! page = laptop.GetStringAsync "/devices"
            Expect.equal (count "<tr class=\"device" page) 3 "Another user's post ended nothing."

            let! page = postForm laptop "/devices/end" [ "handle", handles.Head ]
            Expect.equal (count "<tr class=\"device" page) 2 "Ending one device leaves two."
            let! phonePage = phone.GetStringAsync "/me"
            let! tabletPage = tablet.GetStringAsync "/me"
            Expect.equal
                ([ phonePage; tabletPage ] |> List.filter (fun p -> p.Contains "Not signed in.") |> List.length)
                1
                "Exactly the ended device is signed out."

            let! page = postForm laptop "/devices/end-others" []
            Expect.equal (count "<tr class=\"device" page) 1 "Signing out the other devices leaves this one."
            for client in [ phone; tablet ] do
                let! page = client.GetStringAsync "/me"
                Expect.stringContains page "Not signed in." "Every other device is signed out."
            let! page = laptop.GetStringAsync "/me"
            Expect.stringContains page "Signed in as" "This device stays signed in."
            let! page = other.GetStringAsync "/me"
            Expect.stringContains page "Signed in as <b id=\"user\">grace</b>" "Another user's session is untouched."
        }

        testCaseTask "a form the sample cannot read is answered 400, on the login and on the devices page"
        <| fun () -> task {
            use! host = startSample ()
            let client, _ = device host "attacker"
            use _ = client
            let! _ = client.GetStringAsync "/"
            let post (path: string) (content: HttpContent) = task {
                use content = content
                use! response = client.PostAsync(path, content)
                return int response.StatusCode
            }
            let raw (mediaType: string) (body: string) =
                let content = new StringContent(body)
                content.Headers.ContentType <- Headers.MediaTypeHeaderValue.Parse mediaType
                content :> HttpContent
            let tooMany () = new FormUrlEncodedContent([ for i in 1..1100 -> Collections.Generic.KeyValuePair($"f{i}", "x") ]) :> HttpContent
            let malformed (path: string) = task {
                let! noBoundary = post path (raw "multipart/form-data" "--x\r\n")
                Expect.equal noBoundary 400 $"{path}: multipart with no boundary"
                let! cutShort = post path (raw "multipart/form-data; boundary=x" "--x\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nada")
                Expect.equal cutShort 400 $"{path}: multipart cut short"
                let! fields = post path (tooMany ())
                Expect.equal fields 400 $"{path}: more fields than ASP.NET Core reads"
            }
            do! malformed "/login"
            let! signedIn = postForm client "/login" [ "user", "eve" ]
            Expect.stringContains signedIn "Signed in as" "signed in"
            do! malformed "/devices/end"
            // The session is untouched: the next request counts on.
            let! body = client.GetStringAsync "/"
            Expect.equal body "2 times!" "the counter goes on"
        }

        testCase "the sample reads its store choice, refusing an unknown one"
        <| fun () ->
            Expect.equal (StoreChoice.parse "memory") (Ok StoreChoice.Memory) "StoreChoice.parse 'memory'"
            Expect.equal (StoreChoice.parse null) (Ok StoreChoice.Memory) "StoreChoice.parse null"
            Expect.equal (StoreChoice.parse "file:/tmp/s.db") (Ok(StoreChoice.File "/tmp/s.db")) "StoreChoice.parse 'file:/tmp/s.db'"
            Expect.equal (StoreChoice.parse "redis:127.0.0.1:6379") (Ok(StoreChoice.Redis "127.0.0.1:6379")) "StoreChoice.parse 'redis:127.0.0.1:6379'"
            match StoreChoice.parse "floppy:/a" with
            | Error message -> Expect.stringContains message "floppy" "message"
            | Ok choice -> failwith $"Unexpected {choice}"

        testCaseTask "on the file store the sample counts 1, 2, 3, restarts from another folder, and the same cookie jar gets 4 times!"
        <| fun () -> task {
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
                // Started from elsewhere (a deploy to a new folder): its cookies must not depend on the working folder,
                // which is Data Protection's default application name.
                use! second = startSampleProcessIn (Some directory.FullName) args
                let! body = client.GetStringAsync "/"
                Expect.equal body "4 times!" "After the restart the same cookie jar continues at 4."
            finally
                directory.Delete true
        }

        testCaseTask "a second sample on a file the first holds says the file is in use and exits with code 3"
        <| fun () -> task {
            let directory = Directory.CreateTempSubdirectory "sesame-sample-"
            try
                let file = Path.Combine(directory.FullName, "sessions.db")
                use! _first = startSampleProcess $"--store file:{file} --urls http://127.0.0.1:{freePort ()}"
                let! code, errors = runSampleToExit $"--store file:{file} --urls http://127.0.0.1:{freePort ()}"
                Expect.equal code 3 "the sample's own exit code, not an unhandled exception's"
                Expect.stringContains errors "is in use" "the message says why"
                Expect.isFalse (errors.Contains "Unhandled exception") "no unhandled exception"
            finally
                directory.Delete true
        }
    ]
