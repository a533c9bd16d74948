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
//   format        format every F# file (src, tests, samples, bench, this script) with Fantomas, the local tool in
//                 .config/dotnet-tools.json; settings in .editorconfig, files left alone in .fantomasignore
//   format-check  fail, listing them, if any F# file is not formatted (run in CI; changes nothing)
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
let expectoProjects =
    [ "tests/Sesame.Tests"; "tests/Sesame.Redis.Tests"; "tests/Sesame.Postgres.Tests"; "tests/Sesame.Readme.Tests"; "tests/Sesame.Browser.Tests" ]

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

/// Installs a Debian package with apt-get when what it provides is missing (the tests start real servers and a browser).
let ensurePackage (package: string) (installed: bool) (whatFails: string) =
    if not installed then
        printfn "%s is missing: installing it with apt-get" package
        let sudo = if Environment.UserName = "root" then "" else "sudo "
        let code, _ = run "sh" $"-c \"{sudo}apt-get update -qq && {sudo}apt-get install -y -qq {package} >/dev/null\"" false
        if code <> 0 then printfn "warning: could not install %s; %s will fail" package whatFails

/// Redis-backed tests start a real redis-server.
let ensureRedis () = ensurePackage "redis-server" (commandExists "redis-server") "the Redis tests"

/// PostgreSQL-backed tests start a throwaway cluster with initdb and pg_ctl.
let ensurePostgres () =
    let installed =
        commandExists "pg_ctl"
        || (IO.Directory.Exists "/usr/lib/postgresql"
            && IO.Directory.GetDirectories "/usr/lib/postgresql" |> Array.exists (fun d -> IO.File.Exists(IO.Path.Combine(d, "bin", "initdb"))))
    ensurePackage "postgresql" installed "the PostgreSQL tests"

/// The browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
let ensureChromium () = ensurePackage "chromium" (IO.File.Exists "/usr/bin/chromium") "the browser tests"

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
    open System.Net
    open System.Reflection
    open System.Reflection.Metadata
    open System.Reflection.PortableExecutable
    open System.Xml.Linq

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

    /// A guide's file name: "C#" is "csharp", not "c".
    let private pageName (title: string) = "guide-" + slug (title.Replace("#", "sharp"))

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

    /// The public types and members of an assembly, as (type's full name as XML docs write it, member name).
    let private publicApi (dll: string) =
        use pe = new PEReader(File.OpenRead dll)
        let md = pe.GetMetadataReader()
        let rec fullName (t: TypeDefinition) =
            let name = md.GetString t.Name
            if t.IsNested then fullName (md.GetTypeDefinition(t.GetDeclaringType())) + "." + name
            else (let ns = md.GetString t.Namespace in if ns = "" then name else ns + "." + name)
        let rec isPublic (t: TypeDefinition) =
            match t.Attributes &&& TypeAttributes.VisibilityMask with
            | TypeAttributes.Public -> true
            | TypeAttributes.NestedPublic | TypeAttributes.NestedFamily | TypeAttributes.NestedFamORAssem -> isPublic (md.GetTypeDefinition(t.GetDeclaringType()))
            | _ -> false
        let visible (access: MethodAttributes) =
            access = MethodAttributes.Public || access = MethodAttributes.Family || access = MethodAttributes.FamORAssem
        set [ for h in md.TypeDefinitions do
                  let t = md.GetTypeDefinition h
                  if isPublic t then
                      let name = fullName t
                      yield name, ""
                      let methodVisible (m: MethodDefinitionHandle) =
                          (not m.IsNil) && visible ((md.GetMethodDefinition m).Attributes &&& MethodAttributes.MemberAccessMask)
                      for m in t.GetMethods() do
                          if methodVisible m then yield name, md.GetString((md.GetMethodDefinition m).Name)
                      for p in t.GetProperties() do
                          let p = md.GetPropertyDefinition p
                          let a = p.GetAccessors()
                          if methodVisible a.Getter || methodVisible a.Setter then yield name, md.GetString p.Name
                      for e in t.GetEvents() do
                          let e = md.GetEventDefinition e
                          if methodVisible (e.GetAccessors().Adder) then yield name, md.GetString e.Name
                      for f in t.GetFields() do
                          let f = md.GetFieldDefinition f
                          let access = f.Attributes &&& FieldAttributes.FieldAccessMask
                          if access = FieldAttributes.Public || access = FieldAttributes.Family then yield name, md.GetString f.Name ]

    /// XML documentation as Markdown: code as code, references by their short name, paragraphs and lists kept.
    let rec private markdownOf (node: XNode) : string =
        match node with
        | :? XText as t -> Regex.Replace(t.Value, @"\s+", " ").Replace("<", "&lt;")
        | :? XElement as e ->
            let inner () = String.Concat(e.Nodes() |> Seq.map markdownOf)
            let short (cref: string) = Regex.Replace(Regex.Replace(cref.Substring(cref.IndexOf ':' + 1), @"\(.*\)$", ""), @"^.*\.(?=[^.]+$)", "").Replace("``", "`").Replace("#ctor", "constructor")
            match e.Name.LocalName with
            | "c" -> "`" + e.Value + "`"
            | "code" -> "\n\n```csharp\n" + e.Value.Trim('\n') + "\n```\n\n"
            | "para" -> "\n\n" + inner().Trim() + "\n\n"
            | "see" | "seealso" ->
                match e.Attribute(XName.Get "cref"), e.Attribute(XName.Get "langword"), e.Attribute(XName.Get "href") with
                | null, null, null -> inner ()
                | null, null, href -> "[" + (if e.Value = "" then href.Value else e.Value) + "](" + href.Value + ")"
                | null, word, _ -> "`" + word.Value + "`"
                | cref, _, _ -> if e.Value <> "" then inner () else "`" + short cref.Value + "`"
            | "paramref" | "typeparamref" -> "`" + e.Attribute(XName.Get "name").Value + "`"
            | "item" -> "\n- " + inner().Trim()
            | "list" -> "\n" + inner () + "\n\n"
            | "b" -> "**" + inner () + "**"
            | _ -> inner ()
        | _ -> ""

    /// The reference of a C# assembly as one Markdown page, from its XML documentation, public entries only.
    /// (fsdocs reads F# assemblies well, but drops C# types and async methods whose attributes take a typeof().)
    let private csharpReference (dll: string) =
        let api = publicApi dll
        let doc = XDocument.Load(Path.ChangeExtension(dll, ".xml"))
        let entries =
            [ for m in doc.Descendants(XName.Get "member") do
                  let id = m.Attribute(XName.Get "name").Value
                  let kind, name = id.Substring(0, 1), id.Substring 2
                  let withoutArgs = Regex.Replace(name, @"\(.*\)$", "")
                  if kind = "T" then
                      if api.Contains(name, "") then yield name, "", id, m
                  else
                      let cut = withoutArgs.LastIndexOf '.'
                      let typeName, memberName = withoutArgs.Substring(0, cut), withoutArgs.Substring(cut + 1)
                      let metadataName = Regex.Replace(memberName, @"``\d+$", "").Replace("#ctor", ".ctor")
                      if api.Contains(typeName, metadataName) then yield typeName, memberName, id, m ]
        let text = Text.StringBuilder()
        let add (s: string) = text.AppendLine s |> ignore
        add (frontMatter "Sesame.CSharpInterop" "C# reference" 3 1)
        add "# C# API: Sesame.CSharpInterop\n"
        add "Every public type and member of the `Sesame.CSharpInterop` package, with its documentation.\n"
        let undocumented = ResizeArray<string>()
        for typeName, members in entries |> List.groupBy (fun (t, _, _, _) -> t) |> List.sortBy fst do
            add $"## {typeName.Substring(typeName.LastIndexOf '.' + 1)}\n"
            add $"Namespace `{typeName.Substring(0, max 0 (typeName.LastIndexOf '.'))}`\n"
            for _, memberName, id, m in members do
                let section (tag: string) = m.Elements(XName.Get tag) |> Seq.map (fun e -> (markdownOf e).Trim()) |> Seq.filter ((<>) "") |> List.ofSeq
                let summary = section "summary"
                if summary.IsEmpty then undocumented.Add id
                if memberName <> "" then
                    // Get``1(System.String) as Get<T>(String): short type names, the type parameters by name.
                    let typeParameters = [| for t in m.Elements(XName.Get "typeparam") -> t.Attribute(XName.Get "name").Value |]
                    let name = Regex.Replace(memberName.Replace("#ctor", "constructor"), @"``\d+$", "<" + String.Join(", ", typeParameters) + ">")
                    let arguments = Regex.Match(id, @"\(.*\)$").Value
                    let arguments = Regex.Replace(arguments, @"\b[A-Za-z_][A-Za-z0-9_]*\.", "")
                    let arguments = Regex.Replace(arguments, @"``(\d+)", fun a -> let i = int a.Groups[1].Value in if i < typeParameters.Length then typeParameters[i] else a.Value)
                    let arguments = arguments.Replace('{', '<').Replace('}', '>')
                    add ("### `" + name + arguments + "`\n")
                for s in summary do add (s + "\n")
                for s in section "remarks" do add (s + "\n")
                for p in Seq.append (m.Elements(XName.Get "typeparam")) (m.Elements(XName.Get "param")) do
                    add ("- `" + p.Attribute(XName.Get "name").Value + "`: " + (markdownOf p).Trim())
                for r in section "returns" do add $"\n**Returns**: {r}\n"
                for e in m.Elements(XName.Get "exception") do
                    add ("- *" + e.Attribute(XName.Get "cref").Value.Substring 2 + "*: " + (markdownOf e).Trim())
                for s in section "example" do add ("\n" + s + "\n")
                add ""
        text.ToString(), List.ofSeq undocumented

    /// Fills artifacts/docs-input: docs/ as it is (index.md, the guides, their pictures), each README section as a
    /// page, the C# reference; returns the guides' pages and the undocumented C# entries.
    let prepareInput () =
        if Directory.Exists input then Directory.Delete(input, true)
        Directory.CreateDirectory input |> ignore
        let sections = readmeSections ()
        let anchors =
            Map [ for title, lines in sections do
                      let page = pageName title + ".html"
                      yield slug title, page
                      for line in lines do
                          if line.StartsWith "### " then yield slug (line.Substring 4), page ]
        sections
        |> List.iteri (fun i (title, lines) ->
            let text = frontMatter title "Guides" 1 (i + 1) + relink anchors (String.Join("\n", lines))
            File.WriteAllText(Path.Combine(input, pageName title + ".md"), text))
        let mutable extra = sections.Length
        for file in Directory.GetFiles(Path.Combine(root, "docs")) do
            let name = Path.GetFileName file
            if name.EndsWith ".md" && name <> "index.md" then
                let text = File.ReadAllText file
                let title = Regex.Match(text, @"^# (.+)$", RegexOptions.Multiline).Groups[1].Value.Trim()
                extra <- extra + 1
                File.WriteAllText(Path.Combine(input, name), frontMatter title "In depth" 2 extra + relink anchors text)
            else File.Copy(file, Path.Combine(input, name))
        // Pictures in folders (img/: the logo).
        for dir in Directory.GetDirectories(Path.Combine(root, "docs")) do
            let target = Path.Combine(input, Path.GetFileName dir)
            Directory.CreateDirectory target |> ignore
            for file in Directory.GetFiles dir do File.Copy(file, Path.Combine(target, Path.GetFileName file))
        let csharp, undocumented = csharpReference (Path.Combine(root, "src/Sesame.CSharpInterop/bin/Release/net10.0/Sesame.CSharpInterop.dll"))
        File.WriteAllText(Path.Combine(input, "csharp-api.md"), csharp)
        [ for title, _ in sections -> pageName title + ".html" ], undocumented

    /// Serves the site on a free loopback port while the check runs; records the paths it could not find.
    let private serve (site: string) (missing: Collections.Concurrent.ConcurrentBag<string>) =
        let port = (let l = new Sockets.TcpListener(IPAddress.Loopback, 0) in l.Start(); let p = (l.LocalEndpoint :?> IPEndPoint).Port in l.Stop(); p)
        let listener = new HttpListener()
        listener.Prefixes.Add $"http://127.0.0.1:{port}/"
        listener.Start()
        let types = dict [ ".html", "text/html"; ".css", "text/css"; ".js", "text/javascript"; ".json", "application/json"; ".svg", "image/svg+xml"; ".ico", "image/x-icon"; ".png", "image/png"; ".md", "text/markdown" ]
        let rec loop () =
            task {
                let! context = listener.GetContextAsync()
                let path = Uri.UnescapeDataString(context.Request.Url.AbsolutePath).TrimStart('/')
                let file = Path.Combine(site, (if path = "" || path.EndsWith "/" then path + "index.html" else path))
                if File.Exists file then
                    context.Response.ContentType <- (match types.TryGetValue(Path.GetExtension file) with | true, t -> t | _ -> "application/octet-stream")
                    let bytes = File.ReadAllBytes file
                    do! context.Response.OutputStream.WriteAsync(bytes, 0, bytes.Length)
                else
                    missing.Add path
                    context.Response.StatusCode <- 404
                context.Response.Close()
                return! loop ()
            }
        loop () |> ignore
        listener, $"http://127.0.0.1:{port}/"

    /// Opens a page in headless Chromium; returns the DOM it built and the browser's log.
    let private openPage (chromium: string) (url: string) =
        let info =
            ProcessStartInfo(chromium, $"--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --enable-logging=stderr --v=0 --virtual-time-budget=5000 --dump-dom {url}",
                             UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true)
        use p = Process.Start info
        let dom = p.StandardOutput.ReadToEndAsync()
        let log = p.StandardError.ReadToEndAsync()
        if not (p.WaitForExit 60000) then p.Kill true
        p.WaitForExit()
        dom.Result, log.Result

    /// The problems of the built site: pages that Chromium cannot show without errors, or without their content,
    /// and files they ask for that the site lacks.
    let check (guides: string list) =
        let chromium = [ "chromium"; "chromium-browser"; "google-chrome" ] |> List.tryFind commandExists
        [ match chromium with
          | None -> yield "no chromium: install it (apt-get install chromium)"
          | Some chromium ->
              let missing = Collections.Concurrent.ConcurrentBag<string>()
              let listener, site = serve output missing
              try
                  // Each page, and a text it must show: the index, guides, the API index, API pages of each library.
                  let pages =
                      [ "index.html", "atomic write"
                        List.head guides, "Set up"
                        "guide-redis.html", "Redis Cluster"
                        "write-a-store.html", "SessionStore"
                        "reference/index.html", "Sesame.Testing"
                        "reference/sesame-sessionmodule.html", "Adds a value"
                        "reference/sesame-redis-redisstore.html", "Redis"
                        "csharp-api.html", "GetDynamicSesameAsync" ]
                  for page, expected in pages do
                      let dom, log = openPage chromium (site + page)
                      let errors =
                          log.Split('\n')
                          |> Array.filter (fun line -> line.Contains ":CONSOLE" && (line.Contains "Uncaught" || line.IndexOf("error", StringComparison.OrdinalIgnoreCase) >= 0))
                      printfn "chromium %s: %d characters of DOM, %d errors" page dom.Length errors.Length
                      for e in errors do yield $"{page}: {e.Trim()}"
                      if not (dom.Contains "</html>") then yield $"{page}: Chromium built no page"
                      elif not (dom.Contains expected) then yield $"{page}: does not show \"{expected}\""
              finally
                  listener.Stop()
              for path in Seq.distinct missing do yield $"the site lacks {path}" ]

    /// Public API entries in the reference pages that show no documentation. Left out, as not written in the
    /// source: the members a type inherits (documented on the base type), the members of the type an abbreviation
    /// stands for, the Is* properties F# generates for union cases, the fields of records whose representation is
    /// private (lower-case names: fsdocs lists them anyway), and constructors, whose documentation in F# is the type's.
    let undocumented () =
        [ for page in Directory.GetFiles(Path.Combine(output, "reference"), "*.html") do
              let html = File.ReadAllText page
              let html = match html.IndexOf "Inherited members" with -1 -> html | i -> html.Substring(0, i)
              if not (html.Contains "Abbreviation For:") then
                  let isUnion = html.Contains "Union cases"
                  // The page's sections, each under its <h3> heading ("Constructors", "Record fields", ...).
                  let sections = Regex.Split(html, @"<h3>\s*")
                  for section in sections do
                      let heading = section.Substring(0, max 0 (section.IndexOf '<')).Trim()
                      if heading <> "Constructors" then
                          // fsdocs writes each type of a namespace and each member of a type as a table row: its name,
                          // then a cell with its docs (the summary comes before the row of icon buttons).
                          for row in Regex.Matches(section, @"<tr>(.*?)</tr>", RegexOptions.Singleline) do
                              let cell = Regex.Match(row.Groups[1].Value, @"<td class=""fsdocs-(member|entity)-xmldoc"">(.*?)</td>", RegexOptions.Singleline)
                              if cell.Success then
                                  let docs = cell.Groups[2].Value
                                  let docs = match docs.IndexOf "<div class=\"icon-button-row\"" with -1 -> docs | i -> docs.Substring(0, i)
                                  let name = Regex.Match(row.Groups[1].Value, @"<td[^>]*>(.*?)</td>", RegexOptions.Singleline).Groups[1].Value
                                  let name = Regex.Replace(Regex.Replace(name, "<div popover.*", "", RegexOptions.Singleline), "<[^>]+>", " ")
                                  let name = Regex.Replace(name, @"\s+", " ").Trim()
                                  let generated =
                                      (isUnion && Regex.IsMatch(name, @"^this\.Is[A-Z]"))
                                      || (heading = "Record fields" && name.Length > 0 && Char.IsLower name[0])
                                  if not generated && Regex.Replace(docs, "<[^>]+>", "").Trim() = "" then
                                      yield $"{Path.GetFileName page}: {name}" ]

    /// Runs fsdocs; returns its exit code and the entities it could not read (it drops those from the site).
    let private fsdocs (args: string) =
        printfn "> dotnet fsdocs %s" args
        let info = ProcessStartInfo("dotnet", "fsdocs " + args, WorkingDirectory = root, UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true)
        use p = Process.Start info
        let dropped = Collections.Concurrent.ConcurrentBag<string>()
        let echo (line: string) =
            if not (isNull line) then
                if line.StartsWith "Could not read" then dropped.Add line
                if not (line.StartsWith "   at ") then Console.WriteLine line
        p.OutputDataReceived.Add(fun e -> echo e.Data)
        p.ErrorDataReceived.Add(fun e -> echo e.Data)
        p.BeginOutputReadLine()
        p.BeginErrorReadLine()
        p.WaitForExit()
        p.ExitCode, List.ofSeq dropped

    /// Builds the site; the root it is served from is the argument (default "/": the root of a web server).
    let run (siteRoot: string) =
        exitOn (fst (run "dotnet" "tool restore" false))
        // fsdocs reads the built assemblies and their XML documentation.
        for project in [ "src/Sesame.Testing"; "src/Sesame.Redis"; "src/Sesame.Postgres"; "src/Sesame.CSharpInterop" ] do
            exitOn (fst (run "dotnet" $"build {project} -c Release" false))
        let guides, csharpUndocumented = prepareInput ()
        let projects =
            [ "src/Sesame.Fs/Sesame.Fs.fsproj"; "src/Sesame.Redis/Sesame.Redis.fsproj"; "src/Sesame.Postgres/Sesame.Postgres.fsproj"; "src/Sesame.Testing/Sesame.Testing.fsproj" ]
            |> List.map (fun p -> "\"" + Path.Combine(root, p) + "\"")
        let code, dropped =
            fsdocs $"build --strict --clean --input \"{input}\" --output \"{output}\" --projects {String.Join(' ', projects)} --properties Configuration=Release --parameters root {siteRoot} fsdocs-repository-link {repositoryUrl} fsdocs-logo-src img/logo.svg fsdocs-favicon-src img/logo.svg fsdocs-collection-name Sesame fsdocs-license-link https://licenses.nuget.org/MIT"
        if code <> 0 then exit code
        let problems =
            [ for d in dropped -> $"fsdocs left out {d}" ]
            @ [ for m in undocumented () -> $"no documentation: {m}" ]
            @ [ for m in csharpUndocumented -> $"no documentation: {m}" ]
            @ check guides
        if problems.IsEmpty then
            printfn "docs: %s (every public entry documented; pages open in Chromium without errors)" output
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
    ensureChromium ()
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
    ensurePostgres ()
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
    exit (Docs.run (if rest = "" then "/" else rest))
| "sample" ->
    exitOn (fst (run "dotnet" $"run --project samples/Giraffe -- {rest}" false))
| "format"
| "format-check" ->
    // Fantomas takes its settings from .editorconfig and skips what .fantomasignore names.
    let sources = "src tests samples bench build.fsx"
    exitOn (fst (run "dotnet" "tool restore" false))
    if target = "format" then
        exitOn (fst (run "dotnet" $"fantomas {sources}" false))
    else
        // Exit code 0: all formatted; 99: some files need formatting (Fantomas lists them); anything else: an error,
        // such as a file Fantomas cannot parse (also listed).
        let code, _ = run "dotnet" $"fantomas --check {sources}" false
        if code = 99 then
            eprintfn "The F# files listed above are not formatted. Run `dotnet fsi build.fsx format` and commit the result."
            exit 1
        elif code <> 0 then
            eprintfn "Fantomas failed (exit code %d) on the files listed above." code
            exit 1
| other ->
    eprintfn "Unknown target '%s'. Targets: build, test, soak, bench, pack, packtest, docs, loadtest, flood, sample, format, format-check." other
    exit 2
