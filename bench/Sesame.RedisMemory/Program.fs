/// Redis memory per session: MEMORY USAGE of everything Sesame's Redis store keeps for a session, against the same
/// JSON as one plain string, below, at and above Redis's hash-max-listpack-* limits, under Redis's default limits and
/// under suggested ones; and what the suggested limits cost in Redis time per load and commit. Writes its section of
/// docs/performance.md (between its markers, which the load test keeps).
module Sesame.RedisMemory.Program

open System
open System.Globalization
open System.IO
open System.Threading
open Sesame.LoadTest
open Sesame.RedisMemory.Cases
open Sesame.RedisMemory.Measure

let private option (args: string[]) (name: string) (fallback: string) =
    match Array.tryFindIndex ((=) name) args with
    | Some i when i + 1 < args.Length -> args[i + 1]
    | _ -> fallback

let private inv (format: string) (value: float) = value.ToString(format, CultureInfo.InvariantCulture)

let private median (values: float list) =
    let sorted = List.sort values
    let n = sorted.Length
    if n % 2 = 1 then sorted[n / 2] else (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0

/// The section's markers in docs/performance.md (the load test keeps what is between them).
let startMarker = "<!-- redis-memory:start (written by bench/Sesame.RedisMemory) -->"
let endMarker = "<!-- redis-memory:end -->"

let private writeSection (path: string) (section: string) =
    let text = if File.Exists path then File.ReadAllText path else "# Performance\n"
    let block = $"{startMarker}\n{section.TrimEnd()}\n{endMarker}\n"
    let updated =
        match text.IndexOf startMarker, text.IndexOf endMarker with
        | start, finish when start >= 0 && finish > start -> text.Substring(0, start) + block + text.Substring(finish + endMarker.Length).TrimStart('\n')
        | _ ->
            // Before the micro-benchmarks section if there is one, else at the end.
            match text.IndexOf "\n## Micro-benchmarks" with
            | i when i >= 0 -> text.Substring(0, i + 1) + block + "\n" + text.Substring(i + 1)
            | _ -> text.TrimEnd() + "\n\n" + block
    File.WriteAllText(path, updated)

let private encodings (f: Figures) = f.Encodings |> List.map (fun (e, n) -> if n = f.Sessions then e else $"{e} {n}") |> String.concat ", "

/// The table of figures, one row per case and config.
let table (figures: Figures list) =
    let header =
        "| Session | Config | JSON | Fields | Longest | Names + values | Encoding | Hash | Indexes | Sesame | Plain string | Ratio | used_memory ratio |\n"
        + "|---|---|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|\n"
    let row (f: Figures) =
        $"""| {f.Case.Name} | {f.Config.Name} | {inv "F0" f.JsonBytes} | {f.Fields} | {f.Longest} | {f.NameBytes} + {f.ValueBytes} | {encodings f} | {inv "F0" f.HashBytes} | {inv "F0" f.IndexBytes} | {inv "F0" f.SesameBytes} | {inv "F0" f.PlainBytes} | **{inv "F2" f.Ratio}x** | {inv "F2" (f.SesameUsed / f.PlainUsed)}x |"""
    header + (figures |> List.map row |> String.concat "\n") + "\n"

let private costTable (configs: Config list) (costs: (Case * Config * Cost list) list) =
    let header = "| Session | Config | Load (µs) | Commit (µs) | Load vs default | Commit vs default |\n|---|---|--:|--:|--:|--:|\n"
    let rows = [
        for case, config, runs in costs do
            let load = median [ for c in runs -> c.LoadMicroseconds ]
            let commit = median [ for c in runs -> c.CommitMicroseconds ]
            let _, _, baseRuns = costs |> List.find (fun (c, k, _) -> c.Name = case.Name && k = List.head configs)
            let baseLoad = median [ for c in baseRuns -> c.LoadMicroseconds ]
            let baseCommit = median [ for c in baseRuns -> c.CommitMicroseconds ]
            $"""| {case.Name} | {config.Name} | {inv "F1" load} | {inv "F1" commit} | {inv "F2" (load / baseLoad)}x | {inv "F2" (commit / baseCommit)}x |"""
    ]
    header + String.concat "\n" rows + "\n"

/// The section of docs/performance.md: how it was measured, the figures, what they say and what to configure.
let sectionText
    (machine: Machine.Description)
    (configs: Config list)
    (zsetEntries: int)
    (sessions: int)
    (costSessions: int)
    (rounds: int)
    (figuresTable: string)
    (costsTable: string)
    (figures: Figures list)
    (costs: (Case * Config * Cost list) list)
    =
    let date = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture)
    let byDefault, suggested = configs[0], configs[1]
    let find (case: string) (config: Config) = figures |> List.tryFind (fun f -> f.Case.Name = case && f.Config = config)
    let ratio case config =
        match find case config with
        | Some f -> $"""{inv "F2" f.Ratio}x"""
        | None -> "(not measured)"
    let bytes (pick: Figures -> float) case config =
        match find case config with
        | Some f -> inv "N0" (pick f)
        | None -> "(not measured)"
    let costRatio (case: string) (pick: Cost -> float) =
        let at config = costs |> List.tryFind (fun (c, k, _) -> c.Name = case && k = config) |> Option.map (fun (_, _, runs) -> median (List.map pick runs))
        match at suggested, at byDefault with
        | Some s, Some d -> $"""{inv "F2" (s / d)}x"""
        | _ -> "(not measured)"
    let wide = $"{byDefault.Entries + 1} fields"
    $"""## Redis memory per session

Generated by `dotnet run -c Release --project bench/Sesame.RedisMemory` on {date} ({machine.Redis};
{machine.Cores} cores, {machine.Cpu}). It starts a throwaway `redis-server`, writes {inv "N0" (float sessions)} sessions
of each kind below with Sesame's Redis store (`RedisStore.CommitAsync`, the first commit of a new session, facts
included; the signed-in kind through `MoveAsync`, as sign-in does), then sums `MEMORY USAGE key SAMPLES 0` over
**every** key in Redis (the session hashes, the shards' `expiry` and `ids` sets, the `bound` hashes and the user
indexes) and divides by the number of sessions. {inv "N0" (float sessions)} sessions put about {sessions / 64}
in each of the 64 shards' sets, more than `zset-max-listpack-entries` ({zsetEntries}), so those sets have the
encoding they have in production (a skiplist). The baseline ("Plain string") is the same JSON written as one
string key per session, under the same key names and with the same TTL (`SET key json PX ttl`). "used_memory
ratio" is the same comparison from the growth of `INFO memory`'s `used_memory`, a cross-check that also counts
the keyspace's own tables.

Configs: **default** is the server's own (`hash-max-listpack-entries {byDefault.Entries}`, `hash-max-listpack-value
{byDefault.Value}`; with no config file, as here, and in this machine's packaged `redis.conf`);
**suggested** is `hash-max-listpack-entries {suggested.Entries}`, `hash-max-listpack-value {suggested.Value}`, set
with `CONFIG SET` before the sessions are written. A hash is a compact listpack only while it has at most
`-entries` fields and every field name and value is at most `-value` bytes; past either limit, for good, it is a
hash table. Sesame's layout makes one field per node of the tree (its full path is the field's name) and
one per node of the facts, plus `#v`, `#s`, `#t` (and `#u` when signed in); "Fields" is a sample session's count,
"Longest" its longest field name or value, "Names + values" the bytes any encoding must hold.

{figuresTable}
- **The goal (at most 2x the plain string for a ~1 KB session) is not met.** The load test's 1 KB session is
  {ratio "1 KB" byDefault} under the default config: its root object's node (the list of its eight keys)
  is longer than 64 bytes, so the whole hash is a hash table ({bytes (fun f -> f.HashBytes) "1 KB" byDefault} bytes).
  Signed in it is {ratio "1 KB signed in" byDefault}: the device facts' user agent alone is longer than 64 bytes.
  Under the suggested config both are listpacks: {ratio "1 KB" suggested} and {ratio "1 KB signed in" suggested}.
- What remains is the layout itself: a listpack holds every node's full path besides its value (names and values
  together are about twice the JSON), and the shards' sets cost about {bytes (fun f -> f.IndexBytes) "1 KB" suggested}
  bytes per session in their skiplist encoding (signed in, {bytes (fun f -> f.IndexBytes) "1 KB signed in" suggested},
  with the `bound` entry and the user's own index), against one TTL on the plain string.
- At and above the limits: one value a byte over the limit takes a small session from
  {bytes (fun f -> f.SesameBytes) $"{byDefault.Value}-byte value" byDefault} to
  {bytes (fun f -> f.SesameBytes) $"{byDefault.Value + 1}-byte value" byDefault} bytes; one field over the entries
  limit takes a ~3 KB session from {bytes (fun f -> f.SesameBytes) $"{byDefault.Entries} fields" byDefault} to
  {bytes (fun f -> f.SesameBytes) $"{byDefault.Entries + 1} fields" byDefault} bytes
  ({ratio $"{byDefault.Entries} fields" byDefault} to {ratio $"{byDefault.Entries + 1} fields" byDefault}).

What the suggested config costs: Redis's own time per script call (`INFO commandstats`, `usec_per_call` of
`EVALSHA`) for a load and for a commit (a counter incremented and the last page set, as a request does) of
{costSessions} sessions of each kind, configs alternating over {rounds} rounds (medians; this machine is shared,
so only differences well above 10%% mean anything). A listpack is searched field by field, where a hash table is
one lookup, but it is one small block of memory: the 1 KB sessions' loads and commits are no slower on a listpack
(load {costRatio "1 KB" (fun c -> c.LoadMicroseconds)}, commit {costRatio "1 KB" (fun c -> c.CommitMicroseconds)} of the
default's time). The {wide} session, a listpack only under the suggested entries limit, commits at
{costRatio wide (fun c -> c.CommitMicroseconds)} and loads at {costRatio wide (fun c -> c.LoadMicroseconds)} of its
hash table's time: each node a commit reads is a scan of {byDefault.Entries + 1} fields, some microseconds per
commit, for a third of the memory.

{costsTable}"""

[<EntryPoint>]
let main args =
    CultureInfo.DefaultThreadCurrentCulture <- CultureInfo.InvariantCulture
    Thread.CurrentThread.CurrentCulture <- CultureInfo.InvariantCulture
    let sessions = int (option args "--sessions" "12800")
    let costSessions = int (option args "--cost-sessions" "2000")
    let rounds = int (option args "--rounds" "3")
    let suggested =
        match (option args "--suggest" "1024,256").Split(',') with
        | [| e; v |] -> int e, int v
        | _ -> failwith "--suggest takes entries,value (e.g. 1024,256)."
    let write = not (Array.contains "--no-write" args)
    let root = Machine.repositoryRoot ()
    let machine = Machine.describe ()
    let port, redis = Machine.startRedis ()
    use _redis = redis
    use bench = new Bench(port)
    let entries, value = bench.CurrentLimits()
    let configs = [ { Name = "default"; Entries = entries; Value = value }; { Name = "suggested"; Entries = fst suggested; Value = snd suggested } ]
    let only = option args "--cases" ""
    let cases =
        let all = Cases.all entries value
        if only = "" then all else all |> List.filter (fun c -> only.Split(',') |> Array.contains c.Name)
    printfn "Machine: %d cores, %s; %s; %s" machine.Cores machine.Cpu machine.Runtime machine.Redis
    printfn
        "redis-server on port %d; %d sessions per case; configs: %s"
        port
        sessions
        (configs |> List.map (fun c -> $"{c.Name} ({c.Entries} entries, {c.Value} bytes)") |> String.concat ", ")
    let figures = [
        for case in cases do
            for config in configs do
                let f = bench.Measure(config, case, sessions)
                printfn
                    "  %-16s %-9s json %5.0f  fields %4d  longest %4d  names %5d values %5d  %-10s hash %6.0f  indexes %5.0f  sesame %6.0f  plain %6.0f  ratio %.2fx  (used_memory %.2fx)"
                    case.Name
                    config.Name
                    f.JsonBytes
                    f.Fields
                    f.Longest
                    f.NameBytes
                    f.ValueBytes
                    (encodings f)
                    f.HashBytes
                    f.IndexBytes
                    f.SesameBytes
                    f.PlainBytes
                    f.Ratio
                    (f.SesameUsed / f.PlainUsed)
                f
    ]
    let costCases = cases |> List.filter (fun c -> [ $"{entries + 1} fields"; "1 KB"; "1 KB signed in" ] |> List.contains c.Name)
    printfn "Redis time per script call (INFO commandstats), %d sessions, %d rounds, configs alternating:" costSessions rounds
    let runs = [
        for round in 1..rounds do
            for case in costCases do
                for config in (if round % 2 = 1 then configs else List.rev configs) do
                    let cost = bench.Cost(config, case, costSessions)
                    printfn "  round %d %-16s %-9s load %6.1f µs  commit %6.1f µs" round case.Name config.Name cost.LoadMicroseconds cost.CommitMicroseconds
                    (case, config, cost)
    ]
    let costs = [
        for case in costCases do
            for config in configs do
                case,
                config,
                [
                    for c, k, cost in runs do
                        if c.Name = case.Name && k = config then cost
                ]
    ]
    printfn ""
    printfn "%s" (table figures)
    printfn "%s" (costTable configs costs)
    if write then
        let section = sectionText machine configs bench.ZsetEntries sessions costSessions rounds (table figures) (costTable configs costs) figures costs
        let path = Path.Combine(root, "docs", "performance.md")
        writeSection path section
        printfn "Wrote its section of %s" path
    0
