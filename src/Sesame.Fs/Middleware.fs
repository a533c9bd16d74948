namespace Sesame

open System
open System.Runtime.CompilerServices
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.DependencyInjection.Extensions
open Microsoft.Extensions.Options

/// <summary>
/// The plain ASP.NET Core form of Sesame: gives every request a lazy session (no store I/O unless a
/// handler uses it) for endpoint routing, minimal APIs, MVC and Giraffe alike.
/// </summary>
[<Sealed>]
type SesameMiddleware(next: RequestDelegate, runtime: SesameRuntime) =

    /// <summary>Runs the rest of the pipeline with the request's session.</summary>
    member _.InvokeAsync(context: HttpContext) : Task =
        SessionScope.Begin(context, runtime).RunAsync(fun () -> task { do! next.Invoke context })

// Registration lives in the namespaces ASP.NET Core apps already open, as the framework's own does.
namespace Microsoft.Extensions.DependencyInjection

open System
open System.Runtime.CompilerServices
open Microsoft.Extensions.DependencyInjection.Extensions
open Microsoft.Extensions.Options
open Sesame

/// <summary>Registering Sesame's services.</summary>
[<Extension; AbstractClass; Sealed>]
type SesameServiceCollectionExtensions =

    /// <summary>Adds Sesame with its options configured by <paramref name="configure"/>; also adds Data Protection, which protects the cookie.</summary>
    /// <returns>The services, for chaining.</returns>
    [<Extension>]
    static member AddSesame(services: IServiceCollection, configure: Action<SesameOptions>) : IServiceCollection =
        if isNull services then nullArg "services"
        services.AddOptions<SesameOptions>() |> ignore
        if not (isNull configure) then services.Configure<SesameOptions>(configure) |> ignore
        services.AddDataProtection() |> ignore
        // The store from the options, else the in-memory default. The container owns and disposes it.
        services.TryAddSingleton<ISessionStore>(fun provider ->
            let options = provider.GetRequiredService<IOptions<SesameOptions>>().Value
            match options.Store, options.StoreFactory with
            | null, null -> new MemoryStore() :> ISessionStore
            | null, factory -> factory.Invoke provider
            | store, _ -> store)
        services.TryAddSingleton<SesameRuntime>(fun provider -> SesameRuntime.Create provider)
        services.TryAddEnumerable(ServiceDescriptor.Singleton<Microsoft.Extensions.Hosting.IHostedService, SesameStartupCheck>())
        services

    /// <summary>Adds Sesame with default options: cookie <c>sesame</c>, 20-minute idle timeout, in-memory store.</summary>
    [<Extension>]
    static member AddSesame(services: IServiceCollection) : IServiceCollection =
        SesameServiceCollectionExtensions.AddSesame(services, null)

namespace Microsoft.AspNetCore.Builder

open System.Runtime.CompilerServices
open Sesame

/// <summary>Adding Sesame to the request pipeline.</summary>
[<Extension; AbstractClass; Sealed>]
type SesameApplicationBuilderExtensions =

    /// <summary>Gives every request after this point a session. Place it before the endpoints that use sessions.</summary>
    /// <returns>The builder, for chaining.</returns>
    [<Extension>]
    static member UseSesame(app: IApplicationBuilder) : IApplicationBuilder =
        if isNull app then nullArg "app"
        app.UseMiddleware<SesameMiddleware>()
