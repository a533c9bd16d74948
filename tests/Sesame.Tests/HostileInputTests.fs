/// Hostile and odd input at the public API: each gets a documented error or a safe fallback, and loses nothing.
module Sesame.Tests.HostileInputTests

open System
open System.Collections.Concurrent
open System.Net
open System.Text
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open Xunit
open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

let private noOptions (_: SesameOptions) = ()

/// Runs `act` on the request's session inside a real request and gives back the error it raised, if any.
let private errorOf (act: SessionHandle -> unit) : Task<exn option> =
    task {
        let mutable error = None
        let handler =
            Session.handler (fun s ->
                (try act s with e -> error <- Some e)
                text "done")
        use! host = startHost (new MemoryStore()) noOptions (runHandler (withSession >=> handler)) (new LogCapture())
        let! _ = (Browser host).GetTextAsync "/"
        return error
    }

let private assertRefused<'error when 'error :> exn> (act: SessionHandle -> unit) (mustMention: string) =
    task {
        let! error = errorOf act
        match error with
        | Some(:? 'error as e) -> Assert.Contains(mustMention, e.Message)
        | other -> failwith $"Expected {typeof<'error>.Name} mentioning '{mustMention}', got {other}"
    }

[<Fact>]
let ``an empty path is refused with a clear error`` () =
    assertRefused<ArgumentException> (Session.set "" 1) "empty"

[<Fact>]
let ``an absurdly deep path is refused`` () =
    assertRefused<ArgumentException> (Session.set (String.replicate 2000 "a.") 1) "segments"

[<Fact>]
let ``an absurdly long path is refused`` () =
    assertRefused<ArgumentException> (Session.set (String('k', 100_000)) 1) "characters long"

[<Fact>]
let ``NaN cannot be stored, and nothing is recorded`` () =
    task {
        let! error = errorOf (fun s ->
            s |> Session.set "n" nan
            if s.HasPendingChanges then failwith "Something was recorded.")
        match error with
        | Some(:? ArgumentException) -> ()
        | other -> failwith $"Expected an ArgumentException, got {other}"
    }

/// An object graph with a cycle, as C# code easily builds.
type Node() =
    member val Name = "node" with get, set
    member val Next: Node = Unchecked.defaultof<Node> with get, set

[<Fact>]
let ``a cyclic object graph is refused with a JsonException, and nothing is recorded`` () =
    task {
        let cyclic = Node()
        cyclic.Next <- cyclic
        let! error = errorOf (fun s ->
            s |> Session.set "graph" cyclic
            if s.HasPendingChanges then failwith "Something was recorded.")
        match error with
        | Some(:? JsonException as e) -> Assert.Contains("cycle", e.Message)
        | other -> failwith $"Expected a JsonException, got {other}"
    }

[<Fact>]
let ``keys with dots, brackets, quotes, control characters and __proto__ are plain keys`` () =
    task {
        let keys = [ "a.b"; "x[0]"; "]["; "say \"hi\""; "tab\tnew\nline"; "__proto__"; "constructor"; ""; "ключ 🔑" ]
        let write =
            Session.handler (fun s ->
                for key in keys do
                    s.Set(Path.ofKeys [ "odd"; key ], Json.string key)
                text "ok")
        let read =
            Session.handler (fun s ->
                let back = keys |> List.map (fun key -> s.TryFind(Path.ofKeys [ "odd"; key ]) = Some(Json.string key))
                text (if List.forall id back then "all back" else "lost some"))
        use! host = startHost (new MemoryStore()) noOptions (runHandler (withSession >=> choose [ route "/write" >=> write; route "/read" >=> read ])) (new LogCapture())
        let browser = Browser host
        let! _ = browser.GetTextAsync "/write"
        let! body = browser.GetTextAsync "/read"
        Assert.Equal("all back", body)
        // The text form of such a path parses back to the same keys.
        for key in keys do
            let path = Path.ofKeys [ "odd"; key ]
            Assert.Equal(path, Path.parse (string path))
    }

/// The errors Sesame documents for bad input at its API.
let private isDocumented (e: exn) =
    match e with
    | :? ArgumentException
    | :? PathConflictException
    | :? JsonException
    | :? NotSupportedException -> true
    | _ -> false

let private pathPieces = [| "a"; "b"; "c"; "a.b"; "[0]"; "[1]"; "[2]"; "[\"q.k\"]"; "."; "["; "]"; "\""; "\\"; "é"; "\u0001"; " "; "[99999999999]"; "[-1]"; "[01]" |]

let private randomPath (random: Random) =
    match random.Next 20 with
    | 0 -> ""
    | 1 -> String.replicate (Path.MaxSegments + 5) "a."
    | 2 -> String('x', Path.MaxTextLength + 1)
    | _ -> String.Join("", Array.init (1 + random.Next 4) (fun _ -> pathPieces[random.Next pathPieces.Length]))

let rec private randomJson (random: Random) (depth: int) : Json =
    match random.Next(if depth > 2 then 5 else 7) with
    | 0 -> Json.Null
    | 1 -> Json.Bool(random.Next 2 = 0)
    | 2 -> Json.int64 (random.NextInt64(-1000L, 1000L))
    | 3 -> Json.Number(JsonNumber.Parse([| "1.10"; "9007199254740993"; "1e400"; "-0.5"; "123456789012345678901234567890" |][random.Next 5]))
    | 4 -> Json.string ([| ""; "text"; "é✓"; "\u0000ctl"; "\"quoted\"" |][random.Next 5])
    | 5 -> Json.array [ for _ in 1 .. random.Next 3 -> randomJson random (depth + 1) ]
    | _ -> Json.object [ for i in 1 .. random.Next 3 -> [| "a"; "b"; "c" |][i % 3], randomJson random (depth + 1) ]

let private randomValue (random: Random) : obj =
    match random.Next 10 with
    | 0 -> box nan
    | 1 -> box infinity
    | 2 ->
        let cyclic = Node()
        cyclic.Next <- cyclic
        box cyclic
    | 3 -> box Decimal.MaxValue
    | 4 -> null
    | _ -> box (randomJson random 0)

/// One random operation on the session, given as text for the report and as an action.
let private randomOperation (random: Random) : string * (SessionHandle -> unit) =
    let path = randomPath random
    match random.Next 5 with
    | 0 ->
        let value = randomValue random
        $"set {path}", (fun s -> s |> Session.set path value)
    | 1 -> $"remove {path}", (fun s -> s |> Session.remove path)
    | 2 ->
        let by = decimal (random.Next(-5, 6))
        $"increment {path}", (fun s -> s |> Session.increment path by |> ignore)
    | 3 -> $"tryGet<int> {path}", (fun s -> s |> Session.tryGet<int> path |> ignore)
    | _ -> $"tryGet<string> {path}", (fun s -> s |> Session.tryGet<string> path |> ignore)

[<Fact>]
let ``fuzz: 10,000 random operations and 2,000 random cookies produce only documented errors and touch no other session`` () =
    task {
        let seed = Environment.TickCount
        let random = Random seed
        let undocumented = ConcurrentQueue<string>()
        let operations = ConcurrentQueue<string * (SessionHandle -> unit)>()
        let fuzz =
            Session.handler (fun s ->
                let loaded = Session.current s
                let mutable op = Unchecked.defaultof<_>
                while operations.TryDequeue(&op) do
                    let name, act = op
                    try
                        act s
                    with e ->
                        if not (isDocumented e) then
                            undocumented.Enqueue $"{name}: {e.GetType().Name}: {e.Message}"
                text (Json.serialize loaded + "\n" + Json.serialize (Session.current s)))
        let witness = Session.handler (fun s -> text (Json.serialize (Session.current s)))
        let setWitness = Session.handler (fun s -> s |> Session.set "mine" {| secret = 42 |}; text "ok")
        use! host =
            startHost (new MemoryStore()) noOptions (runHandler (withSession >=> choose [ route "/fuzz" >=> fuzz; route "/witness" >=> witness; route "/setWitness" >=> setWitness ])) (new LogCapture())
        let other = Browser host
        let! _ = other.GetTextAsync "/setWitness"
        let! before = other.GetTextAsync "/witness"
        let browser = Browser host
        let mutable previous = Json.emptyObject
        for request in 1..1000 do
            for _ in 1..10 do
                operations.Enqueue(randomOperation random)
            let! response, body = browser.GetAsync "/fuzz"
            Assert.True(response.IsSuccessStatusCode, $"Request {request} (seed {seed}) failed with {int response.StatusCode}.")
            let parts = body.Split('\n')
            // What the request loaded is exactly what the previous request left: every change was committed.
            Assert.True((Json.parse parts[0] = previous), $"Request {request} (seed {seed}) loaded {parts[0]} but the previous one left {Json.serialize previous}.")
            previous <- Json.parse parts[1]
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/%!~*()"
        for _ in 1..2000 do
            let length = [| 0; 1; 32; 150; 600 |][random.Next 5]
            let cookie = String(Array.init length (fun _ -> alphabet[random.Next alphabet.Length]))
            let stranger = Browser host
            stranger.Cookie <- Some cookie
            let! response, body = stranger.GetAsync "/witness"
            Assert.True(response.IsSuccessStatusCode, $"Cookie '{cookie}' (seed {seed}) failed the request.")
            Assert.Equal("{}", body)
        let! after = other.GetTextAsync "/witness"
        Assert.Equal(before, after)
        Assert.True(undocumented.IsEmpty, $"Undocumented errors (seed {seed}):\n" + String.Join("\n", undocumented))
    }
