/// `docs`: the API reference and the guides as a static site (fsdocs), checked in headless Chromium.
module Docs

#load "Shell.fsx"

open System
open System.Diagnostics
open System.Text.RegularExpressions
open Shell
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
let private slug (heading: string) = Regex.Replace(heading.Trim().ToLowerInvariant(), @"[^\p{L}\p{N} _-]", "").Replace(' ', '-')

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
    Regex.Replace(
        text,
        @"\]\(([^)\s]+)\)",
        fun m ->
            let target = m.Groups[1].Value
            let rewritten =
                if target.StartsWith "#" then
                    match anchors.TryFind(target.Substring 1) with
                    | Some page -> page
                    | None -> target
                elif target.StartsWith "http" then
                    target
                elif target.StartsWith "docs/" && target.EndsWith ".md" then
                    target.Substring(5).Replace(".md", ".html")
                elif target.EndsWith ".md" && not (target.Contains "/") then
                    target.Replace(".md", ".html")
                elif target.EndsWith ".svg" && not (target.Contains "/") then
                    target
                else
                    let path = Regex.Replace(target, @"^(\.\./|\./)+", "")
                    $"{repositoryUrl}/blob/main/{path}"
            $"]({rewritten})"
    )

/// Front matter fsdocs reads: the page's title and its place in the menu.
let private frontMatter (title: string) (category: string) (categoryIndex: int) (index: int) =
    $"---\ntitle: {title}\ncategory: {category}\ncategoryindex: {categoryIndex}\nindex: {index}\n---\n"

/// The public types and members of an assembly, as (type's full name as XML docs write it, member name).
let private publicApi (dll: string) =
    use pe = new PEReader(File.OpenRead dll)
    let md = pe.GetMetadataReader()
    let rec fullName (t: TypeDefinition) =
        let name = md.GetString t.Name
        if t.IsNested then
            fullName (md.GetTypeDefinition(t.GetDeclaringType())) + "." + name
        else
            (let ns = md.GetString t.Namespace in if ns = "" then name else ns + "." + name)
    let rec isPublic (t: TypeDefinition) =
        match t.Attributes &&& TypeAttributes.VisibilityMask with
        | TypeAttributes.Public -> true
        | TypeAttributes.NestedPublic
        | TypeAttributes.NestedFamily
        | TypeAttributes.NestedFamORAssem -> isPublic (md.GetTypeDefinition(t.GetDeclaringType()))
        | _ -> false
    let visible (access: MethodAttributes) = access = MethodAttributes.Public || access = MethodAttributes.Family || access = MethodAttributes.FamORAssem
    set [
        for h in md.TypeDefinitions do
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
                    if access = FieldAttributes.Public || access = FieldAttributes.Family then yield name, md.GetString f.Name
    ]

/// XML documentation as Markdown: code as code, references by their short name, paragraphs and lists kept.
let rec private markdownOf (node: XNode) : string =
    match node with
    | :? XText as t -> Regex.Replace(t.Value, @"\s+", " ").Replace("<", "&lt;")
    | :? XElement as e ->
        let inner () = String.Concat(e.Nodes() |> Seq.map markdownOf)
        let short (cref: string) =
            Regex
                .Replace(Regex.Replace(cref.Substring(cref.IndexOf ':' + 1), @"\(.*\)$", ""), @"^.*\.(?=[^.]+$)", "")
                .Replace("``", "`")
                .Replace("#ctor", "constructor")
        match e.Name.LocalName with
        | "c" -> "`" + e.Value + "`"
        | "code" -> "\n\n```csharp\n" + e.Value.Trim('\n') + "\n```\n\n"
        | "para" -> "\n\n" + inner().Trim() + "\n\n"
        | "see"
        | "seealso" ->
            match e.Attribute(XName.Get "cref"), e.Attribute(XName.Get "langword"), e.Attribute(XName.Get "href") with
            | null, null, null -> inner ()
            | null, null, href -> "[" + (if e.Value = "" then href.Value else e.Value) + "](" + href.Value + ")"
            | null, word, _ -> "`" + word.Value + "`"
            | cref, _, _ -> if e.Value <> "" then inner () else "`" + short cref.Value + "`"
        | "paramref"
        | "typeparamref" -> "`" + e.Attribute(XName.Get "name").Value + "`"
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
    let entries = [
        for m in doc.Descendants(XName.Get "member") do
            let id = m.Attribute(XName.Get "name").Value
            let kind, name = id.Substring(0, 1), id.Substring 2
            let withoutArgs = Regex.Replace(name, @"\(.*\)$", "")
            if kind = "T" then
                if api.Contains(name, "") then yield name, "", id, m
            else
                let cut = withoutArgs.LastIndexOf '.'
                let typeName, memberName = withoutArgs.Substring(0, cut), withoutArgs.Substring(cut + 1)
                let metadataName = Regex.Replace(memberName, @"``\d+$", "").Replace("#ctor", ".ctor")
                if api.Contains(typeName, metadataName) then yield typeName, memberName, id, m
    ]
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
                let arguments =
                    Regex.Replace(
                        arguments,
                        @"``(\d+)",
                        fun a -> let i = int a.Groups[1].Value in if i < typeParameters.Length then typeParameters[i] else a.Value
                    )
                let arguments = arguments.Replace('{', '<').Replace('}', '>')
                add ("### `" + name + arguments + "`\n")
            for s in summary do
                add (s + "\n")
            for s in section "remarks" do
                add (s + "\n")
            for p in Seq.append (m.Elements(XName.Get "typeparam")) (m.Elements(XName.Get "param")) do
                add ("- `" + p.Attribute(XName.Get "name").Value + "`: " + (markdownOf p).Trim())
            for r in section "returns" do
                add $"\n**Returns**: {r}\n"
            for e in m.Elements(XName.Get "exception") do
                add ("- *" + e.Attribute(XName.Get "cref").Value.Substring 2 + "*: " + (markdownOf e).Trim())
            for s in section "example" do
                add ("\n" + s + "\n")
            add ""
    text.ToString(), List.ofSeq undocumented

/// Fills artifacts/docs-input: docs/ as it is (index.md, the guides, their pictures), each README section as a
/// page, the C# reference; returns the guides' pages and the undocumented C# entries.
let prepareInput () =
    if Directory.Exists input then Directory.Delete(input, true)
    Directory.CreateDirectory input |> ignore
    let sections = readmeSections ()
    let anchors =
        Map [
            for title, lines in sections do
                let page = pageName title + ".html"
                yield slug title, page
                for line in lines do
                    if line.StartsWith "### " then yield slug (line.Substring 4), page
        ]
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
        else
            File.Copy(file, Path.Combine(input, name))
    // Pictures in folders (img/: the logo).
    for dir in Directory.GetDirectories(Path.Combine(root, "docs")) do
        let target = Path.Combine(input, Path.GetFileName dir)
        Directory.CreateDirectory target |> ignore
        for file in Directory.GetFiles dir do
            File.Copy(file, Path.Combine(target, Path.GetFileName file))
    let csharp, undocumented = csharpReference (Path.Combine(root, "src/Sesame.CSharpInterop/bin/Release/net10.0/Sesame.CSharpInterop.dll"))
    File.WriteAllText(Path.Combine(input, "csharp-api.md"), csharp)
    [ for title, _ in sections -> pageName title + ".html" ], undocumented

/// Serves the site on a free loopback port while the check runs; records the paths it could not find.
let private serve (site: string) (missing: Collections.Concurrent.ConcurrentBag<string>) =
    let port =
        (let l = new Sockets.TcpListener(IPAddress.Loopback, 0) in
         l.Start()
         let p = (l.LocalEndpoint :?> IPEndPoint).Port in
         l.Stop()
         p)
    let listener = new HttpListener()
    listener.Prefixes.Add $"http://127.0.0.1:{port}/"
    listener.Start()
    let types =
        dict [
            ".html", "text/html"
            ".css", "text/css"
            ".js", "text/javascript"
            ".json", "application/json"
            ".svg", "image/svg+xml"
            ".ico", "image/x-icon"
            ".png", "image/png"
            ".md", "text/markdown"
        ]
    let rec loop () = task {
        let! context = listener.GetContextAsync()
        let path = Uri.UnescapeDataString(context.Request.Url.AbsolutePath).TrimStart('/')
        let file = Path.Combine(site, (if path = "" || path.EndsWith "/" then path + "index.html" else path))
        if File.Exists file then
            context.Response.ContentType <-
                (match types.TryGetValue(Path.GetExtension file) with
                 | true, t -> t
                 | _ -> "application/octet-stream")
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
        ProcessStartInfo(
            chromium,
            $"--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --enable-logging=stderr --v=0 --virtual-time-budget=5000 --dump-dom {url}",
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true
        )
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
    [
        match chromium with
        | None -> yield "no chromium: install it (apt-get install chromium)"
        | Some chromium ->
            let missing = Collections.Concurrent.ConcurrentBag<string>()
            let listener, site = serve output missing
            try
                // Each page, and a text it must show: the index, guides, the API index, API pages of each library.
                let pages = [
                    "index.html", "atomic write"
                    List.head guides, "Set up"
                    "guide-redis.html", "Redis Cluster"
                    "write-a-store.html", "SessionStore"
                    "reference/index.html", "Sesame.Testing"
                    "reference/sesame-sessionmodule.html", "Adds a value"
                    "reference/sesame-redis-redisstore.html", "Redis"
                    "csharp-api.html", "GetDynamicSesameAsync"
                ]
                for page, expected in pages do
                    let dom, log = openPage chromium (site + page)
                    let errors =
                        log.Split('\n')
                        |> Array.filter (fun line ->
                            line.Contains ":CONSOLE" && (line.Contains "Uncaught" || line.IndexOf("error", StringComparison.OrdinalIgnoreCase) >= 0))
                    printfn "chromium %s: %d characters of DOM, %d errors" page dom.Length errors.Length
                    for e in errors do
                        yield $"{page}: {e.Trim()}"
                    if not (dom.Contains "</html>") then yield $"{page}: Chromium built no page"
                    elif not (dom.Contains expected) then yield $"{page}: does not show \"{expected}\""
            finally
                listener.Stop()
            for path in Seq.distinct missing do
                yield $"the site lacks {path}"
    ]

/// Public API entries in the reference pages that show no documentation. Left out, as not written in the
/// source: the members a type inherits (documented on the base type), the members of the type an abbreviation
/// stands for, the Is* properties F# generates for union cases, the fields of records whose representation is
/// private (lower-case names: fsdocs lists them anyway), and constructors, whose documentation in F# is the type's.
let undocumented () = [
    for page in Directory.GetFiles(Path.Combine(output, "reference"), "*.html") do
        let html = File.ReadAllText page
        let html =
            match html.IndexOf "Inherited members" with
            | -1 -> html
            | i -> html.Substring(0, i)
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
                            let docs =
                                match docs.IndexOf "<div class=\"icon-button-row\"" with
                                | -1 -> docs
                                | i -> docs.Substring(0, i)
                            let name = Regex.Match(row.Groups[1].Value, @"<td[^>]*>(.*?)</td>", RegexOptions.Singleline).Groups[1].Value
                            let name = Regex.Replace(Regex.Replace(name, "<div popover.*", "", RegexOptions.Singleline), "<[^>]+>", " ")
                            let name = Regex.Replace(name, @"\s+", " ").Trim()
                            let generated =
                                (isUnion && Regex.IsMatch(name, @"^this\.Is[A-Z]")) || (heading = "Record fields" && name.Length > 0 && Char.IsLower name[0])
                            if not generated && Regex.Replace(docs, "<[^>]+>", "").Trim() = "" then yield $"{Path.GetFileName page}: {name}"
]

/// Runs fsdocs; returns its exit code and the entities it could not read (it drops those from the site).
let private fsdocs (args: string) =
    printfn "> dotnet fsdocs %s" args
    let info =
        ProcessStartInfo(
            "dotnet",
            "fsdocs " + args,
            WorkingDirectory = root,
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true
        )
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
        [
            "src/Sesame.Fs/Sesame.Fs.fsproj"
            "src/Sesame.Redis/Sesame.Redis.fsproj"
            "src/Sesame.Postgres/Sesame.Postgres.fsproj"
            "src/Sesame.Testing/Sesame.Testing.fsproj"
        ]
        |> List.map (fun p -> "\"" + Path.Combine(root, p) + "\"")
    let code, dropped =
        fsdocs
            $"build --strict --clean --input \"{input}\" --output \"{output}\" --projects {String.Join(' ', projects)} --properties Configuration=Release --parameters root {siteRoot} fsdocs-repository-link {repositoryUrl} fsdocs-logo-src img/logo.svg fsdocs-favicon-src img/logo.svg fsdocs-collection-name Sesame fsdocs-license-link https://licenses.nuget.org/MIT"
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
        for p in problems do
            eprintfn "docs: %s" p
        eprintfn "docs: %d problem(s)" problems.Length
        1
