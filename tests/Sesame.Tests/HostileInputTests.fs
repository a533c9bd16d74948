/// Hostile and odd input at the public API: each gets a documented error or a safe fallback, and loses nothing.
module Sesame.Tests.HostileInputTests

open System
open System.Collections.Concurrent
open System.Net
open System.Text
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open Expecto
open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

let private noOptions (_: SesameOptions) = ()

/// Runs `act` on the request's session inside a real request; gives back the error it raised, if
/// any, and how many commits the request made.
let private errorAndCommitsOf (act: SessionHandle -> unit) : Task<exn option * int> = task {
    let mutable error = None
    let handler =
        Session.handler (fun s ->
            (try
                act s
             with e ->
                 error <- Some e)
            text "done")
    let store = ObservedStore()
    use! host = startHost store noOptions (runHandler (withSession >=> handler)) (new LogCapture())
    let! _ = (Browser host).GetTextAsync "/"
    return error, store.Commits
}

/// Runs `act` on the request's session inside a real request and gives back the error it raised, if any.
let private errorOf (act: SessionHandle -> unit) : Task<exn option> = task {
    let! error, _ = errorAndCommitsOf act
    return error
}

let private assertRefused<'error when 'error :> exn> (act: SessionHandle -> unit) (mustMention: string) = task {
    let! error = errorOf act
    match error with
    | Some(:? 'error as e) -> Expect.stringContains e.Message mustMention "e.Message"
    | other -> failwith $"Expected {typeof<'error>.Name} mentioning '{mustMention}', got {other}"
}


/// An object graph with a cycle, as C# code easily builds.
type Node() =
    member val Name = "node" with get, set
    member val Next: Node = Unchecked.defaultof<Node> with get, set


/// The errors Sesame documents for bad input at its API, by exact type: a subclass such as
/// ArgumentOutOfRangeException or ArgumentNullException comes from a bug, not from a documented check.
let private documentedErrors = [ typeof<ArgumentException>; typeof<PathConflictException>; typeof<JsonException>; typeof<NotSupportedException> ]

let private isDocumented (e: exn) = documentedErrors |> List.contains (e.GetType())

let private pathPieces = [|
    "a"
    "b"
    "c"
    "a.b"
    "[0]"
    "[1]"
    "[2]"
    "[\"q.k\"]"
    "."
    "["
    "]"
    "\""
    "\\"
    "é"
    "\u0001"
    " "
    "[99999999999]"
    "[-1]"
    "[01]"
|]

/// A well-formed path: a key, then keys and small indexes, as an app would write.
let private wellFormedPath (random: Random) =
    let keys = [| "a"; "b"; "c"; "é"; "[\"q.k\"]" |]
    let first = keys[random.Next keys.Length]
    let rest =
        Array.init (random.Next 3) (fun _ ->
            match random.Next 3 with
            | 0 -> $"[{random.Next 3}]"
            | _ ->
                match keys[random.Next keys.Length] with
                | quoted when quoted.StartsWith "[" -> quoted
                | key -> "." + key)
    first + String.Join("", rest)

/// Half the time a well-formed path (which may still cross a value of the wrong kind), half the
/// time a hostile one: empty, too deep, too long, or glued from pieces that are mostly malformed.
let private randomPath (random: Random) =
    match random.Next 40 with
    | 0 -> ""
    | 1 -> String.replicate (SessionPath.MaxSegments + 5) "a."
    | 2 -> String('x', SessionPath.MaxTextLength + 1)
    | n when n < 20 -> String.Join("", Array.init (1 + random.Next 4) (fun _ -> pathPieces[random.Next pathPieces.Length]))
    | _ -> wellFormedPath random

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

/// The kinds of operation the fuzz makes, by their index in its counts.
let private operationKinds = [| "set"; "remove"; "increment"; "tryGet<int>"; "tryGet<string>" |]

/// One random operation on the session: its kind (an index into operationKinds), text for the report, and an action.
let private randomOperation (random: Random) : int * string * (SessionHandle -> unit) =
    let path = randomPath random
    let kind = random.Next operationKinds.Length
    let act: SessionHandle -> unit =
        match kind with
        | 0 ->
            let value = randomValue random
            fun s -> s |> Session.set path value
        | 1 -> fun s -> s |> Session.remove path
        | 2 ->
            let by = decimal (random.Next(-5, 6))
            fun s -> s |> Session.increment path by |> ignore
        | 3 -> fun s -> s |> Session.tryGet<int> path |> ignore
        | _ -> fun s -> s |> Session.tryGet<string> path |> ignore
    kind, $"{operationKinds[kind]} {path}", act

[<Tests>]
let tests =
    testList "HostileInput" [
        testCaseTask
            "thousands of updates in one request (keys of one object, increments, appends) cost what each changes, not a copy of the object each, and all are stored"
        <| fun () -> task {
            // A handler that stores each field a client posted: 20,000 keys given one by one to one object used to copy
            // that object (and index it anew) for every key, n² work: 40,000 keys took 40 s of CPU for one request. Counted
            // here as the bytes the handler's own thread allocates while it records the updates (no timing).
            let count = 20000
            let mutable allocated = 0L
            let mutable answers = []
            let mutable read = Json.emptyObject
            let handler =
                Session.handler (fun s ->
                    let before = GC.GetAllocatedBytesForCurrentThread()
                    let mutable wrong = 0
                    for i in 1..count do
                        s |> Session.set $"prefs[\"k{i}\"]" i
                        if (s |> Session.increment $"counts[\"k{i}\"]" 1m).Text <> "1" then wrong <- wrong + 1
                        if s |> Session.append "items" i <> i then wrong <- wrong + 1
                    allocated <- GC.GetAllocatedBytesForCurrentThread() - before
                    answers <- [ wrong; s |> Session.tryGet<int> "prefs.k777" |> Option.defaultValue 0 ]
                    read <- Session.current s
                    text "done")
            let store = ObservedStore()
            use! host = startHost store (fun o -> o.MaxSessionBytes <- 4 <<< 20) (runHandler (withSession >=> handler)) (new LogCapture())
            let browser = Browser host
            let! _ = browser.GetTextAsync "/"
            Expect.equal answers [ 0; 777 ] "every increment gave its new value, every append the array's length, a read the value set"
            Expect.isLessThan allocated (64L <<< 20) $"{count} keys, increments and appends allocated {allocated} bytes"
            let id, _ = List.last store.Patches
            let! stored = store.Inner.LoadAsync(id, TimeSpan.FromMinutes 1.0, Threading.CancellationToken.None)
            let keys (name: string) =
                match SessionPath.tryGet (SessionPath.parse name) stored.Data with
                | Some(Json.Object o) -> o.Count
                | Some(Json.Array items) -> items.Length
                | _ -> 0
            Expect.equal (keys "prefs", keys "counts", keys "items") (count, count, count) "every update stored"
            Expect.equal (Json.serialize read) (Json.serialize stored.Data) "the request read the session as it was stored"
            Expect.equal (SessionPath.tryGet (SessionPath.parse "counts.k777") stored.Data) (Some(Json.int64 1L)) "an increment"
        }

        testCaseTask "reading a container the request changed, again and again, makes it a tree once"
        <| fun () -> task {
            // The C# facade's dynamic proxy reads the root for every member: after one append to a large array, each read
            // must not copy that array anew (2,000 reads of the root copied 800 MB).
            let mutable allocated = 0L
            let handler =
                Session.handler (fun s next ctx ->
                    if ctx.Request.Path.Value = "/fill" then
                        s |> Session.set "items" (Json.array [ for i in 1..50_000 -> Json.int64 (int64 i) ])
                    else
                        s |> Session.append "items" 0 |> ignore
                        let before = GC.GetAllocatedBytesForCurrentThread()
                        for _ in 1..2000 do
                            s.TryFind SessionPath.root |> ignore
                        allocated <- GC.GetAllocatedBytesForCurrentThread() - before
                    text "done" next ctx)
            use! host = startHost (ObservedStore()) noOptions (runHandler (withSession >=> handler)) (new LogCapture())
            let browser = Browser host
            let! _ = browser.GetTextAsync "/fill"
            let! _ = browser.GetTextAsync "/read"
            Expect.isLessThan allocated (8L <<< 20) $"2,000 reads of the root allocated {allocated} bytes"
        }

        testCaseTask "an empty path is refused with a clear error" <| fun () -> task { do! assertRefused<ArgumentException> (Session.set "" 1) "empty" }

        testCaseTask "an absurdly deep path is refused"
        <| fun () -> task { do! assertRefused<ArgumentException> (Session.set (String.replicate 2000 "a.") 1) "segments" }

        testCaseTask "an absurdly long path is refused"
        <| fun () -> task { do! assertRefused<ArgumentException> (Session.set (String('k', 100_000)) 1) "characters long" }

        testCaseTask "NaN cannot be stored, and nothing is recorded"
        <| fun () -> task {
            let mutable recorded = None
            let! error, commits =
                errorAndCommitsOf (fun s ->
                    try
                        s |> Session.set "n" nan
                    finally
                        recorded <- Some s.HasPendingChanges)
            match error with
            | Some(:? ArgumentException) -> ()
            | other -> failwith $"Expected an ArgumentException, got {other}"
            Expect.equal recorded (Some false) "After the refused set, the session has no pending change."
            Expect.equal commits 0 "The request stored nothing."
        }

        testCaseTask "a cyclic object graph is refused with a JsonException, and nothing is recorded"
        <| fun () -> task {
            let cyclic = Node()
            cyclic.Next <- cyclic
            let mutable recorded = None
            let! error, commits =
                errorAndCommitsOf (fun s ->
                    try
                        s |> Session.set "graph" cyclic
                    finally
                        recorded <- Some s.HasPendingChanges)
            match error with
            | Some(:? JsonException as e) -> Expect.stringContains e.Message "cycle" "The error names the cycle."
            | other -> failwith $"Expected a JsonException, got {other}"
            Expect.equal recorded (Some false) "After the refused set, the session has no pending change."
            Expect.equal commits 0 "The request stored nothing."
        }

        testList "a change is checked where it is made, one rule for every store: depth, and lone surrogates" [
            for kind in StoreKinds.all do
                testCaseTask kind.Name
                <| fun () -> task {
                    let store = kind.Create TimeProvider.System
                    use _ =
                        match box store with
                        | :? IDisposable as d -> d
                        | _ -> null
                    let lone = "😀x".Substring(0, 1)
                    let nested (levels: int) = json (String.replicate levels "[" + String.replicate levels "]")
                    let refusals = ResizeArray<string * exn * bool>()
                    let handler =
                        Session.handler (fun s ->
                            let attempt name act =
                                let before = s.PendingUpdates.Count
                                try
                                    act ()
                                    refusals.Add((name, null, false))
                                with e ->
                                    refusals.Add((name, e, s.PendingUpdates.Count <> before))
                            attempt "a key of the path" (fun () -> s.Set(SessionPath.ofKeys [ "ok"; lone ], Json.int64 1L))
                            attempt "a string" (fun () -> s.Set(path "name", Json.String("a" + lone)))
                            attempt "a key of the value" (fun () -> s.Set(path "obj", Json.object [ lone, Json.Null ]))
                            attempt "600 segments holding a value 600 deep" (fun () -> s.Set(SessionPath.ofKeys (Array.create 600 "k"), nested 600))
                            attempt "an append 1,024 deep" (fun () -> s.Append(SessionPath.ofKeys (Array.create 512 "k"), nested 512) |> ignore)
                            // Exactly at the limit: 512 segments and a value 512 deep make 1,024 levels.
                            s.Set(SessionPath.ofKeys (Array.create 512 "d"), nested 512)
                            // A typed string is written by System.Text.Json, which replaces a lone surrogate with U+FFFD
                            // before anything is recorded: what is stored is what every store reads back.
                            s |> Session.set "typed" ("x" + lone)
                            text "done")
                    let show = Session.handler (fun s -> text (Json.serialize (Session.current s)))
                    use! host =
                        startHost store noOptions (runHandler (withSession >=> choose [ route "/" >=> handler; route "/show" >=> show ])) (new LogCapture())
                    let browser = Browser host
                    let! done' = browser.GetTextAsync "/"
                    Expect.equal done' "done" "the request went through"
                    for name, error, recorded in refusals do
                        match error with
                        | :? ArgumentException as e when e.GetType() = typeof<ArgumentException> ->
                            Expect.isFalse recorded $"{name}: nothing recorded"
                            Expect.stringContains e.Message "'" $"{name}: the message names the path"
                        | other -> failtestf "%s: expected an ArgumentException, got %A" name other
                    let! shown = browser.GetTextAsync "/show"
                    let stored = json shown
                    Expect.equal (SessionPath.tryGet (path "typed") stored) (Some(Json.String "x\uFFFD")) "the typed string, as System.Text.Json wrote it"
                    Expect.isSome (SessionPath.tryGet (SessionPath.ofKeys (Array.create 512 "d")) stored) "the value at the limit is stored and read back"
                    Expect.isFalse (shown.Contains "\\uD83D") "no lone surrogate reached the store"
                }
        ]

        testCaseTask "keys with dots, brackets, quotes, control characters and __proto__ are plain keys"
        <| fun () -> task {
            let keys = [ "a.b"; "x[0]"; "]["; "say \"hi\""; "tab\tnew\nline"; "__proto__"; "constructor"; ""; "ключ 🔑" ]
            let write =
                Session.handler (fun s ->
                    for key in keys do
                        s.Set(SessionPath.ofKeys [ "odd"; key ], Json.string key)
                    text "ok")
            let read =
                Session.handler (fun s ->
                    let back = keys |> List.map (fun key -> s.TryFind(SessionPath.ofKeys [ "odd"; key ]) = Some(Json.string key))
                    text (if List.forall id back then "all back" else "lost some"))
            use! host =
                startHost
                    (new MemoryStore())
                    noOptions
                    (runHandler (withSession >=> choose [ route "/write" >=> write; route "/read" >=> read ]))
                    (new LogCapture())
            let browser = Browser host
            let! _ = browser.GetTextAsync "/write"
            let! body = browser.GetTextAsync "/read"
            Expect.equal body "all back" "body"
            // The text form of such a path parses back to the same keys.
            for key in keys do
                let path = SessionPath.ofKeys [ "odd"; key ]
                Expect.equal (SessionPath.parse (string path)) path "SessionPath.parse (string path)"
        }

        testCaseTask "fuzz: 10,000 random operations and 2,000 random cookies produce only documented errors and touch no other session"
        <| fun () -> task {
            let seed = Environment.TickCount
            let random = Random seed
            let undocumented = ConcurrentQueue<string>()
            let operations = ConcurrentQueue<int * string * (SessionHandle -> unit)>()
            // How many operations of each kind ran without an error: a fuzz whose operations nearly all
            // fail on bad paths would prove little about the session's changes.
            let succeeded = Array.zeroCreate<int> operationKinds.Length
            let fuzz =
                Session.handler (fun s ->
                    let loaded = Session.current s
                    let mutable op = Unchecked.defaultof<_>
                    while operations.TryDequeue(&op) do
                        let kind, name, act = op
                        try
                            act s
                            Threading.Interlocked.Increment &succeeded[kind] |> ignore
                        with e ->
                            if not (isDocumented e) then undocumented.Enqueue $"{name}: {e.GetType().Name}: {e.Message}"
                    text (Json.serialize loaded + "\n" + Json.serialize (Session.current s)))
            let witness = Session.handler (fun s -> text (Json.serialize (Session.current s)))
            let setWitness =
                Session.handler (fun s ->
                    s |> Session.set "mine" {| secret = 42 |}
                    text "ok")
            use! host =
                startHost
                    (new MemoryStore())
                    noOptions
                    (runHandler (withSession >=> choose [ route "/fuzz" >=> fuzz; route "/witness" >=> witness; route "/setWitness" >=> setWitness ]))
                    (new LogCapture())
            let other = Browser host
            let! _ = other.GetTextAsync "/setWitness"
            let! before = other.GetTextAsync "/witness"
            let browser = Browser host
            let mutable previous = Json.emptyObject
            for request in 1..1000 do
                for _ in 1..10 do
                    operations.Enqueue(randomOperation random)
                let! response, body = browser.GetAsync "/fuzz"
                Expect.isTrue response.IsSuccessStatusCode ($"Request {request} (seed {seed}) failed with {int response.StatusCode}.")
                let parts = body.Split('\n')
                // What the request loaded is exactly what the previous request left: every change was committed.
                Expect.isTrue
                    (Json.parse parts[0] = previous)
                    ($"Request {request} (seed {seed}) loaded {parts[0]} but the previous one left {Json.serialize previous}.")
                previous <- Json.parse parts[1]
            let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/%!~*()"
            for _ in 1..2000 do
                let length = [| 0; 1; 32; 150; 600 |][random.Next 5]
                let cookie = String(Array.init length (fun _ -> alphabet[random.Next alphabet.Length]))
                let stranger = Browser host
                stranger.Cookie <- Some cookie
                let! response, body = stranger.GetAsync "/witness"
                Expect.isTrue response.IsSuccessStatusCode ($"Cookie '{cookie}' (seed {seed}) failed the request.")
                Expect.equal body "{}" "body"
            let! after = other.GetTextAsync "/witness"
            Expect.equal after before "after"
            Expect.isTrue undocumented.IsEmpty ($"Undocumented errors (seed {seed}):\n" + String.Join("\n", undocumented))
            // About 2,000 operations of each kind were made, half on well-formed paths: a healthy share of
            // each kind must have gone through, or the fuzz would prove little about real changes.
            let report = String.Join(", ", Array.map2 (fun kind n -> $"{kind} {n}") operationKinds succeeded)
            for kind in 0 .. operationKinds.Length - 1 do
                Expect.isGreaterThan succeeded[kind] 200 $"Too few {operationKinds[kind]} operations succeeded (seed {seed}): {report}."
        }
    ]
