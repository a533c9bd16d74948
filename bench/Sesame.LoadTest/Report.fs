/// The results as a console table, docs/performance.md and docs/performance.svg.
module Sesame.LoadTest.Report

open System
open System.Globalization
open System.IO
open System.Text
open Sesame.LoadTest.Figures

/// One measured row of the table.
type Row = {
    Name: string
    Description: string
    Measured: Wrk.Measured
    /// Throughput relative to plain.
    Ratio: float
}

/// One fsync's latency on the disk the file store and its floor write to.
type Fsync = { When: string; MedianMs: float; P99Ms: float; Count: int }

/// A store row against its floor (the same store work without Sesame, Floors.fs).
type Comparison = {
    Store: Row
    Floor: Row
    /// The median over the rounds of the store row's requests/s over its floor's.
    OverFloor: float
    /// For a file floor: how many requests shared an fsync, and how long an fsync took in ms, under the row's load
    /// (each the median over the rounds).
    Fsyncs: (float * float) option
}

/// The table as Markdown (also printed to the console as is).
let table (rows: Row list) =
    let text = StringBuilder()
    text.AppendLine("| Route | What it does | Requests/s | p50 ms | p99 ms | × plain | App CPU µs/request | Errors |") |> ignore
    text.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|") |> ignore
    for row in rows do
        let m = row.Measured
        text.AppendLine(
            $"""| `{row.Name}` | {row.Description} | {inv "N0" m.RequestsPerSecond} | {inv "F2" m.P50Ms} | {inv "F2" m.P99Ms} | {inv "F2" row.Ratio} | {inv "F1" m.AppCpuUs} | {m.Errors} |"""
        )
        |> ignore
    text.ToString()

/// The floors' section: each store row over its floor, and what bounds the floors.
let floorText (machine: Machine.Description) (load: Wrk.Load) (fsyncs: Fsync list) (rows: Row list) (comparisons: Comparison list) =
    let text = StringBuilder()
    let line (s: string) = text.AppendLine s |> ignore
    line "A floor does a store row's work without Sesame, in the same app (`bench/Sesame.LoadTest/Floors.fs`): for Redis"
    line "the same round trips as the Redis store (per shared-cookie request one script call to load and one to commit; per"
    line "new session the commit alone; the floor's by EVALSHA, the store's by FCALL of its function library on Redis 7) on"
    line "one `ConnectionMultiplexer` opened with the store's options; for the"
    line "file store the same durable appends (a record of the same bytes per request, group-committed: one write and one"
    line "fsync for whatever is queued), the counter in a `ConcurrentDictionary`. A floor's session cookie is a plain random"
    line "id; Sesame's ticket is sealed (a MAC under a key Data Protection protects), which the new-session rows pay for"
    line "once per request."
    line "\"Sesame ÷ floor\" is the median over the rounds of the store row's requests/s over its floor's, the floor run right"
    line "after the row. Goal: at least 0.85. CPU per request comes from each row's fastest run: the app's, and"
    line "redis-server's (it shares the cores), so the difference is what Sesame adds to each."
    line ""
    line
        "| Store row | Its floor | Sesame ÷ floor | Requests/s, Sesame / floor | App CPU µs/request, Sesame / floor | Redis CPU µs/request, Sesame / floor | p99 ms, Sesame / floor |"
    line "|---|---|---:|---:|---:|---:|---:|"
    for c in comparisons do
        let s, f = c.Store.Measured, c.Floor.Measured
        let redis = if c.Store.Name.StartsWith "redis" then $"""{inv "F1" s.RedisCpuUs} / {inv "F1" f.RedisCpuUs}""" else "–"
        line
            $"""| `{c.Store.Name}` | `{c.Floor.Name}` | **{inv "F2" c.OverFloor}** | {inv "N0" s.RequestsPerSecond} / {inv "N0" f.RequestsPerSecond} | {inv "F1" s.AppCpuUs} / {inv "F1" f.AppCpuUs} | {redis} | {inv "F2" s.P99Ms} / {inv "F2" f.P99Ms} |"""
    line ""
    line "What bounds the floors:"
    let idle =
        fsyncs |> List.map (fun f -> $"""{inv "F2" f.MedianMs} ms {f.When} (median; p99 {inv "F2" f.P99Ms} ms; {f.Count} fsyncs)""") |> String.concat ", "
    line
        $"""- **fsync latency** (file): every commit waits for an fsync. On this disk one fsync of a 101-byte append, with the app idle, took {idle}. Group commit shares an fsync among the requests waiting for it, at most the {load.Connections} that wrk's connections keep in flight; one that comes while an fsync is under way waits for it to end and then for its own. So a file floor's requests/s is about its requests per fsync ÷ the fsync's latency under load:"""
    for c in comparisons do
        match c.Fsyncs with
        | Some(perFsync, ms) ->
            line
                $"""  `{c.Floor.Name}` {inv "F1" perFsync} requests per fsync, {inv "F2" ms} ms per fsync (medians over the rounds): ≈ {inv "N0" (perFsync / ms * 1000.0)} requests/s; measured {inv "N0" c.Floor.Measured.RequestsPerSecond} (fastest run)."""
        | None -> ()
    let plain = rows |> List.tryFind (fun r -> r.Name = "plain")
    let cpuShares =
        match plain with
        | None -> ""
        | Some plain ->
            comparisons
            |> List.filter (fun c -> c.Floor.Name.StartsWith "redis")
            |> List.map (fun c ->
                let f = c.Floor.Measured
                let total = f.AppCpuUs + f.RedisCpuUs
                $"""`{c.Floor.Name}` {inv "F1" total} µs (plain's {inv "F1" plain.Measured.AppCpuUs} µs ÷ that = {inv "F2" (plain.Measured.AppCpuUs / total)}; measured × plain {inv "F2" c.Floor.Ratio})""")
            |> String.concat ", "
    line
        $"""- **Redis on the same {machine.Cores} cores** (Redis): redis-server, the app and wrk share the machine's {machine.Cores} cores, so every µs Redis spends on a request is taken from the app: with the cores busy, throughput follows the CPU all of them spend per request rather than the loopback round trips.{(if cpuShares = "" then "" else " App + Redis CPU per request: " + cpuShares + " (wrk's own CPU per request, the same in every row, is left out of both).")}"""
    text.ToString()

/// The lost-update results as Markdown: per session, without and with work between change and answer.
let lostUpdateTable (results: (string * LostUpdates.Survived * LostUpdates.Survived) list) =
    let text = StringBuilder()
    text.AppendLine("| Session | Increments kept | Different keys kept | Increments kept, 10 ms work | Different keys kept, 10 ms work |") |> ignore
    text.AppendLine("|---|---:|---:|---:|---:|") |> ignore
    for name, instant, slow in results do
        text.AppendLine(
            $"| {name} | {instant.Increments} of {instant.Of} | {instant.Keys} of {instant.Of} | {slow.Increments} of {slow.Of} | {slow.Keys} of {slow.Of} |"
        )
        |> ignore
    text.ToString()

let memoryText (m: MemoryUse.Measured) =
    let mib (b: int64) = inv "F1" (float b / 1024.0 / 1024.0)
    let perSession = float m.JsonBytes / float m.Sessions
    $"""| Measure | Value |
|---|---:|
| Sessions | {m.Sessions:N0} of ~{inv "F0" perSession} bytes each, as the byte bound counts them (their compact JSON and bookkeeping) |
| What the byte bound counts | {mib m.JsonBytes} MiB |
| Managed heap they hold (after a full GC) | {mib m.HeapBytes} MiB |
| Heap ÷ what the bound counts | **{inv "F2" (float m.HeapBytes / float m.JsonBytes)}×** |
| After committing {m.Sessions / 2:N0} more sessions: sessions held (bound {m.Bound:N0}) | {m.CountAfterOverfill:N0} |
| After committing {m.Sessions / 2:N0} more: heap, and what the bound counts | {mib m.HeapAfterOverfill} MiB for {mib m.JsonBytesAfterOverfill} MiB |
| For comparison: the same sessions as parsed trees (how the store held them before) | {mib m.TreeHeapBytes} MiB, {inv "F2" (float m.TreeHeapBytes / float m.JsonBytes)}× |
"""

let private escape (s: string) = s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;")

/// A horizontal bar chart of each row's throughput relative to plain, written as SVG text.
let svg (rows: Row list) (subtitle: string) =
    let labelWidth, barWidth, rowHeight, top = 300.0, 420.0, 26.0, 64.0
    let maxRatio = max 1.1 (rows |> List.map (fun r -> r.Ratio) |> List.max |> fun m -> Math.Ceiling(m * 10.0) / 10.0)
    let x (r: float) = labelWidth + r / maxRatio * barWidth
    let width = labelWidth + barWidth + 70.0
    let height = top + rowHeight * float rows.Length + 40.0
    let s = StringBuilder()
    let add (line: string) = s.AppendLine line |> ignore
    add
        $"""<svg xmlns="http://www.w3.org/2000/svg" width="{inv "F0" width}" height="{inv "F0" height}" viewBox="0 0 {inv "F0" width} {inv "F0" height}" font-family="sans-serif" font-size="13">"""
    add $"""<rect width="100%%" height="100%%" fill="white"/>"""
    add $"""<text x="10" y="24" font-size="16" font-weight="bold">Throughput relative to no session (plain = 1.00)</text>"""
    add $"""<text x="10" y="44" fill="#555">{escape subtitle}</text>"""
    rows
    |> List.iteri (fun i row ->
        let y = top + float i * rowHeight
        let r = row.Ratio
        let colour =
            if row.Name = "plain" then "#888888"
            elif row.Name.StartsWith "aspnet" then "#d9822b"
            elif row.Name.Contains "floor" then "#3a9d5d"
            else "#2b7bd9"
        add $"""<text x="{inv "F0" (labelWidth - 8.0)}" y="{inv "F1" (y + 17.0)}" text-anchor="end">{escape row.Name}</text>"""
        add
            $"""<rect x="{inv "F0" labelWidth}" y="{inv "F1" (y + 4.0)}" width="{inv "F1" (x r - labelWidth)}" height="{inv "F1" (rowHeight - 8.0)}" fill="{colour}"/>"""
        add $"""<text x="{inv "F1" (x r + 6.0)}" y="{inv "F1" (y + 17.0)}">{inv "F2" r}</text>""")
    let bottom = top + rowHeight * float rows.Length
    for mark, label in [ 1.0, "1.0"; 0.85, "0.85" ] do
        add
            $"""<line x1="{inv "F1" (x mark)}" y1="{inv "F0" (top - 4.0)}" x2="{inv "F1" (x mark)}" y2="{inv "F0" bottom}" stroke="#333" stroke-dasharray="4 3"/>"""
        add $"""<text x="{inv "F1" (x mark)}" y="{inv "F0" (bottom + 16.0)}" text-anchor="middle" fill="#333">{label}</text>"""
    add
        $"""<text x="10" y="{inv "F0" (bottom + 34.0)}" fill="#555">grey: no session · orange: ASP.NET Core Session · blue: Sesame · green: a store's floor (its work without Sesame)</text>"""
    add "</svg>"
    s.ToString()

/// The sections of docs/performance.md that this run does not write, between their markers `<!-- name:start ... -->` and
/// `<!-- name:end -->`: the flood run's (bench/Sesame.FloodBench), Redis memory per session (bench/Sesame.RedisMemory),
/// and the analysis written by hand (the micro-benchmarks, the profiles, where the goals stand).
let keptSections = [ "flood"; "redis-memory"; "analysis" ]

/// The generated file with the sections it does not write (see keptSections) kept from the previous file, after it, in
/// the previous file's order: the runs write one file.
let keepSections (previous: string) (generated: string) =
    let blocks =
        keptSections
        |> List.choose (fun name ->
            // The start marker names the run that wrote it: any run's is kept.
            let startMarker, endMarker = $"<!-- {name}:start", DocSections.endMarker name
            match previous.IndexOf startMarker, previous.IndexOf endMarker with
            | start, finish when start >= 0 && finish > start -> Some(start, previous.Substring(start, finish + endMarker.Length - start) + "\n")
            | _ -> None)
        |> List.sortBy fst
        |> List.map snd
    if blocks.IsEmpty then generated else generated.TrimEnd() + "\n\n" + String.concat "\n" blocks

/// The whole of docs/performance.md.
let markdown
    (machine: Machine.Description)
    (load: Wrk.Load)
    (rounds: int)
    (command: string)
    (rows: Row list)
    (floorText: string)
    lostUpdates
    (memory: MemoryUse.Measured option)
    =
    let date = Figures.generatedAt ()
    let memorySection =
        match memory with
        | Some m -> memoryText m
        | None -> "Not measured in this run.\n"
    $"""# Performance

Generated by the load test on {date}. Reproduce with:

```sh
{command}
```

It builds and starts one Release app (Kestrel on 127.0.0.1, a child process), a throwaway
`redis-server` and a throwaway PostgreSQL 15 (fsync on), then drives each route with `wrk -t{load.Threads} -c{load.Connections} -d{int load.Duration.TotalSeconds}s` (latency percentiles from a
Lua `done` callback), after a {int load.WarmUp.TotalSeconds} s warm-up of the same route. Every run of a
row comes right after a run of `plain`, and its ratio is taken to that run, so the pair shares whatever
load other processes put on the machine; {rounds} rounds go over all the rows in turn. Requests/s and
latencies are each row's fastest run; "× plain" is the median of its {rounds} paired ratios.
wrk and the app share the machine's cores. "App CPU" is the app process's CPU time (user + system,
from `/proc`) over the requests it served, in the same run: what a request costs the app, less at the
mercy of other processes than throughput is (contention for caches and cores still raises it).
"Shared cookie" rows send one session's cookie with every request (all connections change one
session); "new session" rows send none, so every request creates a session.

## Machine

| | |
|---|---|
| Cores (`nproc`) | {machine.Cores} |
| CPU | {machine.Cpu} |
| Memory | {machine.Memory} |
| OS | {machine.OperatingSystem} |
| .NET | {machine.Runtime} (SDK {machine.Sdk}) |
| wrk | {machine.Wrk} |
| Redis | {machine.Redis} |

## Throughput and latency

{table rows}
![Throughput relative to plain](performance.svg)

## Stores against their floors

{floorText}
## Lost updates

100 concurrent requests on one session (HttpClient, all released together through the real HTTP
pipeline), each incrementing one counter; then, on a fresh session, 100 concurrent requests each
setting a key of its own. How many of the 100 changes the session kept, with handlers that answer
at once and with handlers that wait 10 ms (a stand-in for a database call) between changing the
session and answering, so that the requests overlap as they do in real apps:

{lostUpdateTable lostUpdates}
## Memory

The memory store filled to its default bound with ~1 KB sessions (a user, a six-item cart,
preferences, a history; each session's values its own), measured with `GC.GetTotalMemory(true)`
before and after, in a process of its own; then overfilled by half to show that the bound evicts:

{memorySection}
"""
