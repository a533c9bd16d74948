/// The sample's --otel option: OpenTelemetry on Sesame's meter and activity source.
module Sesame.Samples.Giraffe.Telemetry

open System
open Microsoft.Extensions.DependencyInjection
open OpenTelemetry.Metrics
open OpenTelemetry.Trace
open Sesame

/// Where the sample sends Sesame's metrics and spans.
type TelemetryChoice =
    /// Nowhere (dotnet-counters can still watch the meter: `dotnet-counters monitor --counters Sesame -n <process>`).
    | Off
    /// To the console, metrics every ten seconds and each span as it ends (Sesame's, inside ASP.NET Core's request spans).
    | Console

/// Reads --otel: nothing (the default), or `console`.
let parse (text: string) : Result<TelemetryChoice, string> =
    match text with
    | null
    | "" -> Ok Off
    | "console" -> Ok Console
    | other -> Error $"Unknown --otel '{other}'. Use: console."

/// Adds OpenTelemetry, listening to the meter and activity source named Sesame, when the choice asks for it.
let register (services: IServiceCollection) (choice: TelemetryChoice) : unit =
    match choice with
    | Off -> ()
    | Console ->
        services
            .AddOpenTelemetry()
            .WithMetrics(fun metrics ->
                metrics
                    .AddMeter(SesameTelemetry.MeterName)
                    .AddConsoleExporter(fun _ reader -> reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds <- Nullable 10000)
                |> ignore)
            // ASP.NET Core's own source too: its request span is the parent of Sesame's (an unrecorded parent would
            // leave them out), so a trace shows how much of a request went to its session.
            .WithTracing(fun tracing -> tracing.AddSource("Microsoft.AspNetCore", SesameTelemetry.ActivitySourceName).AddConsoleExporter() |> ignore)
        |> ignore
