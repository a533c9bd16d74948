/// The test program: Expecto runs every [<Tests>] value in this assembly, with its command-line arguments.
module Sesame.Readme.Tests.Main

open Expecto

[<EntryPoint>]
let main args = Tests.runTestsInAssemblyWithCLIArgs [] args
