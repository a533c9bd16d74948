namespace Sesame

open Microsoft.AspNetCore.Http.Features

/// <summary>
/// Sesame's own features of a request (its session handle and scope, what an earlier scope left), read and set through
/// the feature collection's indexer rather than <c>Get&lt;T&gt;</c> and <c>Set&lt;T&gt;</c>.
/// </summary>
/// <remarks>
/// <c>Get&lt;T&gt;</c> is a generic virtual method: each call through the interface resolves its target at run time,
/// and Kestrel's answers a type that is not one of its own only after comparing it with each of those and then asking
/// the connection's features. A request that uses its session asks several times; the indexer is a plain interface
/// call with the same answer (ASP.NET Core's own collections implement <c>Get&lt;T&gt;</c> by it).
/// </remarks>
[<RequireQualifiedAccess>]
module internal RequestFeatures =

    /// The request's feature of this type, or null.
    let inline get<'feature when 'feature: not struct> (features: IFeatureCollection) : 'feature =
        match features[typeof<'feature>] with
        | :? 'feature as feature -> feature
        | _ -> Unchecked.defaultof<'feature>

    /// Sets (or, with null, removes) the request's feature of this type.
    let inline set<'feature when 'feature: not struct> (features: IFeatureCollection) (feature: 'feature) = features[typeof<'feature>] <- box feature
