/// What a piece of work allocates, by type: the runtime's allocation ticks (one event every ~100 KB allocated, naming
/// the type of the object that crossed the mark), counted while the work runs. A sample, not an exact account: types
/// that take a larger share of the bytes show up in proportion.
module Sesame.Benchmarks.AllocationTicks

open System.Collections.Concurrent
open System.Diagnostics.Tracing

/// Runs the work with the runtime's allocation ticks on; gives the ticks counted by type name, most first.
let sample (work: unit -> unit) : (string * int) list =
    let counts = ConcurrentDictionary<string, int>()
    let listener = {
        new EventListener() with
            override this.OnEventSourceCreated source =
                // Keyword 0x1: the GC's events, among them GCAllocationTick.
                if source.Name = "Microsoft-Windows-DotNETRuntime" then
                    this.EnableEvents(source, EventLevel.Verbose, LanguagePrimitives.EnumOfValue<int64, EventKeywords> 1L)
            override _.OnEventWritten e =
                if e.EventName = "GCAllocationTick_V4" then
                    let name = string e.Payload[e.PayloadNames.IndexOf "TypeName"]
                    counts.AddOrUpdate(name, 1, fun _ c -> c + 1) |> ignore
    }
    try
        work ()
    finally
        listener.Dispose()
    [ for KeyValue(name, count) in counts -> name, count ] |> List.sortByDescending snd
