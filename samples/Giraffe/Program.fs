module Sesame.Samples.Giraffe.Program

open System
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Logging
open Sesame
open Sesame.Samples.Giraffe

let private run (args: string[]) : Task<int> = task {
    let builder = WebApplication.CreateBuilder(args)
    match StoreChoice.parse builder.Configuration["store"], Telemetry.parse builder.Configuration["otel"] with
    | Error message, _
    | _, Error message ->
        eprintfn "%s" message
        return 2
    | Ok choice, Ok telemetry ->
        use loggers = LoggerFactory.Create(fun logging -> logging.AddConsole() |> ignore)
        let! opened = task {
            try
                let! store = StoreChoice.openStore choice loggers
                return Ok store
            with :? SessionStoreException as e ->
                return Error e.Message
        }
        match opened with
        | Error message ->
            // The file is in use by another instance (or cannot be read): say so, and exit with a code of our own.
            eprintfn "Cannot open the session store: %s" message
            return 3
        | Ok(store, description) ->
            use _ =
                match box store with
                | :? IDisposable as d -> d
                | _ -> null
            StoreChoice.register builder.Services choice store
            Telemetry.register builder.Services telemetry
            let app = builder.Build()
            let handle = App.webApp GiraffeShape.earlyReturn
            app.Run(fun ctx -> handle ctx :> Task)
            app.Lifetime.ApplicationStarted.Register(fun () -> printfn "Sesame sample listening on %s, store: %s" (String.Join(", ", app.Urls)) description)
            |> ignore
            do! app.RunAsync()
            return 0
}

/// Runs the sample: `dotnet run --project samples/Giraffe -- --store memory|file:PATH|redis:HOST:PORT|postgres:CONNECTION [--otel console] [--urls URL]`.
[<EntryPoint>]
let main args = (run args).GetAwaiter().GetResult()
