/// What listening to Sesame's meter costs: the memory-store counter (GET / increments "times"; a returning visitor,
/// so one load and one commit a request), with nobody listening against a plain MeterListener, OpenTelemetry's
/// metrics SDK, and OpenTelemetry metrics and traces together. Two shapes of one request:
///   pipeline  Sesame's middleware and the handler on a DefaultHttpContext: no HTTP, so Sesame's own work is most of it;
///   request   the same app over HTTP in memory (TestServer), as a client sees it.
///
///   dotnet run -c Release --project bench/Sesame.Telemetry.Benchmarks -- --filter '*'     (BenchmarkDotNet)
///   dotnet run -c Release --project bench/Sesame.Telemetry.Benchmarks -- ab [rounds]      (interleaved, see Program.fs)
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

/// Who listens to Sesame's meter and activity source.
type Listening =
    | Unlistened = 0
    /// A MeterListener takes every measurement and adds it up, as the simplest exporter would.
    | MeterListener = 1
    /// OpenTelemetry's SDK aggregates the meter (counters, histograms with their buckets), exporting on demand only.
    | OpenTelemetryMetrics = 2
    /// OpenTelemetry aggregates the meter and records every span.
    | OpenTelemetryMetricsAndTraces = 3

/// Starts listening as asked; disposing the result stops it.
let listen (listening: Listening) : IDisposable =
    let stops = ResizeArray<IDisposable>()
    if listening = Listening.MeterListener then
        let measured = ref 0L
        let sum = ref 0L
        let total = ref 0.0
        let listener = new MeterListener()
        listener.InstrumentPublished <-
            fun instrument meterListener -> if instrument.Meter.Name = SesameTelemetry.MeterName then meterListener.EnableMeasurementEvents instrument
        listener.SetMeasurementEventCallback<int64>(fun _ value _ _ ->
            Interlocked.Increment &measured.contents |> ignore
            Interlocked.Add(&sum.contents, value) |> ignore)
        listener.SetMeasurementEventCallback<float>(fun _ value _ _ ->
            Interlocked.Increment &measured.contents |> ignore
            total.Value <- total.Value + value)
        listener.Start()
        stops.Add listener
    if listening = Listening.OpenTelemetryMetrics || listening = Listening.OpenTelemetryMetricsAndTraces then
        stops.Add(Sdk.CreateMeterProviderBuilder().AddMeter(SesameTelemetry.MeterName).AddInMemoryExporter(List<Metric>()).Build())
    if listening = Listening.OpenTelemetryMetricsAndTraces then
        stops.Add(Sdk.CreateTracerProviderBuilder().AddSource(SesameTelemetry.ActivitySourceName).Build())
    {
        new IDisposable with
            member _.Dispose() =
                for stop in stops do
                    stop.Dispose()
    }

/// The counter, as the samples have it.
let private counter =
    RequestDelegate(fun ctx -> task {
        let! session = Session.loadAsync ctx
        let times = session |> Session.increment "times" 1m
        do! ctx.Response.WriteAsync $"{times} times!"
    })

/// The sample's counter app on the memory store, with one returning visitor's cookie.
[<Sealed>]
type CounterApp() =
    let host =
        HostBuilder()
            .ConfigureWebHost(fun web ->
                web
                    .UseTestServer()
                    .ConfigureServices(fun services -> services.AddSesame().AddMemoryStore() |> ignore)
                    .Configure(fun app -> app.UseSesame().Run counter)
                |> ignore)
            .Start()
    let client = host.GetTestClient()
    let pipeline =
        let app = ApplicationBuilder(host.Services)
        app.UseSesame().Run counter
        app.Build()
    let context () =
        let context = DefaultHttpContext(RequestServices = host.Services)
        context.Request.Method <- "GET"
        context.Request.Path <- PathString "/"
        context
    // A returning visitor: one request creates the session, every measured one loads and commits it.
    let cookieHeader =
        let first = context ()
        pipeline.Invoke(first).GetAwaiter().GetResult()
        let setCookie = string first.Response.Headers.SetCookie
        setCookie.Substring(0, setCookie.IndexOf ';')

    /// One request through Sesame's middleware and the handler, no HTTP.
    member _.ViaPipeline() : Task =
        let request = context ()
        request.Request.Headers.Cookie <- cookieHeader
        pipeline.Invoke request

    /// One request over HTTP in memory.
    member _.ViaHttp() : Task = task {
        use request = new HttpRequestMessage(HttpMethod.Get, "/")
        request.Headers.Add("Cookie", cookieHeader)
        use! response = client.SendAsync request
        let! _ = response.Content.ReadAsStringAsync()
        response.EnsureSuccessStatusCode() |> ignore
    }

    interface IDisposable with
        member _.Dispose() =
            client.Dispose()
            host.Dispose()

[<MemoryDiagnoser; GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory); CategoriesColumn; MedianColumn; MinColumn>]
type CounterBenchmarks() =
    let mutable app: CounterApp = Unchecked.defaultof<_>
    let mutable listening: IDisposable = null

    let start (mode: Listening) =
        app <- new CounterApp()
        listening <- listen mode

    [<GlobalSetup(Targets = [| "PipelineUnlistened"; "RequestUnlistened" |])>]
    member _.SetupUnlistened() = start Listening.Unlistened

    [<GlobalSetup(Targets = [| "PipelineMeterListener"; "RequestMeterListener" |])>]
    member _.SetupMeterListener() = start Listening.MeterListener

    [<GlobalSetup(Targets = [| "PipelineOpenTelemetryMetrics"; "RequestOpenTelemetryMetrics" |])>]
    member _.SetupOpenTelemetryMetrics() = start Listening.OpenTelemetryMetrics

    [<GlobalSetup(Targets = [| "PipelineOpenTelemetryMetricsAndTraces"; "RequestOpenTelemetryMetricsAndTraces" |])>]
    member _.SetupOpenTelemetryMetricsAndTraces() = start Listening.OpenTelemetryMetricsAndTraces

    [<GlobalCleanup>]
    member _.Cleanup() =
        listening.Dispose()
        (app :> IDisposable).Dispose()

    /// Nobody listens to the meter: the baseline.
    [<Benchmark(Baseline = true); BenchmarkCategory("pipeline")>]
    member _.PipelineUnlistened() = app.ViaPipeline()

    [<Benchmark; BenchmarkCategory("pipeline")>]
    member _.PipelineMeterListener() = app.ViaPipeline()

    [<Benchmark; BenchmarkCategory("pipeline")>]
    member _.PipelineOpenTelemetryMetrics() = app.ViaPipeline()

    [<Benchmark; BenchmarkCategory("pipeline")>]
    member _.PipelineOpenTelemetryMetricsAndTraces() = app.ViaPipeline()

    [<Benchmark(Baseline = true); BenchmarkCategory("request")>]
    member _.RequestUnlistened() = app.ViaHttp()

    [<Benchmark; BenchmarkCategory("request")>]
    member _.RequestMeterListener() = app.ViaHttp()

    [<Benchmark; BenchmarkCategory("request")>]
    member _.RequestOpenTelemetryMetrics() = app.ViaHttp()

    [<Benchmark; BenchmarkCategory("request")>]
    member _.RequestOpenTelemetryMetricsAndTraces() = app.ViaHttp()
