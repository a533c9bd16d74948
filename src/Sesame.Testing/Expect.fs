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
        | null -> "null"
        | :? Json as json -> Json.serialize json
        // None is null once boxed: only Some gets here.
        | :? (Json option) as json -> $"Some {Json.serialize json.Value}"
        | :? string as text -> $"\"{text}\""
        | :? SessionSummary as summary -> $"session {summary.Id} of user {show summary.UserId}"
        | :? Collections.IEnumerable as items -> "[" + String.Join("; ", Seq.cast<obj> items |> Seq.map show) + "]"
        | tuple when FSharpType.IsTuple(tuple.GetType()) -> "(" + String.Join(", ", FSharpValue.GetTupleFields tuple |> Array.map show) + ")"
        | other -> sprintf "%A" other

    /// A value as a failure message shows it, None for an option that holds nothing (which is null once boxed).
    let showTyped (value: 'value) : string =
        if isNull (box value) && typeof<'value>.IsGenericType && typeof<'value>.GetGenericTypeDefinition() = typedefof<option<_>> then
            "None"
        else
            show (box value)

    /// Fails the case with a message.
    let failtest (detail: string) : 'never = raise (ContractViolation detail)

    /// Fails the case with a formatted message.
    let failtestf format = Printf.ksprintf failtest format

/// Checks a case makes; each fails the case with the message it is given and what differed.
[<RequireQualifiedAccess>]
module internal Expect =

    let equal (actual: 'value) (expected: 'value) (message: string) =
        if actual <> expected then failtest $"{message}: expected {showTyped expected}, got {showTyped actual}."

    let notEqual (actual: 'value) (unexpected: 'value) (message: string) =
        if actual = unexpected then failtest $"{message}: expected anything but {showTyped unexpected}."

    let isTrue (actual: bool) (message: string) = if not actual then failtest message

    let isFalse (actual: bool) (message: string) = if actual then failtest message

    let isNotNull (actual: 'value) (message: string) = if isNull (box actual) then failtest $"{message}: expected a value, got null."

    let isGreaterThan (actual: 'value) (bound: 'value) (message: string) =
        if not (actual > bound) then failtest $"{message}: expected more than {showTyped bound}, got {showTyped actual}."

    let isLessThanOrEqual (actual: 'value) (bound: 'value) (message: string) =
        if not (actual <= bound) then failtest $"{message}: expected at most {showTyped bound}, got {showTyped actual}."

    let hasLength (actual: seq<'item>) (length: int) (message: string) =
        let items = List.ofSeq actual
        if items.Length <> length then failtest $"{message}: expected {length} items, got {items.Length}: {showTyped items}."

    let isEmpty (actual: seq<'item>) (message: string) =
        let items = List.ofSeq actual
        if not items.IsEmpty then failtest $"{message}: expected none, got {items.Length}: {showTyped items}."

    let stringContains (actual: string) (part: string) (message: string) =
        if isNull actual || not (actual.Contains(part, StringComparison.Ordinal)) then
            failtest $"{message}: expected text containing {showTyped part}, got {showTyped actual}."
