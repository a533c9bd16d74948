/// The app under load: the C# sample's app (its store registration with default bounds, its endpoints) in a process of
/// its own, plus one route that reports what the store holds.
module Sesame.FloodBench.Serve

open System
open System.Diagnostics
open Microsoft.AspNetCore.Builder
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Hosting
open Sesame
open Sesame.Samples.CSharp

/// What the store holds and the managed heap, as one line: sessions, bytes held (as the byte bound counts them; -1
/// where the store has no such count), GC heap size, total managed memory. Read by reflection, so the same code runs
/// against a build from before the bounds (whose file store counted no bytes).
let stats (store: SessionStore) : string =
    let kind = store.GetType()
    let read (name: string) =
        match kind.GetProperty name with
        | null -> -1L
        | property -> Convert.ToInt64(property.GetValue store)
    let has (name: string) = not (isNull (kind.GetProperty name))
    let sessions = if has "LiveCount" then read "LiveCount" else read "Count"
    let held = if has "HeldBytes" then read "HeldBytes" else read "TotalBytes"
    $"{sessions} {held} {GC.GetGCMemoryInfo().HeapSizeBytes} {GC.GetTotalMemory false}"

/// Runs the sample's app on loopback; prints "OPENED ms stats" once the store is open, then "READY".
/// <c>tiny</c> registers the memory store with room for one session: the reference for the runtime's own working set.
let run (port: int) (storeText: string) (tiny: bool) : int =
    let builder = WebApplication.CreateBuilder([| $"--urls=http://127.0.0.1:{port}" |])
    // The sample's appsettings.json.
    builder.Configuration["Logging:LogLevel:Default"] <- "Information"
    builder.Configuration["Logging:LogLevel:Microsoft.AspNetCore"] <- "Warning"
    match StoreChoice.TryParse storeText with
    | false, _, error ->
        eprintfn "%s" error
        2
    | true, choice, _ ->
        if tiny then
            builder.Services.AddSesame(Action<SesameOptions> StoreChoice.Configure).AddMemoryStore(fun o -> o.MaxSessions <- 1) |> ignore
        else
            choice.RegisterAsync(builder.Services).GetAwaiter().GetResult()
        let app = builder.Build()
        let opening = Stopwatch.StartNew()
        let store = app.Services.GetRequiredService<SessionStore>()
        printfn "OPENED %d %s" opening.ElapsedMilliseconds (stats store)
        app.UseSesame() |> ignore
        app.MapSesameSamples() |> ignore
        app.MapGet("/_flood/stats", Func<string>(fun () -> stats store)) |> ignore
        app.Start()
        printfn "READY"
        app.WaitForShutdown()
        0
