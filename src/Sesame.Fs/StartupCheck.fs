namespace Sesame

open System.Threading
open System.Threading.Tasks
open Microsoft.AspNetCore.DataProtection.KeyManagement
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open Microsoft.Extensions.Options

/// <summary>
/// Checks at startup what would otherwise fail quietly per request: a store shared by several
/// instances with a Data Protection key ring that is not shared (each instance would reject the
/// others' cookies, so visitors would lose their sessions as the load balancer moves them).
/// </summary>
[<Sealed>]
type internal SesameStartupCheck(store: SessionStore, keys: IOptions<KeyManagementOptions>, loggerFactory: ILoggerFactory) =
    interface IHostedService with
        member _.StartAsync(_cancellationToken: CancellationToken) =
            match store with
            | store when store.IsShared && isNull keys.Value.XmlRepository -> Log.keysNotShared (loggerFactory.CreateLogger "Sesame") (store.GetType().Name)
            | _ -> ()
            Task.CompletedTask

        member _.StopAsync(_cancellationToken: CancellationToken) = Task.CompletedTask
