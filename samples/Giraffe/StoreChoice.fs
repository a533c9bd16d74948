/// Which store the sample runs on, from its --store option.
module Sesame.Samples.Giraffe.StoreChoice

open System
open Sesame

/// A store the sample can run on.
type StoreChoice =
    | Memory

/// Reads --store: `memory` (the default).
let parse (text: string) : Result<StoreChoice, string> =
    match text with
    | null | "" | "memory" -> Ok Memory
    | other -> Error $"Unknown store '{other}'. Use: memory."

/// Opens the chosen store and describes it for the start-up line.
let openStore (choice: StoreChoice) : ISessionStore * string =
    match choice with
    | Memory -> new MemoryStore() :> ISessionStore, "memory (sessions are lost when the app stops)"
