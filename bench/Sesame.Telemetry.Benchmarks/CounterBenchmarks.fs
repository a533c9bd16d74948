/// What listening to Sesame's meter costs: the memory-store counter (GET / increments "times"; a returning visitor,
/// so one load and one commit a request), with nobody listening against a plain MeterListener, OpenTelemetry's
/// metrics SDK, and OpenTelemetry metrics and traces together. The ratio column compares each with the unlistened
/// request of its category in the same run. Two shapes of one request:
///   pipeline  Sesame's middleware and the handler on a DefaultHttpContext: no HTTP, so Sesame's own work is most of it;
///   request   the same app over HTTP in memory (TestServer), as a client sees it.
///
///   dotnet run -c Release --project bench/Sesame.Telemetry.Benchmarks -- --filter '*'
module Sesame.Telemetry.Benchmarks.CounterBenchmarks

open System
open System.Collections.Generic
open System.Diagnostics.Metrics
open System.Net.Http
open System.Threading
open System.Threading.Tasks
open BenchmarkDotNet.Attributes
open BenchmarkDotNet.Configs
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Hosting
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.TestHost
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Hosting
open OpenTelemetry
open OpenTelemetry.Metrics
open OpenTelemetry.Trace
open Sesame

/// The counter, as the samples have it.
let private counter =
    RequestDelegate(fun ctx ->
        task {
            let! session = Session.loadAsync ctx
            let times = session |> Session.increment "times" 1m
            do! ctx.Response.WriteAsync $"{times} times!"
        })

[<MemoryDiagnoser; GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory); CategoriesColumn>]
type CounterBenchmarks() =
    let mutable host: IHost = null
    let mutable pipeline: RequestDelegate = null
    let mutable client: HttpClient = null
    let mutable cookieHeader = ""
    let mutable listener: MeterListener = null
    let mutable meterProvider: MeterProvider = null
    let mutable tracerProvider: TracerProvider = null
    /// What the plain listener aggregates, as an exporter would: counts and sums.
    let mutable measured = 0L
    let mutable sum = 0L
    let mutable total = 0.0

    let start () =
        host <-
            HostBuilder()
                .ConfigureWebHost(fun web ->
                    web
                        .UseTestServer()
                        .ConfigureServices(fun services -> services.AddSesame().AddMemoryStore() |> ignore)
                        .Configure(fun app -> app.UseSesame().Run counter)
                    |> ignore)
                .Start()
        client <- host.GetTestClient()
        let app = ApplicationBuilder(host.Services)
        app.UseSesame().Run counter
        pipeline <- app.Build()
        // A returning visitor: one request creates the session, every measured one loads and commits it.
        let first = DefaultHttpContext(RequestServices = host.Services)
        first.Request.Method <- "GET"
        first.Request.Path <- PathString "/"
        pipeline.Invoke(first).GetAwaiter().GetResult()
        let setCookie = string first.Response.Headers.SetCookie
        cookieHeader <- setCookie.Substring(0, setCookie.IndexOf ';')

    let listen () =
        listener <- new MeterListener()
        listener.InstrumentPublished <-
            fun instrument meterListener ->
                if instrument.Meter.Name = SesameTelemetry.MeterName then meterListener.EnableMeasurementEvents instrument
        listener.SetMeasurementEventCallback<int64>(fun _ value _ _ ->
            Interlocked.Increment &measured |> ignore
            Interlocked.Add(&sum, value) |> ignore)
        listener.SetMeasurementEventCallback<float>(fun _ value _ _ ->
            Interlocked.Increment &measured |> ignore
            total <- total + value)
        listener.Start()

    let openTelemetryMetrics () =
        meterProvider <- Sdk.CreateMeterProviderBuilder().AddMeter(SesameTelemetry.MeterName).AddInMemoryExporter(List<Metric>()).Build()

    let openTelemetryTraces () =
        tracerProvider <- Sdk.CreateTracerProviderBuilder().AddSource(SesameTelemetry.ActivitySourceName).Build()

    let viaPipeline () : Task =
        let context = DefaultHttpContext(RequestServices = host.Services)
        context.Request.Method <- "GET"
        context.Request.Path <- PathString "/"
        context.Request.Headers.Cookie <- cookieHeader
        pipeline.Invoke context

    let viaHttp () : Task =
        task {
            use request = new HttpRequestMessage(HttpMethod.Get, "/")
            request.Headers.Add("Cookie", cookieHeader)
            use! response = client.SendAsync request
            let! _ = response.Content.ReadAsStringAsync()
            response.EnsureSuccessStatusCode() |> ignore
        }

    [<GlobalSetup(Targets = [| "PipelineUnlistened"; "RequestUnlistened" |])>]
    member _.SetupUnlistened() = start ()

    [<GlobalSetup(Targets = [| "PipelineMeterListener"; "RequestMeterListener" |])>]
    member _.SetupMeterListener() =
        start ()
        listen ()

    [<GlobalSetup(Targets = [| "PipelineOpenTelemetryMetrics"; "RequestOpenTelemetryMetrics" |])>]
    member _.SetupOpenTelemetryMetrics() =
        start ()
        openTelemetryMetrics ()

    [<GlobalSetup(Targets = [| "PipelineOpenTelemetryMetricsAndTraces"; "RequestOpenTelemetryMetricsAndTraces" |])>]
    member _.SetupOpenTelemetryMetricsAndTraces() =
        start ()
        openTelemetryMetrics ()
        openTelemetryTraces ()

    [<GlobalCleanup>]
    member _.Cleanup() =
        if not (isNull listener) then listener.Dispose()
        if not (isNull meterProvider) then meterProvider.Dispose()
        if not (isNull tracerProvider) then tracerProvider.Dispose()
        client.Dispose()
        host.Dispose()

    /// Nobody listens to the meter: the baseline.
    [<Benchmark(Baseline = true); BenchmarkCategory("pipeline")>]
    member _.PipelineUnlistened() = viaPipeline ()

    /// A MeterListener takes every measurement.
    [<Benchmark; BenchmarkCategory("pipeline")>]
    member _.PipelineMeterListener() = viaPipeline ()

    /// OpenTelemetry's SDK aggregates the meter (counters, histograms with their buckets).
    [<Benchmark; BenchmarkCategory("pipeline")>]
    member _.PipelineOpenTelemetryMetrics() = viaPipeline ()

    /// OpenTelemetry aggregates the meter and records every span.
    [<Benchmark; BenchmarkCategory("pipeline")>]
    member _.PipelineOpenTelemetryMetricsAndTraces() = viaPipeline ()

    [<Benchmark(Baseline = true); BenchmarkCategory("request")>]
    member _.RequestUnlistened() = viaHttp ()

    [<Benchmark; BenchmarkCategory("request")>]
    member _.RequestMeterListener() = viaHttp ()

    [<Benchmark; BenchmarkCategory("request")>]
    member _.RequestOpenTelemetryMetrics() = viaHttp ()

    [<Benchmark; BenchmarkCategory("request")>]
    member _.RequestOpenTelemetryMetricsAndTraces() = viaHttp ()
