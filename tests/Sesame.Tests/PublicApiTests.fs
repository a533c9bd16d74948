/// The public surface of every library, locked: each assembly's public API (as C#-like text from PublicApiGenerator)
/// must equal its approved snapshot in tests/Sesame.Tests/PublicApi/<Assembly>.approved.txt, so that every change to
/// what users can call shows as a diff of that file in review.
///
/// When a change is intended: run the tests with SESAME_APPROVE_API=1 (it rewrites the approved files), or copy the
/// <Assembly>.received.txt a failing run leaves beside the approved file over it; then commit the approved file.
module Sesame.Tests.PublicApiTests

open System
open System.IO
open System.Reflection
open Expecto
open Microsoft.FSharp.Reflection
open PublicApiGenerator

/// The libraries users reference (one type from each names its assembly).
let private libraries: Assembly list = [
    typeof<Sesame.SessionHandle>.Assembly
    typeof<Sesame.SesameSession>.Assembly
    typeof<Sesame.Redis.RedisStore>.Assembly
    typeof<Sesame.Postgres.PostgresStore>.Assembly
    typeof<Sesame.Testing.SessionStoreContract>.Assembly
]

/// Attributes the F# compiler puts on members for its own use: noise in a snapshot, never part of the surface.
let private compilerAttributes = [|
    "Microsoft.FSharp.Core.CompilationMappingAttribute"
    "Microsoft.FSharp.Core.CompilationArgumentCountsAttribute"
    "Microsoft.FSharp.Core.CompilationSourceNameAttribute"
    "System.Diagnostics.DebuggerDisplayAttribute"
    "System.Diagnostics.DebuggerNonUserCodeAttribute"
    "System.Runtime.CompilerServices.CompilerGeneratedAttribute"
|]

/// The namespaces outside Sesame where the libraries put extension methods (AddSesame, UseSesame, AddRedisStore...),
/// so they are found where users look for them; PublicApiGenerator leaves System and Microsoft namespaces out unless
/// they are named.
let private extensionNamespaces = [| "Microsoft.AspNetCore.Builder"; "Microsoft.AspNetCore.Http"; "Microsoft.Extensions.DependencyInjection" |]

/// The cases of every public F# union and their fields: PublicApiGenerator shows a union's case classes but not what
/// they hold (the F# compiler marks those members as its own), so a changed case would not show without this.
let private unionCases (assembly: Assembly) =
    let typeName (t: Type) = t.ToString()
    [
        for t in assembly.GetExportedTypes() |> Array.sortBy (fun t -> t.FullName) do
            if FSharpType.IsUnion(t, BindingFlags.Public) && not (FSharpType.IsUnion(t.BaseType, BindingFlags.Public)) then
                let cases =
                    FSharpType.GetUnionCases(t, BindingFlags.Public)
                    |> Array.map (fun case ->
                        match case.GetFields() with
                        | [||] -> case.Name
                        | fields ->
                            let described = fields |> Array.map (fun f -> $"{f.Name}: {typeName f.PropertyType}") |> String.concat " * "
                            $"{case.Name} of {described}")
                $"// union {t.FullName} = " + String.concat " | " cases
    ]

let private publicApiOf (assembly: Assembly) =
    let options = ApiGeneratorOptions(IncludeAssemblyAttributes = false, ExcludeAttributes = compilerAttributes, AllowNamespacePrefixes = extensionNamespaces)
    let api = assembly.GeneratePublicApi(options).Replace("\r\n", "\n").TrimEnd()
    match unionCases assembly with
    | [] -> api + "\n"
    | cases -> api + "\n" + String.concat "\n" cases + "\n"

/// tests/Sesame.Tests/PublicApi in the repository: found by walking up from the test program's folder to the folder
/// that holds Sesame.sln (the approved files are source, and approving rewrites them there, not in bin/).
let private approvedFolder () =
    let rec up (folder: DirectoryInfo) =
        match folder with
        | null ->
            failwith
                $"The public-API snapshot test could not find the repository (a folder with Sesame.sln) above {AppContext.BaseDirectory}: run it from a build inside the repository."
        | folder when File.Exists(Path.Combine(folder.FullName, "Sesame.sln")) -> Path.Combine(folder.FullName, "tests", "Sesame.Tests", "PublicApi")
        | folder -> up folder.Parent
    up (DirectoryInfo AppContext.BaseDirectory)

let private approving () = Environment.GetEnvironmentVariable "SESAME_APPROVE_API" = "1"

/// The first line where two texts differ, to show in the failure (the whole diff is one `diff` away).
let private firstDifference (approved: string) (received: string) =
    let a = approved.Split '\n'
    let r = received.Split '\n'
    let line = Seq.zip a r |> Seq.tryFindIndex (fun (x, y) -> x <> y) |> Option.defaultValue (min a.Length r.Length)
    let at (lines: string array) = if line < lines.Length then lines[line] else "(end of file)"
    $"first difference at line {line + 1}:\n  approved: {at a}\n  received: {at r}"

let private snapshotTest (assembly: Assembly) =
    let name = assembly.GetName().Name
    test $"{name} public API is the approved one" {
        let folder = approvedFolder ()
        let approvedPath = Path.Combine(folder, $"{name}.approved.txt")
        let receivedPath = Path.Combine(folder, $"{name}.received.txt")
        let received = publicApiOf assembly
        let approved = if File.Exists approvedPath then File.ReadAllText(approvedPath).Replace("\r\n", "\n") else ""
        if received = approved then
            File.Delete receivedPath
        elif approving () then
            Directory.CreateDirectory folder |> ignore
            File.WriteAllText(approvedPath, received)
            File.Delete receivedPath
        else
            File.WriteAllText(receivedPath, received)
            let relative (path: string) = Path.Combine("tests", "Sesame.Tests", "PublicApi", Path.GetFileName path)
            failtest (
                $"The public API of {name} changed ({firstDifference approved received}).\n"
                + $"Compare: diff {relative approvedPath} {relative receivedPath}\n"
                + $"If the change is intended, approve it: copy {relative receivedPath} over {relative approvedPath}, "
                + "or run the tests with SESAME_APPROVE_API=1 (rewrites every approved file); then commit the approved file."
            )
    }

[<Tests>]
let tests = testList "PublicApi" [ for assembly in libraries -> snapshotTest assembly ]
