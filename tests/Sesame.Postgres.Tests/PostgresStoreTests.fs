module Sesame.Postgres.Tests.PostgresStoreTests

open System
open System.Collections.Concurrent
open System.Threading
open System.Threading.Tasks
open Expecto
open Npgsql
open Sesame
open Sesame.Postgres
open Sesame.Postgres.Tests.PostgresServer
open Sesame.Postgres.Tests.Generator

let private token () = (new CancellationTokenSource(TimeSpan.FromMinutes 1.0)).Token
let private parse (text: string) = Json.parse text
let private at (text: string) = SessionPath.parse text

let private creating = { IdleTimeout = TimeSpan.FromMinutes 10.0; MustExist = false; MaxSizeBytes = 1024 * 1024; UserLimit = UserLimit.None }

let private existing = { creating with MustExist = true }

/// Records what a store reports as ended.
[<Sealed>]
type private Ended() =
    let ended = ConcurrentQueue<string * Json * SessionEndReason>()
    member _.All = List.ofSeq ended
    member _.Of(reason: SessionEndReason) = ended |> Seq.filter (fun (_, _, r) -> r = reason) |> Seq.map (fun (id, _, _) -> id) |> List.ofSeq
    interface ISessionStoreObserver with
        member _.SessionEnded(id, meta, reason) = ended.Enqueue((id, meta, reason))

let private tables = ref 0

let private connection: Lazy<string> = lazy (freshDatabase "store")

/// A store on the shared test database, with tables of its own (so no test sees another's sessions).
let private storeWith (configure: PostgresStoreOptions -> unit) =
    // A timeout far above what an operation takes, so that a loaded machine slows tests down without failing them
    // (the fault tests set short ones of their own).
    let options =
        PostgresStoreOptions(
            TableName = $"t{Interlocked.Increment tables}",
            SweepInterval = Timeout.InfiniteTimeSpan,
            OperationTimeout = TimeSpan.FromSeconds 60.0
        )
    configure options
    new PostgresStore(connection.Value, options, null)

let private newStore () = storeWith ignore

let private newId () = Guid.NewGuid().ToString("N")

let private load (store: SessionStore) (id: string) = store.LoadAsync(id, creating.IdleTimeout, token ())

let private commit (store: SessionStore) (id: string) (updates: Update list) = store.CommitAsync(id, SessionChange(Patch.fold updates), creating, token ())

let private signIn (user: string) = SessionChange(Patch.empty, Patch.fold [ Update.Set(SessionPath.ofKeys [ SessionMeta.User ], Json.String user) ])

/// What a commit did: its result, or the exception's type and message.
let private outcome (work: unit -> Task<CommitResult>) = task {
    try
        let! result = work ()
        return string result
    with e ->
        return $"{e.GetType().Name}: {e.Message}"
}

let private shown (session: StoredSession) = if isNull session then "(none)" else $"{Json.serialize session.Data} | {Json.serialize session.Meta}"

/// Runs `count` tasks released together by one gate.
let private together (count: int) (start: int -> Task<'result>) : Task<'result[]> = task {
    let gate = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    let one (i: int) : Task<'result> = task {
        do! gate.Task
        return! start i
    }
    let started = Array.init count (fun i -> one (i + 1))
    gate.SetResult()
    return! Task.WhenAll started
}

/// Fails unless the task throws 'error (or a subclass); gives the exception.
let private throwsTask<'error when 'error :> exn> (what: string) (work: unit -> Task) : Task<'error> = task {
    let! outcome = task {
        try
            do! work ()
            return None
        with e ->
            return Some e
    }
    return
        match outcome with
        | Some(:? 'error as e) -> e
        | Some e -> failtestf "%s: expected %s, but %s was thrown: %s" what typeof<'error>.Name (e.GetType().Name) e.Message
        | None -> failtestf "%s: expected %s, but nothing was thrown." what typeof<'error>.Name
}

let private scalar (connectionString: string) (sql: string) : Task<obj> = task {
    use dataSource = NpgsqlDataSource.Create connectionString
    use command = dataSource.CreateCommand sql
    return! command.ExecuteScalarAsync()
}

/// The store contract (tests/Sesame.Tests/StoreContract.fs), on real time: the database's clock is not the test's.
[<Tests>]
let contract = Sesame.Tests.StoreContract.storeContract "postgres contract" (fun () -> newStore () :> SessionStore)

[<Tests>]
let fidelity =
    testList "postgres fidelity" [
        testCaseTask "numbers, strings and key order keep their exact text"
        <| fun () -> task {
            use store = newStore ()
            let id = newId ()
            let value =
                """{"z":1.10,"big":9223372036854775807,"huge":1e400,"tiny":-0.0,"exp":2E-3,"text":"é \"q\" \\ \n 𝄞","":{"x.y":[],"k\u0001":{}},"a":[1,[2,[3]],{"b":null}]}"""
            let! _ = commit store id [ Update.Set(at "v", parse value); Update.Increment(at "n", JsonNumber.Parse "1.10") ]
            let! _ = commit store id [ Update.Increment(at "n", JsonNumber.Parse "1") ]
            let! loaded = load store id
            Expect.equal (Json.serialize loaded.Data) (Json.serialize (parse $"""{{"v":{value},"n":2.10}}""")) "the tree, to the same text"
        }

        testCaseTask "node rows that are malformed are an error giving the reason, and are left as they are"
        <| fun () -> task {
            let store = newStore ()
            let nodes = $"sesame.{store.Options.TableName}_nodes"
            // Each: the row changed (SQL text of its path and its new value), and the reason the error gives.
            let cases = [
                // Refused before room is made for the items (16 GiB of references).
                "E'\\001a'", "'A2147483647'", "more items than the session has nodes"
                "E'\\001a'", "'A0'", "an array node is malformed"
                "''", "E'O\\001a\\001a'", "an object names a key twice"
                "E'\\001a'", "'{x'", "a leaf is not JSON"
            ]
            for path, value, reason in cases do
                let id = newId ()
                let! _ = commit store id [ Update.Set(at "a", parse "[1]") ]
                let! _ = scalar connection.Value $"UPDATE {nodes} SET value = {value} WHERE path = {path}"
                let! before = scalar connection.Value $"SELECT string_agg(path || '=' || value, ',' ORDER BY path) FROM {nodes}"
                let! e = throwsTask<SessionStoreException> reason (fun () -> load store id :> Task)
                Expect.stringContains e.Message reason reason
                Expect.isFalse (e.Message.Contains id) $"{reason}: the message names no session"
                let! after = scalar connection.Value $"SELECT string_agg(path || '=' || value, ',' ORDER BY path) FROM {nodes}"
                Expect.equal after before $"{reason}: the rows are left as they are"
                let! _ = store.DeleteAsync(id, token ())
                ()
        }

        testCaseTask "the deepest tree Sesame writes is read back, and node rows one level deeper are refused, whatever a thread's stack"
        <| fun () -> task {
            let store = newStore ()
            let table = $"sesame.{store.Options.TableName}"
            let chainText (depth: int) = String.replicate depth "{\"k\":" + "1" + String.replicate depth "}"
            // The deepest change Update.validate lets through: a path of Json.MaxDepth segments to a number.
            let id = newId ()
            let! result = commit store id [ Update.Set(SessionPath.ofKeys (List.replicate Json.MaxDepth "k"), Json.int64 1L) ]
            Expect.equal result CommitResult.Committed "the deepest change is committed"
            let! loaded = load store id
            Expect.equal (Json.serialize loaded.Data) (chainText Json.MaxDepth) "the deepest tree is read back"
            // The leaf becomes an object holding it one level deeper.
            let leaf = $"repeat(E'\\001k', {Json.MaxDepth})"
            let sid = $"(SELECT sid FROM {table} WHERE id = '{id}')"
            let! _ = scalar connection.Value $"UPDATE {table}_nodes SET value = E'O\\001k' WHERE sid = {sid} AND path = {leaf}"
            let! _ = scalar connection.Value $"INSERT INTO {table}_nodes (sid, path, value, bytes) VALUES ({sid}, {leaf} || E'\\001k', '1', 1)"
            let! e = throwsTask<SessionStoreException> "one level more" (fun () -> load store id :> Task)
            Expect.stringContains e.Message "the tree is too deep" "one level more"
            // On a thread with Windows' default stack of 1 MB the walk reads the deepest tree it accepts, and refuses a far
            // deeper one with its reason: a walk that went on would end the process.
            let rebuiltOn (depth: int) =
                let paths = [| yield "\u0004"; for level in 0..depth -> String.replicate level "\u0001k" |]
                let values = [| yield "{}"; for level in 0..depth -> (if level = depth then "1" else "O\u0001k") |]
                let outcome = ref (Error "not run")
                let thread = Thread((fun () -> outcome.Value <- PostgresLayout.rebuild paths values), 1024 * 1024)
                thread.Start()
                thread.Join()
                outcome.Value
            match rebuiltOn Json.MaxDepth with
            | Ok session -> Expect.equal (Json.serialize session.Data) (chainText Json.MaxDepth) "read on a 1 MB stack"
            | Error reason -> failtest $"the deepest tree accepted was refused on a 1 MB stack: {reason}"
            match rebuiltOn 3_000 with
            | Error reason -> Expect.stringContains reason "the tree is too deep" "3,000 levels"
            | Ok _ -> failtest "a tree 3,000 levels deep was read"
        }

        testCaseTask "every change is applied exactly as the memory store applies it, conflicts, sizes and shapes included"
        <| fun () -> task {
            use store = newStore ()
            use memory = new MemoryStore()
            let generator = ChangeGenerator 20260601
            let mutable commits = 0
            for _ in 1..60 do
                let id = newId ()
                for _ in 1..10 do
                    let! current = memory.LoadAsync(id, creating.IdleTimeout, token ())
                    let change = generator.Change current
                    let options = {
                        creating with
                            MaxSizeBytes = (if generator.Next 6 = 0 then 2 + generator.Next 300 else creating.MaxSizeBytes)
                            MustExist = generator.Next 10 = 0
                    }
                    let! expected = outcome (fun () -> memory.CommitAsync(id, change, options, token ()))
                    let! actual = outcome (fun () -> store.CommitAsync(id, change, options, token ()))
                    Expect.equal actual expected $"the outcome of {change}"
                    if actual = "Committed" then commits <- commits + 1
                    let! inMemory = memory.LoadAsync(id, creating.IdleTimeout, token ())
                    let! inPostgres = store.LoadAsync(id, creating.IdleTimeout, token ())
                    Expect.equal (shown inPostgres) (shown inMemory) $"the session after {change}"
                    if not (isNull inPostgres) then
                        let! page = store.ListAsync({ UserId = null; After = null; Limit = 1000 }, token ())
                        let summary = page.Sessions |> Seq.find (fun s -> s.Id = id)
                        Expect.equal summary.SizeBytes (JsonSize.utf8Length inPostgres.Data) "the size the database keeps is the tree's compact JSON"
            Expect.isGreaterThan commits 200 "most changes were committed, so the comparison covers stored trees"
        }

        testCaseTask "the database adds numbers exactly as JsonNumber.Add does, or refuses as it does"
        <| fun () -> task {
            use store = newStore ()
            do! store.EnsureSchemaAsync(token ())
            let random = Random 7
            let digits n = String(Array.init n (fun i -> if i = 0 then char (int '1' + random.Next 9) else char (int '0' + random.Next 10)))
            let number () =
                let sign = if random.Next 2 = 0 then "-" else ""
                let whole = if random.Next 5 = 0 then "0" else digits (random.Next(1, 25))
                let fraction = if random.Next 2 = 0 then "" else "." + String(Array.init (random.Next(1, 8)) (fun _ -> char (int '0' + random.Next 10)))
                let exponent =
                    match random.Next 4 with
                    | 0 -> "e" + string (random.Next(-30, 30))
                    | 1 -> "E+" + string (random.Next(0, 5000))
                    | _ -> ""
                sign + whole + fraction + exponent
            let cases =
                [ for _ in 1..1500 -> number (), number () ]
                @ [
                    digits 140000, "1"
                    "-" + digits 140000, digits 139999
                    digits 140000, "-" + digits 140000
                    "1e4000", "-1e-4000"
                    "5", "1e4097"
                    "1.0e5000", "1"
                    "-0.0", "0"
                    "9223372036854775807", "1"
                ]
            use dataSource = NpgsqlDataSource.Create connection.Value
            for a, b in cases do
                use command = dataSource.CreateCommand $"SELECT \"sesame\".\"{store.Options.TableName}_add\"($1, $2)"
                command.Parameters.Add(NpgsqlParameter<string>(TypedValue = a)) |> ignore
                command.Parameters.Add(NpgsqlParameter<string>(TypedValue = b)) |> ignore
                let! sum = command.ExecuteScalarAsync()
                let actual =
                    match sum with
                    | :? DBNull -> "(refused)"
                    | v -> string v
                let expected =
                    try
                        JsonNumber.Add(JsonNumber.Parse a, JsonNumber.Parse b).Text
                    with :? OverflowException ->
                        "(refused)"
                if actual <> expected then
                    failtestf
                        "%s + %s: the database gives %s, JsonNumber.Add %s"
                        (a.Substring(0, min 40 a.Length))
                        (b.Substring(0, min 40 b.Length))
                        (actual.Substring(0, min 60 actual.Length))
                        (expected.Substring(0, min 60 expected.Length))
        }

        testCaseTask "the size limit counts the tree's compact JSON exactly, and a refused commit stores nothing"
        <| fun () -> task {
            use store = newStore ()
            let id = newId ()
            let! _ = commit store id [ Update.Set(at "a", parse "\"é\"") ]
            // {"a":"é","b":[1,{}]} is 21 bytes of UTF-8 (é is two).
            let change = SessionChange(Patch.fold [ Update.Set(at "b", parse "[1,{}]") ])
            let! refused =
                throwsTask<SessionTooLargeException> "one byte over" (fun () ->
                    store.CommitAsync(id, change, { creating with MaxSizeBytes = 20 }, token ()) :> Task)
            Expect.equal refused.Size 21L "the size it would have had"
            let! stillSmall = load store id
            Expect.equal (Json.serialize stillSmall.Data) """{"a":"é"}""" "nothing of the refused commit is stored"
            let! fits = store.CommitAsync(id, change, { creating with MaxSizeBytes = 21 }, token ())
            Expect.equal fits CommitResult.Committed "exactly at the limit"
            try
                let! _ =
                    store.CommitAsync(
                        id,
                        SessionChange(Patch.fold [ Update.Increment(at "c", JsonNumber.Parse "10") ]),
                        { creating with MaxSizeBytes = 21 },
                        token ()
                    )
                failtest "a commit past the limit was accepted"
            with :? SessionTooLargeException as e ->
                // ,"c":10 adds 7 bytes.
                Expect.equal e.Size 28L "the size it would have had"
                Expect.equal e.Limit 21 "the limit"
        }
    ]

[<Tests>]
let roundTrips =
    testList "postgres round trips" [
        testCaseTask "a load, a commit, a move and a delete are one statement each; one that may grow a shared session's facts is a transaction"
        <| fun () -> task {
            // Every statement the server receives on this data source is logged; the functions' own are not.
            let connectionString = connection.Value + ";Options=-c log_statement=all"
            let options = PostgresStoreOptions(TableName = $"t{Interlocked.Increment tables}", SweepInterval = Timeout.InfiniteTimeSpan)
            use store = new PostgresStore(connectionString, options, null)
            let id = newId ()
            let! _ = commit store id [ Update.Set(at "warm", parse "1") ]
            let! _ = load store id
            let count () =
                shared.Value.Log.Split('\n') |> Array.filter (fun line -> line.Contains "LOG:  execute" || line.Contains "LOG:  statement") |> Array.length
            let measure (work: unit -> Task) = task {
                let before = count ()
                do! work ()
                // The log is written by the server process: give it a moment to reach the file.
                do! Task.Delay 200
                return count () - before
            }
            let! commits = measure (fun () -> commit store id [ Update.Set(at "a.b", parse "[1,2]"); Update.Increment(at "n", JsonNumber.Parse "1") ] :> Task)
            Expect.equal commits 1 "statements for one commit"
            let! loads = measure (fun () -> load store id :> Task)
            Expect.equal loads 1 "statements for one load"
            let rotated = newId ()
            let! moves =
                measure (fun () -> store.MoveAsync(id, rotated, SessionChange(Patch.fold [ Update.Set(at "r", parse "1") ]), creating, token ()) :> Task)
            Expect.equal moves 1 "statements for one move"
            // Flash added to a stored session, and a sign-in (it binds the user and the device), may grow the facts past
            // the limit with what concurrent requests add: BEGIN, the facts' size, the change, their size again, COMMIT.
            let flash = SessionChange(Patch.empty, Patch.fold [ Update.Set(SessionPath.ofKeys [ SessionMeta.Flash; "n" ], parse "1") ])
            let! flashed = measure (fun () -> store.CommitAsync(rotated, flash, existing, token ()) :> Task)
            Expect.equal flashed 5 "statements for a commit of flash"
            let signedIn = newId ()
            let! signIns = measure (fun () -> store.MoveAsync(rotated, signedIn, signIn "ada", creating, token ()) :> Task)
            Expect.equal signIns 5 "statements for a sign-in"
            let! deletes = measure (fun () -> store.DeleteAsync(signedIn, token ()) :> Task)
            Expect.equal deletes 1 "statements for one delete"
        }
    ]

[<Tests>]
let concurrency =
    testList "postgres concurrency" [
        testCaseTask "100 concurrent increments and 100 concurrent appends are all kept"
        <| fun () -> task {
            use store = newStore ()
            let id = newId ()
            let! _ = commit store id [ Update.Set(at "start", parse "true") ]
            let! results =
                together 200 (fun i ->
                    let update =
                        if i % 2 = 0 then
                            Update.Increment(at "counter", JsonNumber.Parse "1")
                        else
                            Update.Append(at "items", Json.Number(JsonNumber.OfInt64(int64 i)))
                    store.CommitAsync(id, SessionChange(Patch.fold [ update ]), existing, token ()))
            Expect.allEqual results CommitResult.Committed "every commit"
            let! loaded = load store id
            let tree = loaded.Data
            Expect.equal (SessionPath.tryGet (at "counter") tree) (Some(parse "100")) "the counter"
            match SessionPath.tryGet (at "items") tree with
            | Some(Json.Array items) ->
                let appended = items |> Seq.map Json.serialize |> Seq.sort |> List.ofSeq
                let expected = [ for i in 1..2..199 -> string i ] |> List.sort
                Expect.equal appended expected "each append once"
            | other -> failtestf "items is %A" other
        }

        testCaseTask "concurrent commits to different paths all survive"
        <| fun () -> task {
            use store = newStore ()
            let id = newId ()
            let! _ = commit store id [ Update.Set(at "start", parse "0") ]
            let! _ = together 20 (fun i -> store.CommitAsync(id, SessionChange(Patch.fold [ Update.Set(at $"k{i}.v", parse (string i)) ]), existing, token ()))
            let! loaded = load store id
            for i in 1..20 do
                Expect.equal (SessionPath.tryGet (at $"k{i}.v") loaded.Data) (Some(parse (string i))) $"k{i}"
        }

        testCaseTask "racing sign-ins of one user keep its limit, ending the least recently seen"
        <| fun () -> task {
            use store = newStore ()
            let ended = Ended()
            store.Observer <- ended
            let user = "ada"
            let limit = { creating with UserLimit = { MaxSessions = 3; Policy = UserLimitPolicy.EndLeastRecent } }
            let anonymous = [| for _ in 1..20 -> newId () |]
            for id in anonymous do
                let! _ = commit store id [ Update.Set(at "cart", parse "[]") ]
                ()
            let signedIn = anonymous |> Array.map (fun _ -> newId ())
            let! results = together 20 (fun i -> store.MoveAsync(anonymous[i - 1], signedIn[i - 1], signIn user, limit, token ()))
            Expect.allEqual results CommitResult.Committed "every sign-in gets in"
            let! sessions = store |> SessionStore.listAllAsync (SessionQuery.OfUser user) (token ())
            Expect.equal sessions.Length 3 "the user's live sessions"
            Expect.equal
                (List.sort (ended.Of SessionEndReason.UserLimit))
                (signedIn |> Array.except (sessions |> List.map _.Id) |> Array.sort |> List.ofArray)
                "the others were ended and reported"
            for summary in sessions do
                Expect.equal summary.UserId user "bound"
        }

        testCaseTask "racing sign-ins of one user under Refuse: exactly the limit get in"
        <| fun () -> task {
            use store = newStore ()
            let limit = { creating with UserLimit = { MaxSessions = 3; Policy = UserLimitPolicy.Refuse } }
            let anonymous = [| for _ in 1..12 -> newId () |]
            for id in anonymous do
                let! _ = commit store id [ Update.Set(at "cart", parse "[]") ]
                ()
            let! results = together 12 (fun i -> store.MoveAsync(anonymous[i - 1], newId (), signIn "bob", limit, token ()))
            Expect.equal (results |> Array.filter ((=) CommitResult.Committed) |> Array.length) 3 "admitted"
            Expect.equal (results |> Array.filter ((=) CommitResult.UserLimitReached) |> Array.length) 9 "refused"
            let! sessions = store |> SessionStore.listAllAsync (SessionQuery.OfUser "bob") (token ())
            Expect.equal sessions.Length 3 "the user's live sessions"
            // A refused sign-in leaves the anonymous session where it was.
            let refused = [
                for i in 0..11 do
                    if results[i] = CommitResult.UserLimitReached then anonymous[i]
            ]
            for id in refused do
                let! stillThere = load store id
                Expect.isNotNull stillThere "the refused session is still there under its old id"
        }
    ]

[<Tests>]
let movesAndListings =
    testList "postgres moves and listings" [
        testCaseTask "a load of the old id racing a sign-in never serves the signed-in session, with loads that do not slide the expiry"
        <| fun () -> task {
            // Two app instances on one table. With a refresh interval a load that finds the expiry fresh takes no lock on
            // the session's row, so a move (which keeps the row and gives it the new id) can commit between its reads.
            let shared = $"t{Interlocked.Increment tables}"
            let configure (o: PostgresStoreOptions) =
                o.TableName <- shared
                o.ExpiryRefreshInterval <- TimeSpan.FromMinutes 1.0
            use app = storeWith configure
            use other = storeWith configure
            let mutable leaked = None
            let mutable tries = 0
            // The build before served it within the first hundred tries in an adversarial review's runs.
            while leaked.IsNone && tries < 500 do
                tries <- tries + 1
                let planted = newId ()
                let! _ = commit app planted [ Update.Set(at "cart", parse "[]") ]
                let signingIn = app.MoveAsync(planted, newId (), signIn "victim", creating, token ())
                while leaked.IsNone && not signingIn.IsCompleted do
                    let! session = other.LoadAsync(planted, creating.IdleTimeout, token ())
                    if not (isNull session) && SessionMeta.userOf session.Meta = Some "victim" then leaked <- Some $"try {tries}: {Json.serialize session.Meta}"
                let! moved = signingIn
                Expect.equal moved CommitResult.Committed "signed in"
            Expect.isNone leaked "the old id served the signed-in session"
        }

        testCaseTask "a move carries what was committed before it, and the old id is gone"
        <| fun () -> task {
            use store = newStore ()
            let oldId, newId' = newId (), newId ()
            let! _ = commit store oldId [ Update.Set(at "cart", parse "[1]") ]
            let! _ = commit store oldId [ Update.Append(at "cart", parse "2") ]
            let! moved = store.MoveAsync(oldId, newId', signIn "ada", creating, token ())
            Expect.equal moved CommitResult.Committed "moved"
            let! late = store.CommitAsync(oldId, SessionChange(Patch.fold [ Update.Set(at "late", parse "1") ]), existing, token ())
            Expect.equal late CommitResult.SessionGone "a late commit under the old id"
            let! old = load store oldId
            Expect.isNull old "the old id"
            let! loaded = load store newId'
            Expect.equal (Json.serialize loaded.Data) """{"cart":[1,2]}""" "the tree"
            Expect.equal (SessionMeta.userOf loaded.Meta) (Some "ada") "the user"
            let! again = store.MoveAsync(oldId, newId (), signIn "ada", creating, token ())
            Expect.equal again CommitResult.SessionGone "moving a session that moved away"
        }

        testCaseTask "deleting a session removes it from its user's listing"
        <| fun () -> task {
            use store = newStore ()
            let first, second = newId (), newId ()
            let! _ = store.MoveAsync(null, first, signIn "cy", creating, token ())
            let! _ = store.MoveAsync(null, second, signIn "cy", creating, token ())
            let! deleted = store.DeleteAsync(first, token ())
            Expect.isTrue deleted "it was live"
            let! again = store.DeleteAsync(first, token ())
            Expect.isFalse again "nothing left to delete"
            let! sessions = store |> SessionStore.listAllAsync (SessionQuery.OfUser "cy") (token ())
            Expect.equal (sessions |> List.map _.Id) [ second ] "the user's sessions"
        }

        testCaseTask "listings page with a cursor, in id order"
        <| fun () -> task {
            use store = newStore ()
            let ids = [ for _ in 1..25 -> newId () ]
            for id in ids do
                let! _ = commit store id [ Update.Set(at "x", parse "1") ]
                ()
            let pages = ResizeArray<string list>()
            let mutable after = null
            let mutable more = true
            while more do
                let! page = store.ListAsync({ UserId = null; After = after; Limit = 10 }, token ())
                pages.Add [ for s in page.Sessions -> s.Id ]
                after <- page.Next
                more <- not (isNull after)
            Expect.equal (pages |> Seq.map List.length |> List.ofSeq) [ 10; 10; 5 ] "page sizes"
            Expect.equal (List.concat pages) (List.sortWith (fun a b -> String.CompareOrdinal(a, b)) ids) "every session once, in order"
        }
    ]

[<Tests>]
let expiry =
    testList "postgres expiry" [
        testCase "a sweep interval or an operation timeout a timer does not take is refused, naming the option"
        <| fun () ->
            // A .NET timer's period is at most about 49.7 days: past it, the sweeper's timer failed in the background
            // (no sweep ever ran, and nothing said so) and every operation's time budget failed with the timer's error.
            // Under a millisecond the sweeper's timer failed in the same way.
            for span in [ TimeSpan.FromDays 365.0; TimeSpan.FromTicks 5000L ] do
                let error = Sesame.Tests.Helpers.throws<ArgumentException>(fun () -> PostgresStoreOptions(SweepInterval = span).Validate())
                Expect.stringContains error.Message "SweepInterval" $"names the sweep interval ({span})"
                let error = Sesame.Tests.Helpers.throws<ArgumentException>(fun () -> PostgresStoreOptions(OperationTimeout = span).Validate())
                Expect.stringContains error.Message "OperationTimeout" $"names the operation timeout ({span})"
            // The bounds themselves, and none at all, as before.
            let longest = TimeSpan.FromMilliseconds 4294967294.0
            PostgresStoreOptions(SweepInterval = longest, OperationTimeout = longest).Validate()
            PostgresStoreOptions(SweepInterval = TimeSpan.FromMilliseconds 1.0, OperationTimeout = TimeSpan.FromMilliseconds 1.0).Validate()
            PostgresStoreOptions(SweepInterval = Timeout.InfiniteTimeSpan, OperationTimeout = Timeout.InfiniteTimeSpan).Validate()

        testCaseTask "an expired session is never served and is reported once"
        <| fun () -> task {
            use store = newStore ()
            let ended = Ended()
            store.Observer <- ended
            let id = newId ()
            let short = { creating with IdleTimeout = TimeSpan.FromMilliseconds 300.0 }
            let! _ = store.MoveAsync(null, id, signIn "dee", short, token ())
            do! Task.Delay 600
            let! loaded = load store id
            Expect.isNull loaded "an expired session"
            let! again = load store id
            Expect.isNull again "still gone"
            let! committed = store.CommitAsync(id, SessionChange(Patch.fold [ Update.Set(at "x", parse "1") ]), existing, token ())
            Expect.equal committed CommitResult.SessionGone "a commit that needs it"
            match ended.All with
            | [ endedId, meta, SessionEndReason.Expired ] ->
                Expect.equal endedId id "the id"
                Expect.equal (SessionMeta.userOf meta) (Some "dee") "its facts"
            | other -> failtestf "reported %A" other
            let! sessions = store |> SessionStore.listAllAsync (SessionQuery.OfUser "dee") (token ())
            Expect.isEmpty sessions "its user's index"
        }

        testCaseTask "loading slides the idle expiry"
        <| fun () -> task {
            use store = newStore ()
            let id = newId ()
            let idle = TimeSpan.FromMilliseconds 800.0
            let! _ = store.CommitAsync(id, SessionChange(Patch.fold [ Update.Set(at "x", parse "1") ]), { creating with IdleTimeout = idle }, token ())
            for _ in 1..4 do
                do! Task.Delay 400
                let! loaded = store.LoadAsync(id, idle, token ())
                Expect.isNotNull loaded "used within its idle timeout, it lives on"
        }

        testCaseTask "the sweeper deletes expired sessions in batches and reports each"
        <| fun () -> task {
            use store = storeWith (fun o -> o.SweepBatchSize <- 7)
            let ended = Ended()
            store.Observer <- ended
            let short = { creating with IdleTimeout = TimeSpan.FromMilliseconds 200.0 }
            let doomed = [ for _ in 1..25 -> newId () ]
            for id in doomed do
                let! _ = store.CommitAsync(id, SessionChange(Patch.fold [ Update.Set(at "a.b", parse "[1,2,3]") ]), short, token ())
                ()
            let keeper = newId ()
            let! _ = commit store keeper [ Update.Set(at "keep", parse "1") ]
            do! Task.Delay 400
            let! swept = store.SweepAsync(token ())
            Expect.equal swept 25 "sessions deleted"
            Expect.equal (List.sort (ended.Of SessionEndReason.Expired)) (List.sort doomed) "each reported as expired"
            let! rows = scalar connection.Value $"SELECT count(*) FROM sesame.{store.Options.TableName}_nodes"
            // {"keep":1} is two rows (the object and its leaf), its empty facts one.
            Expect.equal (unbox<int64> rows) 3L "only the live session's node rows are left"
            let! kept = load store keeper
            Expect.isNotNull kept "the live session"
        }

        testCaseTask "a sweep keeps a session whose expiry moved on since it was due, and ends it once it expires"
        <| fun () -> task {
            use store = newStore ()
            let ended = Ended()
            store.Observer <- ended
            let id = newId ()
            let! _ =
                store.CommitAsync(
                    id,
                    SessionChange(Patch.fold [ Update.Set(at "x", parse "1") ]),
                    { creating with IdleTimeout = TimeSpan.FromMilliseconds 300.0 },
                    token ()
                )
            // Slid to a longer idle timeout: the session is due for the sweeper at its first expiry, but alive.
            let! _ = store.LoadAsync(id, TimeSpan.FromSeconds 1.5, token ())
            do! Task.Delay 500
            let! swept = store.SweepAsync(token ())
            Expect.equal swept 0 "nothing expired yet"
            let! alive = load store id
            Expect.isNotNull alive "the session lives on"
            let! _ = store.LoadAsync(id, TimeSpan.FromMilliseconds 300.0, token ())
            do! Task.Delay 500
            let! later = store.SweepAsync(token ())
            Expect.equal later 1 "expired now"
            Expect.equal (ended.Of SessionEndReason.Expired) [ id ] "reported once"
        }

        testCaseTask "a sweep skips a session a transaction holds, and does not wait for it"
        <| fun () -> task {
            use store = newStore ()
            let short = { creating with IdleTimeout = TimeSpan.FromMilliseconds 100.0 }
            let held, free = newId (), newId ()
            for id in [ held; free ] do
                let! _ = store.CommitAsync(id, SessionChange(Patch.fold [ Update.Set(at "x", parse "1") ]), short, token ())
                ()
            do! Task.Delay 300
            use dataSource = NpgsqlDataSource.Create connection.Value
            use! holder = dataSource.OpenConnectionAsync()
            use! transaction = holder.BeginTransactionAsync()
            use lockRow = new NpgsqlCommand($"SELECT 1 FROM sesame.{store.Options.TableName} WHERE id = $1 FOR UPDATE", holder, transaction)
            lockRow.Parameters.Add(NpgsqlParameter<string>(TypedValue = held)) |> ignore
            let! _ = lockRow.ExecuteNonQueryAsync()
            let sweeping = store.SweepAsync(token ())
            let! first = Task.WhenAny(sweeping, Task.Delay(TimeSpan.FromSeconds 10.0))
            Expect.isTrue (obj.ReferenceEquals(first, sweeping)) "the sweep finished while the row was held"
            Expect.equal sweeping.Result 1 "it deleted the other one"
            do! transaction.RollbackAsync()
            let! later = store.SweepAsync(token ())
            Expect.equal later 1 "once released, the held one is swept too"
        }
    ]

[<Tests>]
let schema =
    testList "postgres schema" [
        testCaseTask "the store creates its schema once; a store that may not create finds it"
        <| fun () -> task {
            let options = PostgresStoreOptions(Schema = "app_sessions", TableName = "web", SweepInterval = Timeout.InfiniteTimeSpan)
            use creator = new PostgresStore(connection.Value, options, null)
            let! _ = together 4 (fun _ -> task { do! creator.EnsureSchemaAsync(token ()) })
            let checkOnly = options.Clone()
            checkOnly.CreateSchema <- false
            use user = new PostgresStore(connection.Value, checkOnly, null)
            let id = newId ()
            let! _ = commit user id [ Update.Set(at "a", parse "1") ]
            let! loaded = load creator id
            Expect.equal (Json.serialize loaded.Data) """{"a":1}""" "shared through the same tables"
            let! version = scalar connection.Value "SELECT max(version) FROM app_sessions.web_version"
            Expect.equal (unbox<int> version) PostgresStore.SchemaVersion "the version recorded"
        }

        testCaseTask "the schema script run by hand makes tables the store uses"
        <| fun () -> task {
            let options = PostgresStoreOptions(TableName = "by_hand", CreateSchema = false, SweepInterval = Timeout.InfiniteTimeSpan)
            use missing = new PostgresStore(connection.Value, options, null)
            let! error = throwsTask<SessionStoreException> "before the script" (fun () -> load missing (newId ()) :> Task)
            Expect.stringContains error.Message "SchemaScript" "says what to do"
            use dataSource = NpgsqlDataSource.Create connection.Value
            use! connection' = dataSource.OpenConnectionAsync()
            use! transaction = connection'.BeginTransactionAsync()
            use create = new NpgsqlCommand("CREATE SCHEMA IF NOT EXISTS sesame; " + PostgresStore.SchemaScript options, connection', transaction)
            let! _ = create.ExecuteNonQueryAsync()
            do! transaction.CommitAsync()
            let id = newId ()
            let! _ = commit missing id [ Update.Set(at "a", parse "1") ]
            let! loaded = load missing id
            Expect.isNotNull loaded "the store works on them"
        }

        testCaseTask "a store that creates its schema gives tables an earlier Sesame made its own functions; one that may not leaves them"
        <| fun () -> task {
            use earlier = newStore ()
            let id = newId ()
            let! _ = commit earlier id [ Update.Set(at "a", parse "1") ]
            // A load function as an earlier Sesame might have had it: here, one that never finds a session.
            let table = $"sesame.{earlier.Options.TableName}"
            let! _ =
                scalar
                    connection.Value
                    $"CREATE OR REPLACE FUNCTION {table}_load(p_id text, p_idle bigint, p_refresh bigint, OUT status text, OUT paths text[], OUT vals text[]) LANGUAGE plpgsql AS $$ BEGIN status := 'none'; END $$"
            let! gone = load earlier id
            Expect.isNull gone "the earlier function"
            let checkOnly = earlier.Options.Clone()
            checkOnly.CreateSchema <- false
            use user = new PostgresStore(connection.Value, checkOnly, null)
            do! user.EnsureSchemaAsync(token ())
            let! stillGone = load user id
            Expect.isNull stillGone "a store that may not create leaves the functions as they are"
            use later = new PostgresStore(connection.Value, earlier.Options.Clone(), null)
            do! later.EnsureSchemaAsync(token ())
            let! found = load later id
            Expect.equal (Json.serialize found.Data) """{"a":1}""" "this Sesame's load function"
            let! versions = scalar connection.Value $"SELECT count(*) FROM {table}_version"
            Expect.equal (unbox<int64> versions) 1L "the version recorded once"
        }

        testCaseTask "a store whose database user may use the tables but does not own them keeps their functions, says so, and works"
        <| fun () -> task {
            use owner = newStore ()
            do! owner.EnsureSchemaAsync(token ())
            // A user that may read and write the tables (and run the functions, as every user may), not replace them.
            let role = $"app_{owner.Options.TableName}"
            for grant in
                [
                    $"CREATE ROLE {role} LOGIN"
                    $"GRANT USAGE ON SCHEMA sesame TO {role}"
                    $"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA sesame TO {role}"
                    $"GRANT USAGE ON ALL SEQUENCES IN SCHEMA sesame TO {role}"
                ] do
                let! _ = scalar connection.Value grant
                ()
            let asApp = NpgsqlConnectionStringBuilder(connection.Value, Username = role).ConnectionString
            let warnings = ConcurrentQueue<string>()
            let logger = {
                new Microsoft.Extensions.Logging.ILogger with
                    member _.BeginScope _ = null
                    member _.IsEnabled _ = true
                    member _.Log(level, eventId, state, error, formatter) =
                        if level = Microsoft.Extensions.Logging.LogLevel.Warning then warnings.Enqueue $"{eventId.Name}: {formatter.Invoke(state, error)}"
            }
            use app = new PostgresStore(asApp, owner.Options.Clone(), logger)
            let id = newId ()
            let! committed = commit app id [ Update.Set(at "a", parse "1") ]
            Expect.equal committed CommitResult.Committed "committed as the app's user"
            let! loaded = load app id
            Expect.equal (Json.serialize loaded.Data) """{"a":1}""" "loaded as the app's user"
            let kept = warnings |> Seq.filter (fun w -> w.StartsWith "PostgresFunctionsKept") |> List.ofSeq
            Expect.equal kept.Length 1 $"one warning that the functions were kept: {List.ofSeq warnings}"
            Expect.stringContains kept.Head "SchemaScript" "says what to do"
        }

        testCaseTask "tables of a newer schema version are refused with a clear error"
        <| fun () -> task {
            use store = newStore ()
            do! store.EnsureSchemaAsync(token ())
            let! _ = scalar connection.Value $"INSERT INTO sesame.{store.Options.TableName}_version (version) VALUES (99)"
            let checkOnly = store.Options.Clone()
            checkOnly.CreateSchema <- false
            use later = new PostgresStore(connection.Value, checkOnly, null)
            try
                do! later.EnsureSchemaAsync(token ())
                failtest "a newer schema was accepted"
            with :? SessionStoreException as e ->
                Expect.stringContains e.Message "version 99" "names the version"
        }
    ]
