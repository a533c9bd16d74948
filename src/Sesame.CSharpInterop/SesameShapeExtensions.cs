using System.Text.Json.Nodes;

namespace Sesame;

/// <summary>Changing what a C# app keeps in its sessions: migrations over the session as a mutable <see cref="System.Text.Json.Nodes.JsonObject"/>.</summary>
public static class SesameShapeExtensions
{
    /// <summary>
    /// Adds the migration from shape version <paramref name="fromVersion"/> to <paramref name="fromVersion"/> + 1: a
    /// session stored at that version is changed by <paramref name="migrate"/> as it is loaded, and stored migrated with
    /// the request's next change (see <see cref="SesameOptions.Migrations"/>). Raise <see cref="SesameOptions.ShapeVersion"/>
    /// to the version the last migration reaches.
    /// </summary>
    /// <param name="options">Sesame's options.</param>
    /// <param name="fromVersion">The version the migration starts from: the one after the last migration added (any, for the first).</param>
    /// <param name="migrate">Changes the session (a copy of its tree, which the migration may change freely) from the old
    /// shape to the new, e.g. <c>s =&gt; { s["cart"]!["lines"] = ...; s["cart"]!.AsObject().Remove("items"); }</c>. It
    /// may run on every load of an old session until it is next changed, and concurrently: it must only change the tree
    /// it is given. Sesame stores only what it changed.</param>
    /// <returns>The options, for chaining.</returns>
    /// <exception cref="ArgumentException">The version is negative or does not follow the last migration's.</exception>
    public static SesameOptions AddMigration(this SesameOptions options, int fromVersion, Action<System.Text.Json.Nodes.JsonObject> migrate)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(migrate);
        options.Migrations.Add(fromVersion, tree =>
        {
            var node = JsonModule.toJsonNode(tree).AsObject();
            migrate(node);
            return JsonModule.ofJsonNode(node);
        });
        return options;
    }
}
