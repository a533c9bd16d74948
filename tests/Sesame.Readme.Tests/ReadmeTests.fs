/// Every ```fsharp and ```csharp block of the README (and of the guides in docs/) compiles: each must appear
/// verbatim in a snippet of this project (Snippets.fs) or of the C# one (../Sesame.Readme.Tests.CSharp/Snippets.cs),
/// which the build compiles against the current API. So the documentation and the compiled code cannot drift.
///
/// A snippet is the code between `// readme: <name>` and `// readme end`; several parts with the same name (say a
/// type at the top of the file and the code using it inside a function) join, in order, into one. Indentation is
/// compared relative to each part's least indented line, so a fragment may sit inside a function. A block whose
/// fence names more than its language (```fsharp saturn) is documentation only, not compiled: say why beside it.
module Sesame.Readme.Tests.ReadmeTests

open System
open System.IO
open System.Text.RegularExpressions
open Expecto

/// The documents whose code blocks must compile, relative to the repository root.
let documents = [ "README.md" ]

/// The folders holding the compiled snippets, relative to the repository root.
let snippetFolders = [ Path.Combine("tests", "Sesame.Readme.Tests"); Path.Combine("tests", "Sesame.Readme.Tests.CSharp") ]

/// A fenced code block of a document.
type Block = {
    Document: string
    /// The line of the opening fence (1-based).
    Line: int
    Language: string
    /// What follows the language on the fence (a block with anything there is not compiled).
    Marker: string
    Text: string
}

/// The repository root: the folder holding Sesame.sln, above the test program's folder.
let repositoryRoot () =
    let rec up (folder: DirectoryInfo) =
        match folder with
        | null -> failwith $"No folder with Sesame.sln above {AppContext.BaseDirectory}: run the README tests from a build inside the repository."
        | folder when File.Exists(Path.Combine(folder.FullName, "Sesame.sln")) -> folder.FullName
        | folder -> up folder.Parent
    up (DirectoryInfo AppContext.BaseDirectory)

/// Removes the indentation the lines share and trailing spaces (blank lines stay, as blank).
let dedent (lines: string list) =
    let lines = lines |> List.map (fun line -> line.TrimEnd())
    let indents = lines |> List.filter (fun line -> line <> "") |> List.map (fun line -> line.Length - line.TrimStart().Length)
    let common = if indents.IsEmpty then 0 else List.min indents
    lines |> List.map (fun line -> if line = "" then "" else line.Substring common)

/// Joins lines, without the blank lines at either end.
let joinTrimmed (lines: string list) =
    let isBlank (line: string) = line = ""
    lines |> List.skipWhile isBlank |> List.rev |> List.skipWhile isBlank |> List.rev |> String.concat "\n"

let private fence = Regex(@"^\s*```\s*(\w+)\s*(.*)$")
let private closing = Regex(@"^\s*```\s*$")

/// The code blocks of a markdown text in a language the check knows (fsharp, csharp).
let blocksOf (document: string) (text: string) : Block list =
    let lines = text.Replace("\r\n", "\n").Split '\n'
    [
        let mutable i = 0
        while i < lines.Length do
            let opening = fence.Match lines[i]
            if opening.Success then
                let first = i
                i <- i + 1
                let body = ResizeArray()
                while i < lines.Length && not (closing.IsMatch lines[i]) do
                    body.Add lines[i]
                    i <- i + 1
                let language = opening.Groups[1].Value
                if language = "fsharp" || language = "csharp" then
                    yield {
                        Document = document
                        Line = first + 1
                        Language = language
                        Marker = opening.Groups[2].Value.Trim()
                        Text = joinTrimmed (dedent (List.ofSeq body))
                    }
            i <- i + 1
    ]

let private regionStart = Regex(@"^\s*// readme: (\S+)\s*$")
let private regionEnd = Regex(@"^\s*// readme end\s*$")

/// The snippets of a source file: name → parts, each dedented on its own.
let snippetsOf (path: string) (text: string) : (string * string list) list =
    let lines = text.Replace("\r\n", "\n").Split '\n'
    [
        let mutable i = 0
        while i < lines.Length do
            let start = regionStart.Match lines[i]
            if start.Success then
                let name = start.Groups[1].Value
                let from = i + 1
                i <- i + 1
                while i < lines.Length && not (regionEnd.IsMatch lines[i]) do
                    if regionStart.IsMatch lines[i] then failwith $"{path}:{i + 1}: a snippet starts inside snippet '{name}' (close it with // readme end)."
                    i <- i + 1
                if i = lines.Length then failwith $"{path}:{from}: snippet '{name}' has no // readme end."
                yield name, dedent (List.ofArray lines[from .. i - 1])
            i <- i + 1
    ]

/// Every snippet of the given language (".fs" or ".cs"), its parts joined in file order.
let snippets (root: string) (extension: string) : Map<string, string> =
    snippetFolders
    |> List.collect (fun folder ->
        Directory.GetFiles(Path.Combine(root, folder), "*" + extension, SearchOption.AllDirectories)
        |> Array.filter (fun path ->
            let relative = Path.GetRelativePath(root, path).Replace('\\', '/')
            not (relative.Contains "/obj/" || relative.Contains "/bin/"))
        |> Array.sort
        |> Array.toList
        |> List.collect (fun path -> snippetsOf path (File.ReadAllText path)))
    |> List.groupBy fst
    |> List.map (fun (name, parts) -> name, joinTrimmed (parts |> List.collect snd))
    |> Map.ofList

let private describe (block: Block) =
    let head = block.Text.Split '\n' |> Array.truncate 3 |> Array.map (fun line -> "    " + line) |> String.concat "\n"
    $"{block.Document}:{block.Line} (```{block.Language})" + $", which starts:\n{head}"

let private blockTest (root: string) (block: Block) = test $"{block.Document}:{block.Line} ({block.Language}) compiles" {
    let extension = if block.Language = "fsharp" then ".fs" else ".cs"
    let compiled = snippets root extension
    let found = compiled |> Map.exists (fun _ text -> text = block.Text)
    if not found then
        let folders = String.concat " or " snippetFolders
        failtest (
            $"The code block at {describe block}\nis not, verbatim, a snippet of {folders}, so nothing shows it compiles.\n"
            + $"Copy it into a {extension} file there between `// readme: <name>` and `// readme end` (inside a function if it is a fragment), "
            + "or change the block to match the snippet (see tests/Sesame.Readme.Tests/ReadmeTests.fs)."
        )
}

[<Tests>]
let tests =
    let root = repositoryRoot ()
    let blocks = documents |> List.collect (fun document -> blocksOf document (File.ReadAllText(Path.Combine(root, document))))
    let compiled, documentationOnly = blocks |> List.partition (fun block -> block.Marker = "")
    testList "Readme" [
        test "the documents have code blocks to check" {
            // A parser that found nothing would pass every check: the README has many more than this.
            Expect.isGreaterThan compiled.Length 20 "fsharp and csharp blocks found in the documents"
        }
        test "documentation-only blocks are the Saturn ones" {
            // Blocks left out of the check are the exception, each for a stated reason: Saturn is not served here.
            for block in documentationOnly do
                Expect.equal
                    block.Marker
                    "saturn"
                    $"{describe block}\nis marked '{block.Marker}': only ```fsharp saturn blocks are left out of the compile check"
        }
        test "every snippet is a block of a document" {
            // A snippet no document shows any more only looks like coverage: remove it with its block.
            for language, extension in [ "fsharp", ".fs"; "csharp", ".cs" ] do
                let shown = compiled |> List.filter (fun block -> block.Language = language) |> List.map _.Text |> set
                let unused = snippets root extension |> Map.filter (fun _ text -> not (shown.Contains text)) |> Map.keys |> List.ofSeq
                if not unused.IsEmpty then
                    let names = String.concat ", " documents
                    let snippetNames = String.concat ", " unused
                    failtest
                        $"{extension} snippets that match no block of {names}: {snippetNames} (remove them, or their block changed: copy it over the snippet)"
        }
        yield! compiled |> List.map (blockTest root)
    ]
