namespace Sesame.Testing

open System
open Microsoft.FSharp.Reflection
open Sesame

/// A contract case found the store doing something the contract rules out (the runner names the case).
type internal ContractViolation(detail: string) =
    inherit Exception(detail)

/// Failing a case, the way test frameworks' assertions do but depending on none: so the cases read as the Expecto
/// suite they came from, and a store author's framework sees one exception of this package.
[<AutoOpen>]
module internal Failing =

    /// A value as a failure message shows it: a tree as its JSON, a listed session by its id.
    let rec show (value: obj) : string =
        match value with
        | null -> "nothing"
        | :? Json as json -> Json.serialize json
        | :? (Json option) as json ->
            match json with
            | Some json -> $"Some {Json.serialize json}"
            | None -> "None"
        | :? string as text -> $"\"{text}\""
        | :? SessionSummary as summary -> $"session {summary.Id} of user {show summary.UserId}"
        | :? Collections.IEnumerable as items -> "[" + String.Join("; ", Seq.cast<obj> items |> Seq.map show) + "]"
        | tuple when FSharpType.IsTuple(tuple.GetType()) ->
            "(" + String.Join(", ", FSharpValue.GetTupleFields tuple |> Array.map show) + ")"
        | other -> sprintf "%A" other

    /// Fails the case with a message.
    let failtest (detail: string) : 'never = raise (ContractViolation detail)

    /// Fails the case with a formatted message.
    let failtestf format = Printf.ksprintf failtest format

/// Checks a case makes; each fails the case with the message it is given and what differed.
[<RequireQualifiedAccess>]
module internal Expect =

    let equal (actual: 'value) (expected: 'value) (message: string) =
        if actual <> expected then
            failtest $"{message}: expected {show (box expected)}, got {show (box actual)}."

    let notEqual (actual: 'value) (unexpected: 'value) (message: string) =
        if actual = unexpected then
            failtest $"{message}: expected anything but {show (box unexpected)}."

    let isTrue (actual: bool) (message: string) =
        if not actual then failtest message

    let isFalse (actual: bool) (message: string) =
        if actual then failtest message

    let isNotNull (actual: 'value) (message: string) =
        if isNull (box actual) then failtest $"{message}: expected a value, got null."

    let isGreaterThan (actual: 'value) (bound: 'value) (message: string) =
        if not (actual > bound) then
            failtest $"{message}: expected more than {show (box bound)}, got {show (box actual)}."

    let isLessThanOrEqual (actual: 'value) (bound: 'value) (message: string) =
        if not (actual <= bound) then
            failtest $"{message}: expected at most {show (box bound)}, got {show (box actual)}."

    let hasLength (actual: seq<'item>) (length: int) (message: string) =
        let items = List.ofSeq actual
        if items.Length <> length then
            failtest $"{message}: expected {length} items, got {items.Length}: {show (box items)}."

    let isEmpty (actual: seq<'item>) (message: string) =
        let items = List.ofSeq actual
        if not items.IsEmpty then
            failtest $"{message}: expected none, got {items.Length}: {show (box items)}."

    let stringContains (actual: string) (part: string) (message: string) =
        if isNull actual || not (actual.Contains(part, StringComparison.Ordinal)) then
            failtest $"{message}: expected text containing {show (box part)}, got {show (box actual)}."
