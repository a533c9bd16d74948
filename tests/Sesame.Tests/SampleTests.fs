/// The Giraffe sample's promises, as a browser with a cookie jar sees them over Kestrel.
module Sesame.Tests.SampleTests

open Xunit
open Sesame
open Sesame.Samples.Giraffe

let private noOptions (_: SesameOptions) = ()

let private startSample () =
    startHostOn Kestrel (new MemoryStore()) noOptions (runHandler App.webApp) (new LogCapture())

[<Fact>]
let ``the counter answers 1 times!, 2 times!, 3 times! to one cookie jar`` () =
    task {
        use! host = startSample ()
        use client = kestrelClient host
        for expected in [ "1 times!"; "2 times!"; "3 times!" ] do
            let! body = client.GetStringAsync "/"
            Assert.Equal(expected, body)
    }

[<Fact>]
let ``the nested example doubles foo.bar.baz: 2, 4, 8 on a fresh jar`` () =
    task {
        use! host = startSample ()
        use client = kestrelClient host
        for expected in [ "1 times! baz = 2"; "2 times! baz = 4"; "3 times! baz = 8" ] do
            let! body = client.GetStringAsync "/nested"
            Assert.Equal(expected, body)
        let! session = client.GetStringAsync "/session"
        Assert.Equal("""{"times":3,"foo":{"bar":{"baz":8}}}""", session)
    }

[<Fact>]
let ``the sample reads its store choice, refusing an unknown one`` () =
    Assert.Equal(Ok StoreChoice.Memory, StoreChoice.parse "memory")
    Assert.Equal(Ok StoreChoice.Memory, StoreChoice.parse null)
    match StoreChoice.parse "floppy:/a" with
    | Error message -> Assert.Contains("floppy", message)
    | Ok choice -> failwith $"Unexpected {choice}"
