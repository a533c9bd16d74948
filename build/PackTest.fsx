/// `packtest`: the packages as a user meets them.
module PackTest

#load "Shell.fsx"

open System
open System.Diagnostics
open System.Text.RegularExpressions
open Shell
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
let inspect (feed: string) = [
    for project in libraryProjects do
        let id = if project = "src/Sesame.Fs" then "Sesame" else Path.GetFileName project
        let nupkg =
            Directory.GetFiles(feed, $"{id}.*.nupkg")
            |> Array.filter (fun f -> Regex.IsMatch(Path.GetFileName f, $@"^{Regex.Escape id}\.\d"))
            |> Array.tryExactlyOne
        match nupkg with
        | None -> yield $"{id}: no package"
        | Some nupkg ->
            let files = entries nupkg
            let nuspec = nuspecOf nupkg
            printfn
                "%s: %s"
                (Path.GetFileName nupkg)
                (String.Join(", ", files |> List.filter (fun f -> not (f.StartsWith "_rels" || f.StartsWith "package/" || f.StartsWith "["))))
            for dependency in Regex.Matches(nuspec, "<dependency [^>]*>") do
                printfn "  %s" dependency.Value
            for repository in Regex.Matches(nuspec, "<repository [^>]*>") do
                printfn "  %s" repository.Value
            if not (List.contains "README.md" files) || not (nuspec.Contains "<readme>README.md</readme>") then yield $"{id}: no README"
            if not (List.exists (fun (f: string) -> f = $"lib/net10.0/{id}.dll") files) then yield $"{id}: no lib/net10.0/{id}.dll"
            if not (List.exists (fun (f: string) -> f = $"lib/net10.0/{id}.xml") files) then yield $"{id}: no XML documentation"
            if not (nuspec.Contains "<license type=\"expression\">MIT</license>") then yield $"{id}: no licence expression"
            if not (Regex.IsMatch(nuspec, "<tags>[^<]*sesame")) then yield $"{id}: no tags"
            if not (Regex.IsMatch(nuspec, "<repository type=\"git\" url=\"https://[^\"]+\"[^>]* commit=\"[0-9a-f]{40}\"")) then
                yield $"{id}: no repository URL and commit"
            // The lowest FSharp.Core the libraries build on, so an app may use any newer one.
            if id <> "Sesame.CSharpInterop" && not (nuspec.Contains "<dependency id=\"FSharp.Core\" version=\"6.0.0\"") then
                yield $"{id}: FSharp.Core dependency is not 6.0.0"
            if id = "Sesame" && not (List.contains "buildTransitive/Sesame.targets" files) then yield "Sesame: no buildTransitive/Sesame.targets"
            let snupkg = Path.ChangeExtension(nupkg, ".snupkg")
            if not (File.Exists snupkg) then yield $"{id}: no symbol package"
            elif not (List.contains $"lib/net10.0/{id}.pdb" (entries snupkg)) then yield $"{id}: symbol package without {id}.pdb"
]

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
            try
                first <- Some(client.GetStringAsync(url).GetAwaiter().GetResult())
            with :? HttpRequestException ->
                Threading.Thread.Sleep 250
        match first with
        | None -> Error "the app did not answer within 60 s"
        | Some first -> Ok(first, client.GetStringAsync(url).GetAwaiter().GetResult())
    finally
        if not app.HasExited then app.Kill true
        app.WaitForExit()

let private write (path: string) (text: string) =
    Directory.CreateDirectory(Path.GetDirectoryName path) |> ignore
    File.WriteAllText(path, text)

let private csharpApp =
    """using Sesame;

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

let private fsharpApp =
    """open System
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
    write
        (Path.Combine(temp, "nuget.config"))
        $"""<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <config><add key="globalPackagesFolder" value="{Path.Combine(temp, "packages")}" /></config>
  <packageSources>
    <add key="sesame-packtest" value="{feed}" />
    {cacheSource}
  </packageSources>
</configuration>
"""
    let apps = [
        "csharp", "C#", "CsApp.csproj", project "Sesame.CSharpInterop" version "", "Program.cs", csharpApp
        "fsharp", "F#", "FsApp.fsproj", project "Sesame" version """<Compile Include="Program.fs" />""", "Program.fs", fsharpApp
    ]
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
            printfn
                "%s app: FSharp.Core %s, FSharp.Core resource folders: %s"
                language
                (Diagnostics.FileVersionInfo.GetVersionInfo(Path.Combine(bin, "FSharp.Core.dll")).FileVersion)
                (if cultures.Length = 0 then "none" else String.Join(" ", cultures))
            if language = "C#" && cultures.Length > 0 then problems.Add $"the C# app got FSharp.Core's resource folders: {String.Join(' ', cultures)}"
    if problems.Count = 0 then
        printfn "packtest: the packages and both apps are fine"
        Directory.Delete(temp, true)
        0
    else
        for p in problems do
            eprintfn "packtest: %s" p
        eprintfn "packtest: %d problem(s); the packages and apps are in %s" problems.Count temp
        1
