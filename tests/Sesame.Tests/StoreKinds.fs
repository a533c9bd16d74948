/// The stores that end-to-end behaviours are proven on, by name, each making a fresh empty store.
module Sesame.Tests.StoreKinds

open System
open System.IO
open Sesame

/// One temporary folder for this test run's session files, removed when the run ends.
let private files =
    let directory = Directory.CreateTempSubdirectory "sesame-e2e-"
    AppDomain.CurrentDomain.ProcessExit.Add(fun _ ->
        try
            directory.Delete true
        with _ ->
            ())
    directory.FullName

let all: StoreKind list = [
    {
        Name = "memory"
        Create = fun clock -> new MemoryStore(MemoryStoreOptions(), clock) :> SessionStore
        FollowsClock = true
    }
    {
        Name = "file"
        Create = fun clock -> FileStore.Open(Path.Combine(files, $"{Guid.NewGuid():N}.db"), null, null, clock) :> SessionStore
        FollowsClock = true
    }
]
