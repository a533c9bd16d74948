/// The stores that end-to-end behaviours are proven on, by name, each making a fresh empty store.
module Sesame.Tests.StoreKinds

open Sesame

let all: (string * (unit -> ISessionStore)) list =
    [ "memory", (fun () -> new MemoryStore() :> ISessionStore) ]
