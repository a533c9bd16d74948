using System.Collections.Concurrent;

namespace Sesame;

/// <summary>Parses path text once: paths in handlers are mostly literals, so each is parsed on first use and then looked up.</summary>
internal static class PathText
{
    // Bounded, so paths built from client input cannot grow it without end.
    private const int MaxCached = 4096;

    private static readonly ConcurrentDictionary<string, Path> Parsed = new(StringComparer.Ordinal);

    /// <exception cref="ArgumentException">The text is not a path; the message says where.</exception>
    public static Path Parse(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Parsed.TryGetValue(path, out var parsed))
        {
            return parsed;
        }

        parsed = PathModule.parse(path);
        if (Parsed.Count < MaxCached)
        {
            Parsed.TryAdd(path, parsed);
        }

        return parsed;
    }
}
