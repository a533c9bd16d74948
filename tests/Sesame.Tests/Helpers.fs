[<AutoOpen>]
module Sesame.Tests.Helpers

open Sesame
open System
open System.Threading

/// Parses JSON text in a test.
let json (text: string) = Json.parse text

/// Parses a path in a test.
let path (text: string) = Path.parse text

/// A token for store calls in tests: cancels after a minute so a hung store fails the test instead of CI.
let testToken () = (new CancellationTokenSource(TimeSpan.FromMinutes 1.0)).Token

/// A free TCP port on loopback, for a server a test starts.
let freePort () =
    let listener = new Net.Sockets.TcpListener(Net.IPAddress.Loopback, 0)
    listener.Start()
    let port = (listener.LocalEndpoint :?> Net.IPEndPoint).Port
    listener.Stop()
    port
