/// The samples' login and "your devices" pages in a real headless Chromium: two browsers sign in as one user, the
/// first ends the other's session from its devices page, and the other is signed out on its next request.
module Sesame.Browser.Tests.DeviceTests

open System
open System.IO
open System.Runtime.ExceptionServices
open System.Threading.Tasks
open Expecto
open Microsoft.Playwright
open Sesame.Browser.Tests.SampleHosts

/// The Chromium the tests drive: SESAME_CHROMIUM, else Debian's.
let private chromiumPath () =
    match Environment.GetEnvironmentVariable "SESAME_CHROMIUM" with
    | null
    | "" -> "/usr/bin/chromium"
    | path -> path

/// Where the screenshots go: beside the test program.
let private screenshotDirectory = Path.Combine(AppContext.BaseDirectory, "screenshots")

/// Launches headless Chromium, or fails saying how to install it (a missing browser never passes quietly).
let private launchAsync (playwright: IPlaywright) : Task<IBrowser> =
    let path = chromiumPath ()
    if not (File.Exists path) then
        failtest
            $"Chromium is missing: {path} does not exist. The browser tests need it; install it with `apt-get update && apt-get install -y chromium` (or set SESAME_CHROMIUM to a Chromium executable). Playwright cannot download its own browser here."
    playwright.Chromium.LaunchAsync(BrowserTypeLaunchOptions(ExecutablePath = path, Headless = true, Args = [ "--disable-dev-shm-usage" ]))

/// What a scenario has done so far, for the report of a failure: its browser pages, and each step it began (when, what).
type private Run = {
    Pages: ResizeArray<IPage>
    Steps: ResizeArray<string>
} with

    /// Notes a step as it begins: the last one noted is the one a failure happened in.
    member run.Step(what: string) = run.Steps.Add("  " + DateTime.UtcNow.ToString "HH:mm:ss.fff" + "  " + what)

/// Signs a new browser context (its own cookie jar, its own user agent) in as a user through the login form; the
/// page joins the run's pages (for the report of a failure).
let private signInAsync (run: Run) (browser: IBrowser) (address: string) (device: string) (user: string) : Task<IPage> = task {
    let! context = browser.NewContextAsync(BrowserNewContextOptions(BaseURL = address, UserAgent = device))
    let! page = context.NewPageAsync()
    run.Pages.Add page
    run.Step $"{device}: GET /login"
    let! _ = page.GotoAsync "/login"
    run.Step $"{device}: submit the login form as {user}"
    do! page.FillAsync("input[name=user]", user)
    do! page.ClickAsync "button[type=submit]"
    // The page's address and the user's name are polled on the page itself, not waited for as navigation events: once
    // in many CI runs Chromium showed /me whole (the app had answered it) and a wait for its load event ran out; later,
    // with a wait for the navigation's commit, the same happened. Polling reads what the page shows.
    run.Step $"{device}: wait for /me to show {user}"
    do! Assertions.Expect(page).ToHaveURLAsync(Text.RegularExpressions.Regex "/me$")
    do! Assertions.Expect(page.Locator "#user").ToHaveTextAsync(user)
    return page
}

let private rowsAsync (page: IPage) : Task<string list> = task {
    let! rows = page.Locator("tr.device").AllInnerTextsAsync()
    return List.ofSeq rows
}

/// Runs <paramref name="body"/>, then <paramref name="cleanup"/> whether it failed or not; rethrows its failure.
let private tryFinallyAsync (body: unit -> Task<unit>) (cleanup: unit -> Task) : Task<unit> = task {
    let mutable failure: ExceptionDispatchInfo = null
    try
        do! body ()
    with e ->
        failure <- ExceptionDispatchInfo.Capture e
    do! cleanup ()
    if not (isNull failure) then failure.Throw()
}

/// Two browsers sign in as ada; the laptop lists both devices, ends the phone's session; the phone is signed out.
let private scenario (sampleName: string) (run: Run) (browser: IBrowser) (address: string) : Task<unit> = task {
    let! laptop = signInAsync run browser address "Sesame test laptop" "ada"
    let! phone = signInAsync run browser address "Sesame test phone" "ada"

    run.Step "laptop: GET /devices"
    let! _ = laptop.GotoAsync "/devices"
    let! rows = rowsAsync laptop
    Expect.hasLength rows 2 "The laptop lists both of ada's devices."
    Expect.exists rows (fun row -> row.Contains "Sesame test laptop" && row.Contains "This device") "The laptop's own session is marked as this device."
    Expect.exists rows (fun row -> row.Contains "Sesame test phone" && not (row.Contains "This device")) "The phone's session is listed, not marked current."

    Directory.CreateDirectory screenshotDirectory |> ignore
    let shot = Path.Combine(screenshotDirectory, $"{sampleName}-devices.png")
    let! _ = laptop.ScreenshotAsync(PageScreenshotOptions(Path = shot, FullPage = true))
    Expect.isTrue (FileInfo(shot).Length > 0L) $"The devices page's screenshot is in {shot}."

    // End the phone's session from the laptop.
    run.Step "laptop: end the phone's session"
    do! laptop.Locator("tr.device:not(.current) button").ClickAsync()
    // The page is /devices before and after the post: wait for the new page's one row (Playwright retries, then fails).
    do! Assertions.Expect(laptop.Locator "tr.device").ToHaveCountAsync 1
    let! rows = rowsAsync laptop
    Expect.hasLength rows 1 "After ending the phone's session the laptop lists one device."
    Expect.stringContains rows.Head "Sesame test laptop" "The device left is the laptop."

    // The phone's next request finds its session gone: it is signed out.
    run.Step "phone: GET /me"
    let! _ = phone.GotoAsync "/me"
    let! status = phone.Locator("#status").TextContentAsync()
    Expect.equal status "Not signed in." "The phone is signed out on its next request."
    run.Step "phone: GET /devices"
    let! _ = phone.GotoAsync "/devices"
    Expect.stringContains phone.Url "/login" "The phone's devices page sends it to the login page."

    // The laptop is still signed in.
    run.Step "laptop: GET /me"
    let! _ = laptop.GotoAsync "/me"
    let! shown = laptop.Locator("#user").TextContentAsync()
    Expect.equal shown "ada" "The laptop stays signed in."
}

/// A failed scenario's report: the failure, where each browser page was (with a screenshot of it), and every request
/// the app saw, so that a failure that happens once in many runs can be read from its log alone.
let private failureReport (sampleName: string) (failure: exn) (run: Run) (sample: RunningSample) : Task<string> = task {
    let lines = ResizeArray<string>([ failure.Message; ""; "Steps begun (the last is the one that failed):" ])
    lines.AddRange run.Steps
    lines.Add ""
    lines.Add "Browser pages:"
    Directory.CreateDirectory screenshotDirectory |> ignore
    for i, page in Seq.indexed run.Pages do
        let shot = Path.Combine(screenshotDirectory, $"{sampleName}-failure-{i}.png")
        let! saved = task {
            try
                let! _ = page.ScreenshotAsync(PageScreenshotOptions(Path = shot, FullPage = true, Timeout = 5000.0f))
                return $"screenshot {shot}"
            with e ->
                return $"no screenshot ({e.Message})"
        }
        lines.Add $"  page {i}: {page.Url} ({saved})"
    lines.Add ""
    lines.Add "Requests the app saw:"
    lines.Add(string sample.Requests)
    return String.Join("\n", lines)
}

/// The scenario, on a sample started by <paramref name="startSample"/>.
let private endAnotherDevice (sampleName: string) (startSample: unit -> Task<RunningSample>) () : Task<unit> = task {
    use! playwright = Playwright.CreateAsync()
    let! browser = launchAsync playwright
    do!
        tryFinallyAsync
            (fun () -> task {
                let! sample = startSample ()
                let run = { Pages = ResizeArray<IPage>(); Steps = ResizeArray<string>() }
                do!
                    tryFinallyAsync
                        (fun () -> task {
                            try
                                do! scenario sampleName run browser sample.Address
                            with failure ->
                                let! report = failureReport sampleName failure run sample
                                failtest report
                        })
                        (fun () -> (sample :> IAsyncDisposable).DisposeAsync().AsTask())
            })
            (fun () -> browser.CloseAsync())
}

[<Tests>]
let tests =
    testSequenced
    <| testList "Browser" [
        testCaseTask
            "Giraffe sample: two browsers sign in as one user; the first lists both devices, ends the other, which is signed out"
            (endAnotherDevice "giraffe" startGiraffe)
        testCaseTask
            "C# sample: two browsers sign in as one user; the first lists both devices, ends the other, which is signed out"
            (endAnotherDevice "csharp" startCSharp)
    ]
