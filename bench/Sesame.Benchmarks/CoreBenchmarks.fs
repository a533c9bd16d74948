/// The core's cost per request: fold the request's updates, apply the patch, write the result; against the
/// naive way (parse the whole session text into JsonNode, mutate it, write it all back). And what a store
/// persists for one small change to a big session: the patch, not the session.
/// Run: dotnet run -c Release --project bench/Sesame.Benchmarks -- --filter '*Core*' --job short
module Sesame.Benchmarks.CoreBenchmarks

open System
open System.Text.Json.Nodes
open BenchmarkDotNet.Attributes
open Sesame

/// One change a request makes, in a form both sides can run.
type Change =
    | Bump of counter: string
    | SetQty of item: int * qty: int
    | SetPref of key: string * value: string
    | DropPref of key: string

/// Items in the cart of every generated session.
[<Literal>]
let CartItems = 5

/// A session of at least <paramref name="kilobytes"/> KB of compact JSON: a user with preferences, a
/// cart, counters, and a browsing history that makes up the size.
let sessionOfSize (kilobytes: int) : Json =
    let user =
        Json.object [
            "id", Json.string "u-7f3a9c"
            "name", Json.string "Ana Lima"
            "email", Json.string "ana@example.com"
            "prefs", Json.object [ "theme", Json.string "dark"; "lang", Json.string "pt-BR" ]
        ]
    let cart =
        Json.object [
            "items",
            Json.array [
                for i in 0 .. CartItems - 1 -> Json.object [ "sku", Json.string $"sku-{i:D4}"; "qty", Json.int64 1L; "price", Json.decimal (9.99m + decimal i) ]
            ]
            "coupon", Json.Null
        ]
    let counters = Json.object [ for i in 0..9 -> $"c{i}", Json.int64 0L ]
    let visit i =
        Json.object [
            "page", Json.string $"/products/{i * 7919 % 100000}"
            "at", Json.int64 (1_700_000_000_000L + int64 i * 1000L)
            "ms", Json.int64 (int64 (i % 900))
        ]
    let withHistory n = Json.object [ "user", user; "visits", Json.int64 17L; "cart", cart; "counters", counters; "history", Json.array (Seq.init n visit) ]
    let target = kilobytes * 1024
    // Grow the history until the session reaches the size (each visit is about 60 bytes).
    let rec grow n =
        let session = withHistory n
        if (Json.toUtf8 session).Length >= target then session else grow (n + max 1 ((target - (Json.toUtf8 session).Length) / 50))
    grow 0

/// A request's changes: increments, sets and removes spread over the session (a quarter of each kind, then bumps).
let changes (count: int) : Change list = [
    for i in 0 .. count - 1 ->
        match i % 4 with
        | 0 -> Bump $"c{i / 4 % 10}"
        | 1 -> SetQty(i % CartItems, i)
        | 2 -> SetPref($"p{i}", $"value-{i}")
        | _ -> DropPref $"p{i - 1}"
]

/// The same changes as Sesame updates (paths parsed as a handler would).
let toUpdates (changes: Change list) : Update list = [
    for change in changes ->
        match change with
        | Bump counter -> Update.increment (SessionPath.parse $"counters.{counter}") 1m
        | SetQty(item, qty) -> Update.set (SessionPath.parse $"cart.items[{item}].qty") (Json.int64 (int64 qty))
        | SetPref(key, value) -> Update.set (SessionPath.parse $"user.prefs.{key}") (Json.string value)
        | DropPref key -> Update.remove (SessionPath.parse $"user.prefs.{key}")
]

/// The naive way: the changes made on a mutable JsonNode tree.
let applyNaive (root: JsonNode) (changes: Change list) =
    for change in changes do
        match change with
        | Bump counter ->
            let counters = root.["counters"]
            let current = counters.[counter].GetValue<decimal>()
            counters.[counter] <- JsonValue.Create(current + 1m)
        | SetQty(item, qty) ->
            let line = root.["cart"].["items"].[item]
            line.["qty"] <- JsonValue.Create qty
        | SetPref(key, value) ->
            let prefs = root.["user"].["prefs"]
            prefs.[key] <- JsonValue.Create value
        | DropPref key ->
            let prefs = root.["user"].["prefs"].AsObject()
            prefs.Remove key |> ignore

/// The naive way whole: parse the session's text into JsonNode, make the changes, write it all back.
let naiveRoundTrip (sessionText: string) (changes: Change list) : string =
    let root = JsonNode.Parse sessionText
    applyNaive root changes
    root.ToJsonString()

/// A request's updates applied and the whole session written, as the memory store commits them and as a store that
/// writes the patch does (folded first), for sessions of 1, 16 and 256 KB and 1, 10 and 100 updates.
[<MemoryDiagnoser>]
type FoldApplyWrite() =
    let mutable session = Json.emptyObject
    let mutable sessionText = ""
    let mutable changeList: Change list = []
    let mutable updates: Update list = []
    let mutable updatesArray: Update[] = [||]

    /// The session's size in KB.
    [<Params(1, 16, 256)>]
    member val SessionKB = 1 with get, set

    /// The number of updates the request makes.
    [<Params(1, 10, 100)>]
    member val Updates = 1 with get, set

    [<GlobalSetup>]
    member this.Setup() =
        session <- sessionOfSize this.SessionKB
        sessionText <- Json.serialize session
        changeList <- changes this.Updates
        updates <- toUpdates changeList
        updatesArray <- Array.ofList updates
        // Both sides must produce the same session, or the comparison means nothing.
        let naive = JsonNode.Parse sessionText
        applyNaive naive changeList
        let sesame = Patch.apply (Patch.fold updates) session
        if Json.ofJsonNode naive <> sesame then failwith "The naive and the Sesame sessions differ."
        if Patch.apply (Patch.foldChecked updatesArray) session <> sesame then failwith "The recorded and the folded patches differ."

    /// Parse the whole session text into JsonNode, change it, write it all back.
    [<Benchmark(Baseline = true)>]
    member _.Naive() : string = naiveRoundTrip sessionText changeList

    /// Sesame from the session a store holds (an immutable tree), as a request's commit to the memory store runs: the
    /// updates checked (as a handler records them), applied as recorded (nothing asks for the folded patch), the
    /// result written.
    [<Benchmark>]
    member _.Sesame() : byte[] =
        let patch = Patch.foldChecked updatesArray
        for update in updatesArray do
            Update.validate update
        Json.toUtf8 (Patch.apply patch session)

    /// As a store that writes the patch runs it (the file, Redis and PostgreSQL stores): the updates checked and folded,
    /// the folded patch applied, the result written.
    [<Benchmark>]
    member _.SesameFolded() : byte[] =
        let patch = Patch.fold updates
        Json.toUtf8 (Patch.apply patch session)

    /// Sesame from the session's text, as the naive way starts: parse, fold, apply, write.
    [<Benchmark>]
    member _.SesameFromText() : byte[] =
        let tree = Json.parse sessionText
        Json.toUtf8 (Patch.apply (Patch.foldChecked updatesArray) tree)

/// <summary>
/// The file store's commit, as far as the CPU goes (no lock, no disk): the change applied to the session it holds, the
/// session's new JSON made (the value it then holds) and the record's payload. <c>Record</c> is what it does: the
/// session whole when the request made many updates to a small session, with no fold (FileLog.recordsWhole); <c>RecordChange</c> always
/// records the folded change, as every commit did before. Against the naive way, for 1 KB and 16 KB sessions.
/// </summary>
[<MemoryDiagnoser>]
type FileStoreRecord() =
    let mutable stored = StoredSession(Json.emptyObject)
    let mutable storedText: SessionText = null
    let mutable sessionText = ""
    let mutable changeList: Change list = []
    let mutable updatesArray: Update[] = [||]

    /// The session's size in KB.
    [<Params(1, 16)>]
    member val SessionKB = 1 with get, set

    /// The number of updates the request makes.
    [<Params(10, 100)>]
    member val Updates = 10 with get, set

    [<GlobalSetup>]
    member this.Setup() =
        let session = sessionOfSize this.SessionKB
        stored <- StoredSession(session, Json.object [ "created", Json.int64 1700000000000L ])
        storedText <- SessionText.Of stored
        sessionText <- Json.serialize session
        changeList <- changes this.Updates
        updatesArray <- Array.ofList (toUpdates changeList)

    member private _.Commit(whole: bool) : byte[] =
        for update in updatesArray do
            Update.validate update
        let change = SessionChange(Patch.foldChecked updatesArray)
        let whole = whole && FileLog.recordsWhole change storedText.Length
        let body = if whole then null else FileLog.changeBody change
        let after = change.ApplyTo stored
        let text = SessionText.Of(after, stored, storedText)
        if whole then FileLog.snapshotPayload FileLog.KindPatch 0L 0L "id" text.Data text.Meta else FileLog.payload FileLog.KindPatch 0L 0L "id" body

    /// Parse the whole session text into JsonNode, change it, write it all back.
    [<Benchmark(Baseline = true)>]
    member _.Naive() : string = naiveRoundTrip sessionText changeList

    /// The file store's commit: the session whole when the request made many updates to a small session, else the folded change.
    [<Benchmark>]
    member this.Record() : byte[] = this.Commit true

    /// Every commit recording the folded change.
    [<Benchmark>]
    member this.RecordChange() : byte[] = this.Commit false

/// Where Sesame's time goes in the fold goal's case (100 updates to a 1 KB session), part by part, against the naive way.
[<MemoryDiagnoser>]
type FoldApplyWriteParts() =
    let session = sessionOfSize 1
    let sessionText = Json.serialize session
    let changeList = changes 100
    let updates = Array.ofList (toUpdates changeList)
    let patch = Patch.fold updates
    let applied = Patch.apply patch session

    /// Parse the whole session text into JsonNode, change it, write it all back.
    [<Benchmark(Baseline = true)>]
    member _.Naive() : string = naiveRoundTrip sessionText changeList

    /// The checks each update passes when a handler records it (depth, lone surrogates).
    [<Benchmark>]
    member _.Validate() : unit =
        for update in updates do
            Update.validate update

    /// The fold of checked updates, as a store that writes the patch asks for it.
    [<Benchmark>]
    member _.Fold() : Update list = (Patch.foldChecked updates).Updates

    /// Applying the folded patch to the session a store holds.
    [<Benchmark>]
    member _.Apply() : Json = Patch.apply patch session

    /// Applying the updates as recorded, unfolded (as the memory store does).
    [<Benchmark>]
    member _.ApplyRecorded() : Json = Patch.apply (Patch.foldChecked updates) session

    /// Writing the changed session.
    [<Benchmark>]
    member _.Write() : byte[] = Json.toUtf8 applied

/// The kinds of paths a long update log touches.
type PathMix =
    /// Every update at its own path: nothing merges, every update is kept.
    | Distinct = 0
    /// Updates that nest in and supersede each other: sets below sets, increments, appends, removes of earlier groups.
    | Overlapping = 1

/// <paramref name="count"/> updates of the given mix (see PathMix).
let longLog (mix: PathMix) (count: int) : Update list = [
    for i in 0 .. count - 1 ->
        match mix with
        | PathMix.Distinct ->
            let at = SessionPath.OfKeys("data", $"g{i % 100}", $"k{i}")
            match i % 4 with
            | 0 -> Update.set at (Json.int64 (int64 i))
            | 1 -> Update.increment at 1m
            | 2 -> Update.append at (Json.string $"v{i}")
            | _ -> Update.remove at
        | _ ->
            // Groups of six updates; each group nests in its own, and reaches back into the two before it.
            let group = i / 6
            let g (n: int) = SessionPath.OfKeys("user", $"g{max 0 n}")
            match i % 6 with
            | 0 -> Update.set ((g group).Key "profile") (Json.object [ "name", Json.string $"n{i}"; "tags", Json.array [] ])
            | 1 -> Update.set ((g group).Key("profile").Key "age") (Json.int64 (int64 i))
            | 2 -> Update.increment ((g group).Key "visits") 1m
            | 3 -> Update.append ((g group).Key("profile").Key "tags") (Json.string $"t{i}")
            | 4 -> Update.remove ((g (group - 1)).Key("profile").Key "name")
            | _ -> Update.remove (g (group - 2))
]

/// Folding long update logs: the time per update stays flat from 1,000 to 10,000 updates when the fold is linear.
[<MemoryDiagnoser>]
type FoldScaling() =
    let mutable updates: Update list = []

    /// The number of updates.
    [<Params(1000, 10000)>]
    member val Updates = 1000 with get, set

    /// The kind of paths they touch.
    [<Params(PathMix.Distinct, PathMix.Overlapping)>]
    member val Paths = PathMix.Distinct with get, set

    [<GlobalSetup>]
    member this.Setup() = updates <- longLog this.Paths this.Updates

    /// Fold the log into a patch.
    [<Benchmark>]
    member _.Fold() : Patch = Patch.fold updates

/// One small update to a 256 KB session: what a store persists is the patch, not the session.
[<MemoryDiagnoser>]
type OneUpdateTo256KB() =
    let session = sessionOfSize 256
    let sessionText = Json.serialize session
    let changeList = changes 1
    let updates = toUpdates changeList

    /// The session after the last Sesame run, kept so the apply is not optimised away.
    member val Current = Json.emptyObject with get, set

    /// Parse the whole session text into JsonNode, change it, write it all back (what a whole-session store writes).
    [<Benchmark(Baseline = true)>]
    member _.Naive() : string = naiveRoundTrip sessionText changeList

    /// Fold, apply to the session in memory, and write the patch (what a Sesame store persists).
    [<Benchmark>]
    member this.SesamePatch() : byte[] =
        let patch = Patch.fold updates
        this.Current <- Patch.apply patch session
        Patch.toUtf8 patch

/// Reading a session's stored text into a tree, as every load of a changed session does (and replay, for each session a
/// later record changed): Sesame's immutable tree against System.Text.Json's JsonDocument, which indexes the whole text
/// in pooled memory (JsonNode.Parse is no baseline: it reads nothing until asked).
[<MemoryDiagnoser>]
type ParseSession() =
    let mutable utf8: byte[] = [||]

    /// The session's size in KB of compact JSON.
    [<Params(1, 64)>]
    member val Kilobytes = 1 with get, set

    [<GlobalSetup>]
    member this.Setup() = utf8 <- Json.toUtf8 (sessionOfSize this.Kilobytes)

    /// System.Text.Json's read-only document, disposed (its memory goes back to the pool).
    [<Benchmark(Baseline = true)>]
    member _.JsonDocumentParse() : int =
        use document = System.Text.Json.JsonDocument.Parse(ReadOnlyMemory utf8)
        int document.RootElement.ValueKind

    /// Sesame's tree.
    [<Benchmark>]
    member _.SesameParse() : Json = Json.parseUtf8 (ReadOnlySpan utf8)
