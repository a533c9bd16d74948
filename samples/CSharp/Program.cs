// node-sesame's examples, a shopping cart, and login/logout with a "your devices" page (/login, /me, /devices;
// AccountEndpoints.cs, a demo with no passwords), as a C# minimal-API app:
//   dotnet run --project samples/CSharp                       (http://localhost:5001, memory store)
//   dotnet run --project samples/CSharp -- --store file:sessions.db --urls http://localhost:5002
//   dotnet run --project samples/CSharp -- --store redis:localhost:6379   (any number of instances, one Redis)
//   dotnet run --project samples/CSharp -- --store "postgres:Host=localhost;Username=app;Database=app"   (any number of instances, one database)
//   dotnet run --project samples/CSharp -- --otel console      (Sesame's metrics and spans on the console)
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using Sesame;
using Sesame.Samples.CSharp;

var builder = WebApplication.CreateBuilder(args);

// The F# sample takes port 5000; this one defaults to 5001 so both can run.
if (string.IsNullOrEmpty(builder.Configuration["urls"]))
{
    builder.WebHost.UseUrls("http://localhost:5001");
}

if (!StoreChoice.TryParse(builder.Configuration["store"], out var store, out var error))
{
    Console.Error.WriteLine(error);
    return 2;
}

await store.RegisterAsync(builder.Services);

// --otel console: OpenTelemetry on Sesame's meter and activity source (both named "Sesame"), to the console.
switch (builder.Configuration["otel"])
{
    case null or "":
        break;
    case "console":
        builder.Services.AddOpenTelemetry()
            .WithMetrics(metrics => metrics
                .AddMeter(SesameTelemetry.MeterName)
                .AddConsoleExporter((_, reader) => reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = 10_000))
            // ASP.NET Core's own source too: its request span is the parent of Sesame's (an unrecorded parent would
            // leave them out), so a trace shows how much of a request went to its session.
            .WithTracing(tracing => tracing.AddSource("Microsoft.AspNetCore", SesameTelemetry.ActivitySourceName).AddConsoleExporter());
        break;
    default:
        Console.Error.WriteLine($"Unknown --otel '{builder.Configuration["otel"]}'. Use: console.");
        return 2;
}

var app = builder.Build();
try
{
    app.UseSesame(); // opens the store
}
catch (SessionStoreException e)
{
    // The file is in use by another instance (or cannot be read): say so, and exit with a code of our own.
    Console.Error.WriteLine(e.Message);
    return 3;
}
app.MapSesameSamples();
app.Lifetime.ApplicationStarted.Register(() =>
    Console.WriteLine($"Sesame C# sample listening on {string.Join(", ", app.Urls)}, store: {store.Description}"));
app.Run();
return 0;
