namespace Sesame.Samples.CSharp;

/// <summary>Which store the sample runs on, from its <c>--store</c> option: <c>memory</c> (the default) or <c>file:PATH</c>.</summary>
public sealed record StoreChoice(string? FilePath)
{
    /// <summary>What the start-up line says about the store.</summary>
    public string Description =>
        FilePath is null ? "memory (sessions are lost when the app stops)" : $"file {FilePath} (sessions survive restarts)";

    /// <summary>
    /// Where Data Protection keys go: beside a session file, so cookies stay valid across restarts even on a
    /// machine with no user profile; <c>null</c> (the ASP.NET Core default) for the memory store.
    /// </summary>
    public string? KeyDirectory => FilePath is null ? null : System.IO.Path.GetFullPath(FilePath) + ".keys";

    /// <summary>Reads the <c>--store</c> option.</summary>
    public static bool TryParse(string? text, out StoreChoice choice, out string error)
    {
        error = "";
        switch (text)
        {
            case null or "" or "memory":
                choice = new StoreChoice((string?)null);
                return true;
            case not null when text.StartsWith("file:", StringComparison.Ordinal) && text.Length > "file:".Length:
                choice = new StoreChoice(text["file:".Length..]);
                return true;
            default:
                choice = new StoreChoice((string?)null);
                error = $"Unknown store '{text}'. Use: memory, file:PATH.";
                return false;
        }
    }

    /// <summary>Sets the chosen store in Sesame's options.</summary>
    public void Apply(SesameOptions options)
    {
        if (FilePath is null)
        {
            options.UseMemoryStore();
        }
        else
        {
            options.UseFileStore(FilePath);
        }
    }
}
