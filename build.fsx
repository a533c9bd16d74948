// Sesame's build script: `dotnet fsi build.fsx <target>`.
//   build   restore and build everything (Release, warnings as errors)
//   test    build, then run every test project (the Expecto programs, then `dotnet test` for the
//           xunit projects under tests/); ends with one line "N passed, N failed" and fails if any test or runner failed
//   soak    Expecto's stress mode on the concurrency tests (those whose names mention "concurrent"),
//           both F# test programs at once, for the minutes given after it (`soak 1`; default 5); not run in CI
//   bench   run the BenchmarkDotNet micro-benchmarks (pass BenchmarkDotNet arguments after --)
//   pack    make the NuGet packages (and their .snupkg symbol packages) of the libraries in ./artifacts
//   packtest  pack into a temporary folder, check each package's metadata, then build a fresh C# app and a fresh
//           F# app on those packages (restored from that folder) and count visits on their counter endpoint
//   docs    the API reference and guides as a static site with fsdocs (artifacts/docs), checked in headless Chromium
//   loadtest  the load test against ASP.NET Core Session (writes docs/performance.md)
//   flood   the sample's app under a flood of new sessions and a growth attack, on the memory and file stores,
//           before and after the bounds (about 12 minutes; writes its section of docs/performance.md and docs/flood.svg)
//   sample  run samples/Giraffe (arguments after -- go to the sample)
open System
open System.Diagnostics
open System.Text.RegularExpressions

let root = __SOURCE_DIRECTORY__

/// Runs a command in the repository root, echoing its output; returns exit code and output lines.
let run (file: string) (args: string) (capture: bool) =
    printfn "> %s %s" file args
    let info = ProcessStartInfo(file, args, WorkingDirectory = root, UseShellExecute = false, RedirectStandardOutput = capture)
    use p = Process.Start info
    let lines = ResizeArray<string>()
    if capture then
        let mutable line = p.StandardOutput.ReadLine()
        while not (isNull line) do
            Console.WriteLine line
            lines.Add line
            line <- p.StandardOutput.ReadLine()
    p.WaitForExit()
    p.ExitCode, List.ofSeq lines

let exitOn (code: int) = if code <> 0 then exit code

/// The F# test projects: Expecto console programs, run with `dotnet run --no-build`.
let expectoProjects = [ "tests/Sesame.Tests"; "tests/Sesame.Redis.Tests"; "tests/Sesame.Postgres.Tests" ]

/// The C# test projects, run with `dotnet test`: every project under tests/ that references xunit
/// (tests/Sesame.CSharpInterop.Tests, tests/Sesame.ExampleStore.Tests, and any added later).
let xunitProjects =
    IO.Directory.GetFiles(IO.Path.Combine(root, "tests"), "*.csproj", IO.SearchOption.AllDirectories)
    |> Array.filter (fun project -> IO.File.ReadAllText(project).Contains "<PackageReference Include=\"xunit\"")
    |> Array.map (fun project -> IO.Path.GetRelativePath(root, IO.Path.GetDirectoryName project).Replace('\\', '/'))
    |> Array.sort
    |> List.ofArray

/// Expecto's arguments for a run whose output is read: plain text, no spinner.
let plainExpecto = "--colours 0 --no-spinner"

/// The counts in one runner's output: (passed, failed), failed including errored tests.
let countsOf (lines: string list) =
    // Expecto: "EXPECTO! 217 tests run in 00:01:04 for miscellaneous – 217 passed, 0 ignored, 0 failed, 0 errored."
    let expecto = Regex(@"EXPECTO!.*\s(\d+) passed, (\d+) ignored, (\d+) failed, (\d+) errored")
    // dotnet test (xunit): "Passed!  - Failed: 0, Passed: 42, Skipped: 0, ..."
    let xunit = Regex(@"(Passed|Failed)!\s+-\s+Failed:\s+(\d+),\s+Passed:\s+(\d+)")
    lines
    |> List.choose (fun line ->
        let e = expecto.Match line
        if e.Success then
            Some(int e.Groups[1].Value, int e.Groups[3].Value + int e.Groups[4].Value)
        else
            let x = xunit.Match line
            if x.Success then Some(int x.Groups[3].Value, int x.Groups[2].Value) else None)
    |> List.fold (fun (p, f) (p2, f2) -> p + p2, f + f2) (0, 0)

let commandExists (name: string) =
    let code, _ = run "sh" $"-c \"command -v {name} >/dev/null\"" true
    code = 0

/// Redis-backed tests start a real redis-server; install it when the machine lacks it.
let ensureRedis () =
    if not (commandExists "redis-server") then
        printfn "redis-server is missing: installing it with apt-get"
        let sudo = if Environment.UserName = "root" then "" else "sudo "
        let code, _ = run "sh" $"-c \"{sudo}apt-get update -qq && {sudo}apt-get install -y -qq redis-server >/dev/null\"" false
        if code <> 0 then printfn "warning: could not install redis-server; the Redis tests will fail"

/// PostgreSQL-backed tests start a throwaway cluster with initdb and pg_ctl; install them when the machine lacks them.
let ensurePostgres () =
    let installed = commandExists "pg_ctl" || (IO.Directory.Exists "/usr/lib/postgresql" && IO.Directory.GetDirectories "/usr/lib/postgresql" |> Array.exists (fun d -> IO.File.Exists(IO.Path.Combine(d, "bin", "initdb"))))
    if not installed then
        printfn "PostgreSQL is missing: installing it with apt-get"
        let sudo = if Environment.UserName = "root" then "" else "sudo "
        let code, _ = run "sh" $"-c \"{sudo}apt-get update -qq && {sudo}apt-get install -y -qq postgresql >/dev/null\"" false
        if code <> 0 then printfn "warning: could not install postgresql; the PostgreSQL tests will fail"

/// The libraries, each a NuGet package; samples, tests and benchmarks are not packages.
/// Sesame.Testing is the store contract suite, for authors of stores.
let libraryProjects = [ "src/Sesame.Fs"; "src/Sesame.Redis"; "src/Sesame.Postgres"; "src/Sesame.CSharpInterop"; "src/Sesame.Testing" ]

/// Packs every library, with its .snupkg symbol package, into the folder.
let packInto (folder: string) =
    for project in libraryProjects do
        exitOn (fst (run "dotnet" $"pack {project} -c Release -o \"{folder}\"" false))

/// Runs a command in a folder, echoing its output; returns its exit code.
let runAt (folder: string) (file: string) (args: string) =
    printfn "> (%s) %s %s" folder file args
    use p = Process.Start(ProcessStartInfo(file, args, WorkingDirectory = folder, UseShellExecute = false))
    p.WaitForExit()
    p.ExitCode

/// `packtest`: the packages as a user meets them.
module PackTest =
    open System.IO
    open System.IO.Compression
    open System.Net
    open System.Net.Http

    let private entries (nupkg: string) =
        use zip = ZipFile.OpenRead nupkg
        [ for e in zip.Entries -> e.FullName ]

    let private nuspecOf (nupkg: string) =
        use zip = ZipFile.OpenRead nupkg
        let entry = zip.Entries |> Seq.find (fun e -> e.FullName.EndsWith ".nuspec")
        use reader = new StreamReader(entry.Open())
        reader.ReadToEnd()

    /// What a user relies on in each package; returns the problems found (none: the packages are fine).
    let inspect (feed: string) =
        [ for project in libraryProjects do
              let id = if project = "src/Sesame.Fs" then "Sesame" else Path.GetFileName project
              let nupkg = Directory.GetFiles(feed, $"{id}.*.nupkg") |> Array.filter (fun f -> Regex.IsMatch(Path.GetFileName f, $@"^{Regex.Escape id}\.\d")) |> Array.tryExactlyOne
              match nupkg with
              | None -> yield $"{id}: no package"
              | Some nupkg ->
                  let files = entries nupkg
                  let nuspec = nuspecOf nupkg
                  printfn "%s: %s" (Path.GetFileName nupkg) (String.Join(", ", files |> List.filter (fun f -> not (f.StartsWith "_rels" || f.StartsWith "package/" || f.StartsWith "["))))
                  for dependency in Regex.Matches(nuspec, "<dependency [^>]*>") do printfn "  %s" dependency.Value
                  for repository in Regex.Matches(nuspec, "<repository [^>]*>") do printfn "  %s" repository.Value
                  if not (List.contains "README.md" files) || not (nuspec.Contains "<readme>README.md</readme>") then yield $"{id}: no README"
                  if not (List.exists (fun (f: string) -> f = $"lib/net10.0/{id}.dll") files) then yield $"{id}: no lib/net10.0/{id}.dll"
                  if not (List.exists (fun (f: string) -> f = $"lib/net10.0/{id}.xml") files) then yield $"{id}: no XML documentation"
                  if not (nuspec.Contains "<license type=\"expression\">MIT</license>") then yield $"{id}: no licence expression"
                  if not (Regex.IsMatch(nuspec, "<tags>[^<]*sesame")) then yield $"{id}: no tags"
                  if not (Regex.IsMatch(nuspec, "<repository type=\"git\" url=\"https://[^\"]+\"[^>]* commit=\"[0-9a-f]{40}\"")) then yield $"{id}: no repository URL and commit"
                  // The lowest FSharp.Core the libraries build on, so an app may use any newer one.
                  if id <> "Sesame.CSharpInterop" && not (nuspec.Contains "<dependency id=\"FSharp.Core\" version=\"6.0.0\"") then yield $"{id}: FSharp.Core dependency is not 6.0.0"
                  if id = "Sesame" && not (List.contains "buildTransitive/Sesame.targets" files) then yield "Sesame: no buildTransitive/Sesame.targets"
                  let snupkg = Path.ChangeExtension(nupkg, ".snupkg")
                  if not (File.Exists snupkg) then yield $"{id}: no symbol package"
                  elif not (List.contains $"lib/net10.0/{id}.pdb" (entries snupkg)) then yield $"{id}: symbol package without {id}.pdb" ]

    let private freePort () =
        use listener = new Sockets.TcpListener(IPAddress.Loopback, 0)
        listener.Start()
        let port = (listener.LocalEndpoint :?> IPEndPoint).Port
        listener.Stop()
        port

    /// Starts the built app on a free port, GETs its counter twice with one cookie jar; returns the two bodies.
    let private countTwice (dll: string) =
        let port = freePort ()
        let info = ProcessStartInfo("dotnet", $"\"{dll}\" --urls http://127.0.0.1:{port}", WorkingDirectory = Path.GetDirectoryName dll, UseShellExecute = false)
        info.Environment["ASPNETCORE_ENVIRONMENT"] <- "Production"
        info.Environment["Logging__LogLevel__Default"] <- "Warning"
        use app = Process.Start info
        try
            use handler = new HttpClientHandler(CookieContainer = CookieContainer())
            use client = new HttpClient(handler, Timeout = TimeSpan.FromSeconds 10.0)
            let url = $"http://127.0.0.1:{port}/"
            // Wait for the app to listen: at most 60 s.
            let deadline = DateTime.UtcNow.AddSeconds 60.0
            let mutable first = None
            while first.IsNone && DateTime.UtcNow < deadline && not app.HasExited do
                try first <- Some(client.GetStringAsync(url).GetAwaiter().GetResult())
                with :? HttpRequestException -> Threading.Thread.Sleep 250
            match first with
            | None -> Error "the app did not answer within 60 s"
            | Some first -> Ok(first, client.GetStringAsync(url).GetAwaiter().GetResult())
        finally
            if not app.HasExited then app.Kill true
            app.WaitForExit()

    let private write (path: string) (text: string) =
        Directory.CreateDirectory(Path.GetDirectoryName path) |> ignore
        File.WriteAllText(path, text)

    let private csharpApp = """using Sesame;

var builder = WebApplication.CreateBuilder(args);
builder.Services.AddSesame().AddMemoryStore();
var app = builder.Build();
app.UseSesame();
app.MapGet("/", async (HttpContext context) =>
{
    dynamic s = await context.GetDynamicSesameAsync();
    s.times = (s.times ?? 0) + 1;
    return $"{s.times} times!";
});
app.Run();
"""

    let private fsharpApp = """open System
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.DependencyInjection
open Sesame

[<EntryPoint>]
let main args =
    let builder = WebApplication.CreateBuilder args
    builder.Services.AddSesame().AddMemoryStore() |> ignore
    let app = builder.Build()
    app.UseSesame() |> ignore
    app.MapGet("/", Func<HttpContext, Task<string>>(fun ctx ->
        task {
            let! session = Session.loadAsync ctx
            let times = session |> Session.increment "times" 1m
            return $"{times} times!"
        })) |> ignore
    app.Run()
    0
"""

    let private project (package: string) (version: string) (compile: string) =
        $"""<Project Sdk="Microsoft.NET.Sdk.Web">
  <PropertyGroup>
    <TargetFramework>net10.0</TargetFramework>
    <ImplicitUsings>enable</ImplicitUsings>
    <Nullable>enable</Nullable>
  </PropertyGroup>
  <ItemGroup>
    {compile}
    <PackageReference Include="{package}" Version="{version}" />
  </ItemGroup>
</Project>
"""

    /// The satellite folders of FSharp.Core beside a built app: the cultures whose FSharp.Core.resources.dll it has.
    let private fsharpCoreCultures (bin: string) =
        Directory.GetFiles(bin, "FSharp.Core.resources.dll", SearchOption.AllDirectories)
        |> Array.map (fun f -> Path.GetFileName(Path.GetDirectoryName f))
        |> Array.sort

    let run () =
        let temp = Path.Combine(Path.GetTempPath(), "sesame-packtest-" + Guid.NewGuid().ToString("N").Substring(0, 8))
        let feed = Path.Combine(temp, "feed")
        packInto feed
        let problems = ResizeArray(inspect feed)
        let version =
            let nupkg = Directory.GetFiles(feed, "Sesame.CSharpInterop.*.nupkg") |> Array.head
            Path.GetFileNameWithoutExtension(nupkg).Substring("Sesame.CSharpInterop.".Length)
        // The packages come from the feed only; everything else from the machine's own sources (the user's
        // NuGet.Config still applies) or the local package cache. A global packages folder of its own, so no
        // package of an earlier run with the same version is taken instead of the new one.
        let cache = Path.Combine(Environment.GetFolderPath Environment.SpecialFolder.UserProfile, ".nuget", "packages")
        let cacheSource = if Directory.Exists cache then $"""<add key="local-cache" value="{cache}" />""" else ""
        write (Path.Combine(temp, "nuget.config")) $"""<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <config><add key="globalPackagesFolder" value="{Path.Combine(temp, "packages")}" /></config>
  <packageSources>
    <add key="sesame-packtest" value="{feed}" />
    {cacheSource}
  </packageSources>
</configuration>
"""
        let apps =
            [ "csharp", "C#", "CsApp.csproj", project "Sesame.CSharpInterop" version "", "Program.cs", csharpApp
              "fsharp", "F#", "FsApp.fsproj", project "Sesame" version """<Compile Include="Program.fs" />""", "Program.fs", fsharpApp ]
        for folder, language, projectFile, projectText, programFile, programText in apps do
            let dir = Path.Combine(temp, folder)
            write (Path.Combine(dir, projectFile)) projectText
            write (Path.Combine(dir, programFile)) programText
            if runAt dir "dotnet" "build -c Release" <> 0 then
                problems.Add $"the {language} app does not build on the packages"
            else
                let bin = Path.Combine(dir, "bin", "Release", "net10.0")
                let dll = Path.Combine(bin, Path.GetFileNameWithoutExtension projectFile + ".dll")
                match countTwice dll with
                | Error e -> problems.Add $"the {language} app: {e}"
                | Ok(first, second) ->
                    printfn "%s app: GET / -> %s; GET / -> %s" language first second
                    if first <> "1 times!" || second <> "2 times!" then
                        problems.Add $"the {language} app counted \"{first}\", \"{second}\" (expected \"1 times!\", \"2 times!\")"
                let cultures = fsharpCoreCultures bin
                printfn "%s app: FSharp.Core %s, FSharp.Core resource folders: %s" language
                    (Diagnostics.FileVersionInfo.GetVersionInfo(Path.Combine(bin, "FSharp.Core.dll")).FileVersion)
                    (if cultures.Length = 0 then "none" else String.Join(" ", cultures))
                if language = "C#" && cultures.Length > 0 then
                    problems.Add $"the C# app got FSharp.Core's resource folders: {String.Join(' ', cultures)}"
        if problems.Count = 0 then
            printfn "packtest: the packages and both apps are fine"
            Directory.Delete(temp, true)
            0
        else
            for p in problems do eprintfn "packtest: %s" p
            eprintfn "packtest: %d problem(s); the packages and apps are in %s" problems.Count temp
            1

/// `docs`: the API reference and the guides as a static site (fsdocs), checked in headless Chromium.
module Docs =
    open System.IO

    /// Where fsdocs reads (made from docs/ and the README) and writes.
    let input = Path.Combine(root, "artifacts", "docs-input")
    let output = Path.Combine(root, "artifacts", "docs")

    /// The repository's web address (Directory.Build.props), for links to files outside the site.
    let repositoryUrl =
        let m = Regex.Match(File.ReadAllText(Path.Combine(root, "Directory.Build.props")), "<RepositoryUrl>([^<]+)</RepositoryUrl>")
        if m.Success then m.Groups[1].Value else ""

    /// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
    let private slug (heading: string) =
        Regex.Replace(heading.Trim().ToLowerInvariant(), @"[^\p{L}\p{N} _-]", "").Replace(' ', '-')

    /// The README's `##` sections, outside code blocks: (title, lines).
    let private readmeSections () =
        let lines = File.ReadAllLines(Path.Combine(root, "README.md"))
        let sections = ResizeArray<string * ResizeArray<string>>()
        let mutable fenced = false
        for line in lines do
            if line.TrimStart().StartsWith "```" then fenced <- not fenced
            if not fenced && line.StartsWith "## " then sections.Add((line.Substring 3).Trim(), ResizeArray [ line ])
            elif sections.Count > 0 then (snd sections[sections.Count - 1]).Add line
        [ for title, body in sections -> title, List.ofSeq body ]

    /// Links of a page written for the repository, rewritten for the site: README anchors to the guide holding
    /// them, docs/*.md to their pages, other repository files to the repository's web address.
    let private relink (anchors: Map<string, string>) (text: string) =
        Regex.Replace(text, @"\]\(([^)\s]+)\)", fun m ->
            let target = m.Groups[1].Value
            let rewritten =
                if target.StartsWith "#" then
                    match anchors.TryFind(target.Substring 1) with
                    | Some page -> page
                    | None -> target
                elif target.StartsWith "http" then target
                elif target.StartsWith "docs/" && target.EndsWith ".md" then target.Substring(5).Replace(".md", ".html")
                elif target.EndsWith ".md" && not (target.Contains "/") then target.Replace(".md", ".html")
                elif target.EndsWith ".svg" && not (target.Contains "/") then target
                else
                    let path = Regex.Replace(target, @"^(\.\./|\./)+", "")
                    $"{repositoryUrl}/blob/main/{path}"
            $"]({rewritten})")

    /// Front matter fsdocs reads: the page's title and its place in the menu.
    let private frontMatter (title: string) (category: string) (categoryIndex: int) (index: int) =
        $"---\ntitle: {title}\ncategory: {category}\ncategoryindex: {categoryIndex}\nindex: {index}\n---\n"

    /// Fills artifacts/docs-input: docs/ as it is (index.md, the guides, their pictures), each README section as a page.
    let prepareInput () =
        if Directory.Exists input then Directory.Delete(input, true)
        Directory.CreateDirectory input |> ignore
        let sections = readmeSections ()
        let pageOf (title: string) = "guide-" + slug title + ".html"
        let anchors =
            Map [ for title, lines in sections do
                      let page = pageOf title
                      yield slug title, page
                      for line in lines do
                          if line.StartsWith "### " then yield slug (line.Substring 4), page ]
        sections
        |> List.iteri (fun i (title, lines) ->
            let text = frontMatter title "Guides" 1 (i + 1) + relink anchors (String.Join("\n", lines))
            File.WriteAllText(Path.Combine(input, "guide-" + slug title + ".md"), text))
        let mutable extra = sections.Length
        for file in Directory.GetFiles(Path.Combine(root, "docs")) do
            let name = Path.GetFileName file
            if name.EndsWith ".md" && name <> "index.md" then
                let text = File.ReadAllText file
                let title = Regex.Match(text, @"^# (.+)$", RegexOptions.Multiline).Groups[1].Value.Trim()
                extra <- extra + 1
                File.WriteAllText(Path.Combine(input, name), frontMatter title "Guides" 1 extra + relink anchors text)
            else File.Copy(file, Path.Combine(input, name))
        [ for title, _ in sections -> pageOf title ]

    /// Opens a page in headless Chromium; returns the DOM it built and the browser's console messages.
    let private openPage (chromium: string) (page: string) =
        let info =
            ProcessStartInfo(chromium, $"--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --enable-logging=stderr --v=0 --virtual-time-budget=5000 --dump-dom \"file://{page}\"",
                             UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true)
        use p = Process.Start info
        let dom = p.StandardOutput.ReadToEndAsync()
        let log = p.StandardError.ReadToEndAsync()
        if not (p.WaitForExit 60000) then p.Kill true
        p.WaitForExit()
        dom.Result, log.Result

    /// The problems of the built site: pages that Chromium cannot show without errors, or without their content.
    let check (guides: string list) =
        let chromium = [ "chromium"; "chromium-browser"; "google-chrome" ] |> List.tryFind commandExists
        [ match chromium with
          | None -> yield "no chromium: install it (apt-get install chromium)"
          | Some chromium ->
              // Each page, and a text it must show: the index, two guides, the API index, and API pages of both languages.
              let pages =
                  [ "index.html", "atomic write"
                    List.head guides, "Set up"
                    "write-a-store.html", "SessionStore"
                    "reference/index.html", "Sesame"
                    "reference/sesame-sessionmodule.html", "loadAsync"
                    "reference/sesame-sesamesession.html", "Increment" ]
              for page, expected in pages do
                  let path = Path.Combine(output, page)
                  if not (File.Exists path) then yield $"{page}: missing"
                  else
                      let dom, log = openPage chromium path
                      let errors =
                          log.Split('\n')
                          |> Array.filter (fun line -> line.Contains "CONSOLE" && (line.Contains "Uncaught" || line.Contains "Error") || line.Contains "ERR_FILE_NOT_FOUND")
                      printfn "chromium %s: %d characters of DOM, %d errors" page dom.Length errors.Length
                      for e in errors do yield $"{page}: {e.Trim()}"
                      if not (dom.Contains "</html>") then yield $"{page}: Chromium built no page"
                      elif not (dom.Contains expected) then yield $"{page}: does not show \"{expected}\"" ]

    /// Public API entries in the reference pages that show no documentation.
    let undocumented () =
        [ for page in Directory.GetFiles(Path.Combine(output, "reference"), "*.html") do
              let html = File.ReadAllText page
              // fsdocs writes each member and each type of a namespace as a table row: its name, then its docs.
              for row in Regex.Matches(html, @"<tr>(.*?)</tr>", RegexOptions.Singleline) do
                  let cells = Regex.Matches(row.Groups[1].Value, @"<td[^>]*>(.*?)</td>", RegexOptions.Singleline)
                  if cells.Count >= 2 then
                      let docs = Regex.Replace(cells[cells.Count - 1].Groups[1].Value, "<[^>]+>", "").Trim()
                      if docs = "" then
                          let name = Regex.Replace(cells[0].Groups[1].Value, "<[^>]+>", " ")
                          yield $"{Path.GetFileName page}: {Regex.Replace(name, @"\s+", " ").Trim()}" ]

    let run () =
        exitOn (fst (run "dotnet" "tool restore" false))
        // fsdocs reads the built assemblies and their XML documentation.
        for project in [ "src/Sesame.Testing"; "src/Sesame.Redis"; "src/Sesame.Postgres"; "src/Sesame.CSharpInterop" ] do
            exitOn (fst (run "dotnet" $"build {project} -c Release" false))
        let guides = prepareInput ()
        let projects = String.Join(" ", [ for p in libraryProjects -> Path.Combine(root, p, Path.GetFileName p + (if p.EndsWith "CSharpInterop" then ".csproj" else ".fsproj")) ])
        exitOn (fst (run "dotnet" $"fsdocs build --strict --clean --input \"{input}\" --output \"{output}\" --projects {projects} --properties Configuration=Release --parameters fsdocs-repository-link {repositoryUrl}" false))
        let missing = undocumented ()
        let problems = check guides @ [ for m in missing -> $"no documentation: {m}" ]
        if problems.IsEmpty then
            printfn "docs: %s/index.html (every public entry documented; pages open in Chromium without errors)" output
            0
        else
            for p in problems do eprintfn "docs: %s" p
            eprintfn "docs: %d problem(s)" problems.Length
            1

let args = fsi.CommandLineArgs |> Array.skip 1
let target = if args.Length = 0 then "build" else args[0]
// The arguments for the target: those after "--", or (since `dotnet fsi` may swallow the "--")
// all those after the target's name.
let rest =
    match Array.tryFindIndex ((=) "--") args with
    | Some i -> String.Join(" ", args[i + 1 ..])
    | None -> String.Join(" ", Array.skip (min 1 args.Length) args)

match target with
| "build" ->
    exitOn (fst (run "dotnet" "build Sesame.sln -c Release" false))
| "test" ->
    ensureRedis ()
    ensurePostgres ()
    exitOn (fst (run "dotnet" "build Sesame.sln -c Release" false))
    let expectoRuns =
        [ for project in expectoProjects -> project, run "dotnet" $"run --no-build -c Release --project {project} -- {plainExpecto}" true ]
    let xunitRuns =
        [ for project in xunitProjects -> project, run "dotnet" $"test {project} -c Release --no-build" true ]
    let runs = expectoRuns @ xunitRuns
    let mutable passed, failed, runnersFailed = 0, 0, 0
    for project, (code, lines) in runs do
        let p, f = countsOf lines
        printfn "%s: passed %d, failed %d, exit code %d" project p f code
        passed <- passed + p
        failed <- failed + f
        // A runner that failed, or that ran nothing, fails the build even if it counted no failure.
        if code <> 0 || p + f = 0 then runnersFailed <- runnersFailed + 1
    printfn "%d passed, %d failed" passed failed
    exit (if runnersFailed > 0 || failed > 0 || passed = 0 then 1 else 0)
| "soak" ->
    // Expecto's stress mode: the selected tests run again and again, in random order and in
    // parallel, for the given minutes; a test still running stress-timeout minutes after the end is
    // reported as a deadlock. Both programs run at once, so the soak takes the minutes given.
    let minutes =
        match Double.TryParse(rest, Globalization.NumberStyles.Float, Globalization.CultureInfo.InvariantCulture) with
        | true, m when m > 0.0 -> m
        | _ -> 5.0
    ensureRedis ()
    ensurePostgres ()
    exitOn (fst (run "dotnet" "build Sesame.sln -c Release" false))
    let soaks =
        [ for project in expectoProjects ->
              let args = $"run --no-build -c Release --project {project} -- --stress {string minutes} --stress-timeout 2 --stress-memory-limit 1000 --filter-test-case concurrent {plainExpecto}"
              printfn "> dotnet %s" args
              Process.Start(ProcessStartInfo("dotnet", args, WorkingDirectory = root, UseShellExecute = false)) ]
    for p in soaks do p.WaitForExit()
    let codes = soaks |> List.map (fun p -> p.ExitCode)
    printfn "soak of %s minutes: exit codes %A" (string minutes) codes
    exit (if List.forall ((=) 0) codes then 0 else 1)
| "bench" ->
    exitOn (fst (run "dotnet" $"run -c Release --project bench/Sesame.Benchmarks -- {rest}" false))
| "loadtest" ->
    // Sesame against ASP.NET Core Session and no session, with wrk; writes docs/performance.md (arguments after -- go to it).
    exitOn (fst (run "dotnet" $"run -c Release --project bench/Sesame.LoadTest -- {rest}" false))
| "flood" ->
    // Bounds under hostile load (bench/Sesame.FloodBench; arguments after -- go to it, e.g. `--duration 60 --rounds 2`).
    exitOn (fst (run "dotnet" "build bench/Sesame.FloodBench -c Release" false))
    exitOn (fst (run "dotnet" $"bench/Sesame.FloodBench/bin/Release/net10.0/Sesame.FloodBench.dll {rest}" false))
| "pack" ->
    packInto (IO.Path.Combine(root, "artifacts"))
| "packtest" ->
    exit (PackTest.run ())
| "docs" ->
    exit (Docs.run ())
| "sample" ->
    exitOn (fst (run "dotnet" $"run --project samples/Giraffe -- {rest}" false))
| other ->
    eprintfn "Unknown target '%s'. Targets: build, test, soak, bench, pack, packtest, docs, loadtest, flood, sample." other
    exit 2
