module Sesame.Samples.Giraffe.Program

open System
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.DependencyInjection
open Sesame
open Sesame.Samples.Giraffe

/// Runs the sample: `dotnet run --project samples/Giraffe -- --store memory --urls http://localhost:5000`.
[<EntryPoint>]
let main args =
    let builder = WebApplication.CreateBuilder(args)
    match StoreChoice.parse builder.Configuration["store"] with
    | Error message ->
        eprintfn "%s" message
        2
    | Ok choice ->
        let store, description = StoreChoice.openStore choice
        builder.Services.AddSesame(fun options -> options.Store <- store) |> ignore
        let app = builder.Build()
        let handle = App.webApp GiraffeShape.earlyReturn
        app.Run(fun ctx -> handle ctx :> Threading.Tasks.Task)
        app.Lifetime.ApplicationStarted.Register(fun () ->
            printfn "Sesame sample listening on %s, store: %s" (String.Join(", ", app.Urls)) description)
        |> ignore
        app.Run()
        0
