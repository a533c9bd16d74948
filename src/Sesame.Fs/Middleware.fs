namespace Sesame

open System
open System.Runtime.CompilerServices
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.DependencyInjection.Extensions
open Microsoft.Extensions.Options

/// The plain ASP.NET Core form of Sesame: gives every request a lazy session (no store I/O unless a
/// handler uses it) for endpoint routing, minimal APIs, MVC and Giraffe alike.
[<RequireQualifiedAccess>]
module internal SesameMiddleware =

    /// The middleware over the rest of the pipeline: each request runs inside its session scope.
    let create (runtime: SesameRuntime) (next: RequestDelegate) : RequestDelegate =
        RequestDelegate(fun context -> SessionScope.Begin(context, runtime).RunAsync next)

/// Builds Sesame's runtime when the app starts, not at its first session: from then on the store reports the sessions
/// it ends (a file store's sessions from before a restart expire as events too) and its gauge is observed. As the app
/// stops, waits for the expiry and eviction handlers queued so far, before the app's services are disposed.
[<Sealed>]
type internal SesameRuntimeStart(services: IServiceProvider) =
    let mutable runtime: SesameRuntime = null

    interface Microsoft.Extensions.Hosting.IHostedService with
        member _.StartAsync(_cancellationToken) =
            runtime <- services.GetRequiredService<SesameRuntime>()
            Task.CompletedTask

        member _.StopAsync(cancellationToken) = if isNull runtime then Task.CompletedTask else runtime.StopAsync cancellationToken

// Registration lives in the namespaces ASP.NET Core apps already open, as the framework's own does.
namespace Microsoft.Extensions.DependencyInjection

open System
open System.Runtime.CompilerServices
open Microsoft.Extensions.DependencyInjection.Extensions
open Microsoft.Extensions.Options
open Sesame

/// <summary>
/// Sesame's registration, returned by <c>services.AddSesame(...)</c>: choose where sessions live with
/// <c>.AddFileStore(path)</c>, <c>.AddMemoryStore(...)</c>, <c>.AddStore(...)</c>, or a store package's own
/// (<c>.AddRedisStore(...)</c>). Without one, sessions live in this process's memory. The last store added wins.
/// </summary>
[<Sealed>]
type SesameBuilder internal (services: IServiceCollection) =

    /// <summary>The app's services.</summary>
    member _.Services = services

    /// <summary>Keeps sessions in the store <paramref name="factory"/> makes from the app's services (when the app
    /// starts; the app's container owns it and disposes it when the app stops).</summary>
    /// <returns>This builder, for chaining.</returns>
    member this.AddStore(factory: Func<IServiceProvider, SessionStore>) : SesameBuilder =
        if isNull factory then nullArg (nameof factory)
        services.RemoveAll<SessionStore>() |> ignore
        services.AddSingleton<SessionStore>(fun provider -> factory.Invoke provider) |> ignore
        this

    /// <summary>Keeps sessions in <paramref name="store"/> (the caller owns it and disposes it).</summary>
    /// <returns>This builder, for chaining.</returns>
    member this.AddStore(store: SessionStore) : SesameBuilder =
        if isNull store then nullArg (nameof store)
        services.RemoveAll<SessionStore>() |> ignore
        services.AddSingleton<SessionStore>(store) |> ignore
        this

    /// <summary>Keeps sessions in this process's memory (the default), with the memory store's options set by
    /// <paramref name="configure"/>: fast, and lost when the app stops.</summary>
    /// <returns>This builder, for chaining.</returns>
    member this.AddMemoryStore(configure: Action<MemoryStoreOptions>) : SesameBuilder =
        let storeOptions = MemoryStoreOptions()
        if not (isNull configure) then configure.Invoke storeOptions
        this.AddStore(fun provider ->
            let time =
                match provider.GetService<TimeProvider>() with
                | null -> TimeProvider.System
                | time -> time
            new MemoryStore(storeOptions, time) :> SessionStore)

    /// <summary>Keeps sessions in this process's memory (the default): at most 100,000 sessions and 256 MiB of JSON.</summary>
    /// <returns>This builder, for chaining.</returns>
    member this.AddMemoryStore() : SesameBuilder = this.AddMemoryStore(null)

    /// <summary>
    /// Keeps sessions in a file that survives restarts and crashes (an append-only log of changes, flushed before each
    /// commit returns), with the file store's options set by <paramref name="configure"/>. The file is opened when the
    /// app starts (a file another process holds is a <see cref="T:Sesame.SessionStoreException"/> then) and the store
    /// logs through the app's logging (category <c>Sesame.FileStore</c>).
    /// </summary>
    /// <param name="path">The session file; its directory is created if missing. One app owns it at a time.</param>
    /// <param name="configure">Sets the file store's options (bounds, compaction, sweeping); may be null.</param>
    /// <returns>This builder, for chaining.</returns>
    member this.AddFileStore(path: string, configure: Action<FileStoreOptions>) : SesameBuilder =
        if String.IsNullOrWhiteSpace path then invalidArg (nameof path) "The session file's path is empty."
        let storeOptions = FileStoreOptions()
        if not (isNull configure) then configure.Invoke storeOptions
        this.AddStore(fun provider ->
            let time =
                match provider.GetService<TimeProvider>() with
                | null -> TimeProvider.System
                | time -> time
            let logger = provider.GetRequiredService<Microsoft.Extensions.Logging.ILoggerFactory>().CreateLogger "Sesame.FileStore"
            FileStore.Open(path, storeOptions, logger, time) :> SessionStore)

    /// <summary>Keeps sessions in a file that survives restarts and crashes, with default options (see the other overload).</summary>
    /// <param name="path">The session file; its directory is created if missing.</param>
    /// <returns>This builder, for chaining.</returns>
    member this.AddFileStore(path: string) : SesameBuilder = this.AddFileStore(path, null)

    /// <summary>
    /// Gives <c>HttpContext.Session</c> (ASP.NET Core's <c>ISession</c>, and what uses it: <c>GetString</c>,
    /// <c>SetInt32</c>, session TempData) over the request's Sesame session, in place of <c>AddSession</c>/<c>UseSession</c>:
    /// each ISession key is a top-level key of the session's tree, and every change a path update, committed in the
    /// request's one write before the response starts. Two requests that change different keys both keep their changes.
    /// </summary>
    /// <param name="configure">Sets when the session is loaded for ISession (see <see cref="T:Sesame.SessionPreload"/>); may be null.</param>
    /// <returns>This builder, for chaining.</returns>
    member this.AddSessionCompatibility(configure: Action<SessionCompatibilityOptions>) : SesameBuilder =
        let compatibility = SessionCompatibilityOptions()
        if not (isNull configure) then configure.Invoke compatibility
        services.RemoveAll<SessionCompatibility>() |> ignore
        services.AddSingleton<SessionCompatibility>(SessionCompatibility compatibility) |> ignore
        this

    /// <summary>Gives <c>HttpContext.Session</c> over the request's Sesame session, with default settings (see the other overload).</summary>
    /// <returns>This builder, for chaining.</returns>
    member this.AddSessionCompatibility() : SesameBuilder = this.AddSessionCompatibility(null)

/// <summary>Registering Sesame's services.</summary>
[<Extension; AbstractClass; Sealed>]
type SesameServiceCollectionExtensions =

    /// <summary>Adds Sesame with its options configured by <paramref name="configure"/>; also adds Data Protection, whose keys protect the key each session ticket is sealed with (or the ticket itself: TicketFormat.Protected).</summary>
    /// <returns>A builder to choose the store with (the in-memory store unless another is added).</returns>
    [<Extension>]
    static member AddSesame(services: IServiceCollection, configure: Action<SesameOptions>) : SesameBuilder =
        if isNull services then nullArg "services"
        services.AddOptions<SesameOptions>() |> ignore
        if not (isNull configure) then services.Configure<SesameOptions>(configure) |> ignore
        // Minimal APIs and MVC serialize results by their runtime type, and a Json value's is the class of its case:
        // Sesame's converter must be in their options to write a session's tree as the JSON it is.
        let addConverter (options: Text.Json.JsonSerializerOptions) =
            if not (options.Converters |> Seq.exists (fun c -> c :? JsonValueConverter)) then options.Converters.Insert(0, JsonValueConverter())
        services.Configure<Microsoft.AspNetCore.Http.Json.JsonOptions>(fun (o: Microsoft.AspNetCore.Http.Json.JsonOptions) -> addConverter o.SerializerOptions)
        |> ignore
        services.Configure<Microsoft.AspNetCore.Mvc.JsonOptions>(fun (o: Microsoft.AspNetCore.Mvc.JsonOptions) -> addConverter o.JsonSerializerOptions)
        |> ignore
        services.AddDataProtection() |> ignore
        // The in-memory default, unless the builder adds another store. The container owns and disposes it.
        services.TryAddSingleton<SessionStore>(fun provider ->
            let time =
                match provider.GetService<TimeProvider>() with
                | null -> TimeProvider.System
                | time -> time
            new MemoryStore(MemoryStoreOptions(), time) :> SessionStore)
        services.TryAddSingleton<SesameRuntime>(fun provider -> SesameRuntime.Create provider)
        // Sesame's meter comes from the app's IMeterFactory (one meter per host; tests isolate theirs).
        services.AddMetrics() |> ignore
        services.TryAddEnumerable(ServiceDescriptor.Singleton<Microsoft.Extensions.Hosting.IHostedService, SesameRuntimeStart>())
        services.TryAddEnumerable(ServiceDescriptor.Singleton<Microsoft.Extensions.Hosting.IHostedService, SesameStartupCheck>())
        SesameBuilder(services)

    /// <summary>Adds Sesame with default options: cookie <c>sesame</c>, 20-minute idle timeout, in-memory store.</summary>
    /// <returns>A builder to choose the store with.</returns>
    [<Extension>]
    static member AddSesame(services: IServiceCollection) : SesameBuilder = SesameServiceCollectionExtensions.AddSesame(services, null)

namespace Microsoft.AspNetCore.Builder

open System
open System.Runtime.CompilerServices
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.DependencyInjection
open Sesame

/// <summary>Adding Sesame to the request pipeline.</summary>
[<Extension; AbstractClass; Sealed>]
type SesameApplicationBuilderExtensions =

    /// <summary>Gives every request after this point a session. Place it before the endpoints that use sessions.</summary>
    /// <returns>The builder, for chaining.</returns>
    [<Extension>]
    static member UseSesame(app: IApplicationBuilder) : IApplicationBuilder =
        if isNull app then nullArg "app"
        let runtime =
            match app.ApplicationServices.GetService<SesameRuntime>() with
            | null -> raise (InvalidOperationException "Sesame's services are missing: call services.AddSesame() before app.UseSesame().")
            | runtime -> runtime
        app.Use(Func<RequestDelegate, RequestDelegate>(SesameMiddleware.create runtime))
