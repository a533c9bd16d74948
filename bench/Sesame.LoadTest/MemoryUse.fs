/// How much managed heap the memory store needs per session, and whether its bound evicts.
/// Runs in a process of its own (workstation GC), so nothing else lives on the heap it measures.
module Sesame.LoadTest.MemoryUse

open System
open System.Globalization
open System.Threading
open Sesame

/// A session of about 1 KB as an app builds it: a user, a cart, preferences, a history. Every
/// session's values are its own (a parsed tree shares nothing with another session's).
let sessionJson (i: int) =
    let price (k: int) = (float ((i + k * 7) % 9000) / 100.0 + 1.0).ToString("F2", CultureInfo.InvariantCulture)
    let item (k: int) = $"""{{"sku":"SKU-{i % 100000:D5}-{k}","name":"Widget {k} of session {i}","qty":{1 + (i + k) % 5},"price":{price k}}}"""
    $"""{{"user":{{"id":{i},"name":"Visitor {i}","email":"visitor{i}@example.com","roles":["customer","newsletter"],"locale":"en-GB"}},"""
    + $""""cart":{{"items":[{item 1},{item 2},{item 3},{item 4},{item 5},{item 6},{item 7}],"currency":"EUR","coupon":null}},"""
    + $""""visits":{i % 97},"lastPage":"/products/{i}?ref=home","csrf":"{Convert.ToBase64String(BitConverter.GetBytes(int64 i * 7919L))}{i:D8}","""
    + $""""flags":{{"beta":{(i % 2 = 0).ToString().ToLowerInvariant()},"darkMode":false}},"history":["/","/products","/products/{i}","/cart","/checkout"],"searches":["blue widget","red widget {i % 1000}","gift ideas"]}}"""

/// What the measurement found.
type Measured = {
    Sessions: int
    JsonBytes: int64
    HeapBytes: int64
    /// After committing half as many sessions again: the count and the heap.
    CountAfterOverfill: int
    HeapAfterOverfill: int64
    JsonBytesAfterOverfill: int64
    Bound: int
    /// The same sessions held as parsed trees in a dictionary (as the store held them before it kept JSON).
    TreeHeapBytes: int64
}

let private fill (store: SessionStore) (first: int) (count: int) =
    let commit = { IdleTimeout = TimeSpan.FromHours 1.0; MustExist = false; MaxSizeBytes = SesameOptions.DefaultMaxSessionBytes; UserLimit = UserLimit.None }
    for i in first .. first + count - 1 do
        // A new session's first commit, as Sesame makes it: the whole tree set at the root, and the time it was created
        // among its facts.
        let created = Update.Set(SessionPath.parse SessionMeta.Created, Json.int64 (1_764_662_400_000L + int64 i))
        let patch = SessionChange(Patch.fold [ Update.Set(SessionPath.root, Json.parse (sessionJson i)) ], Patch.fold [ created ], ValueNone)
        store.CommitAsync(SessionId.create (), patch, commit, CancellationToken.None).GetAwaiter().GetResult() |> ignore

/// Fills a default memory store with its bound of ~1 KB sessions, measures the heap after a full GC,
/// then overfills it by half and measures again.
let measure () =
    let bound = MemoryStoreOptions.DefaultMaxSessions
    let before = GC.GetTotalMemory true
    let store = new MemoryStore()
    fill store 0 bound
    let heap = GC.GetTotalMemory true - before
    let json = store.TotalBytes
    fill store bound (bound / 2)
    let heapAfter = GC.GetTotalMemory true - before
    GC.KeepAlive store
    (store :> IDisposable).Dispose()
    let before = GC.GetTotalMemory true
    let trees = Collections.Concurrent.ConcurrentDictionary<string, Json>(StringComparer.Ordinal)
    for i in 0 .. bound - 1 do
        trees[SessionId.create ()] <- Json.parse (sessionJson i)
    let treeHeap = GC.GetTotalMemory true - before
    GC.KeepAlive trees
    let result = {
        Sessions = bound
        JsonBytes = json
        HeapBytes = heap
        CountAfterOverfill = store.Count
        HeapAfterOverfill = heapAfter
        JsonBytesAfterOverfill = store.TotalBytes
        Bound = bound
        TreeHeapBytes = treeHeap
    }
    result

/// The child process's one line of output, and its parsing in the parent.
let format (m: Measured) =
    $"MEMORY {m.Sessions} {m.JsonBytes} {m.HeapBytes} {m.CountAfterOverfill} {m.HeapAfterOverfill} {m.JsonBytesAfterOverfill} {m.Bound} {m.TreeHeapBytes}"

let parse (line: string) =
    let n = line.Split(' ') |> Array.skip 1 |> Array.map Int64.Parse
    {
        Sessions = int n[0]
        JsonBytes = n[1]
        HeapBytes = n[2]
        CountAfterOverfill = int n[3]
        HeapAfterOverfill = n[4]
        JsonBytesAfterOverfill = n[5]
        Bound = int n[6]
        TreeHeapBytes = n[7]
    }
