using System.Text.RegularExpressions;

namespace Sesame.ExampleStore.Tests;

/// <summary>
/// docs/write-a-store.md quotes the example store: its code blocks must be the code that runs here, so the guide cannot
/// drift from a store that passes the contract.
/// </summary>
public sealed partial class GuideTests
{
    private static readonly string Root = FindRoot();

    private static string FindRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Sesame.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException($"No Sesame.sln above {AppContext.BaseDirectory}.");
    }

    private static string Read(params string[] path) => File.ReadAllText(Path.Combine([Root, .. path]));

    private static readonly string Guide = Read("docs", "write-a-store.md");

    /// <summary>The guide's fenced code blocks: (language, code).</summary>
    private static readonly (string Language, string Code)[] Blocks =
        [.. Fence().Matches(Guide).Select(m => (m.Groups["language"].Value, m.Groups["code"].Value))];

    [GeneratedRegex(@"^```(?<language>[a-z]*)\r?\n(?<code>.*?)^```", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex Fence();

    /// <summary>Code as compared: each line without its indentation, blank lines left out (a quote may be dedented
    /// or leave out a blank line, never change a line).</summary>
    private static string Normalized(string code) =>
        string.Join('\n', code.Split('\n').Select(line => line.Trim()).Where(line => line.Length > 0));

    /// <summary>Whether the code holds the quote as whole lines.</summary>
    private static bool Quotes(string code, string quote) =>
        $"\n{Normalized(code)}\n".Contains($"\n{Normalized(quote)}\n", StringComparison.Ordinal);

    private static string ExampleSources() =>
        string.Join('\n', Directory.GetFiles(Path.Combine(Root, "tests", "Sesame.ExampleStore.Tests"), "*.cs").Order().Select(File.ReadAllText));

    public static TheoryData<int> CSharpBlocks => new(Enumerable.Range(0, Blocks.Length).Where(i => Blocks[i].Language == "csharp"));

    public static TheoryData<int> FSharpBlocks => new(Enumerable.Range(0, Blocks.Length).Where(i => Blocks[i].Language == "fsharp"));

    [Theory]
    [MemberData(nameof(CSharpBlocks))]
    public void Each_CSharp_block_of_the_guide_is_code_of_the_example_store_project(int block)
    {
        var code = Blocks[block].Code;
        Assert.True(Quotes(ExampleSources(), code), $"Block {block} of the guide is not in tests/Sesame.ExampleStore.Tests:\n{code}");
    }

    [Theory]
    [MemberData(nameof(FSharpBlocks))]
    public void Each_FSharp_block_of_the_guide_is_code_of_the_Expecto_adapter(int block)
    {
        var code = Blocks[block].Code;
        Assert.True(Quotes(Read("tests", "Sesame.Tests", "StoreContract.fs"), code), $"Block {block} of the guide is not in tests/Sesame.Tests/StoreContract.fs:\n{code}");
    }

    [Fact]
    public void Every_block_of_the_guide_is_checked_code_or_a_shell_command()
    {
        Assert.NotEmpty(Blocks);
        Assert.All(Blocks, block => Assert.Contains(block.Language, new[] { "csharp", "fsharp", "shell" }));
        // Every opening fence was matched: an odd number of fences would leave a block unchecked.
        Assert.Equal(Blocks.Length * 2, Regex.Matches(Guide, "^```", RegexOptions.Multiline).Count);
    }

    [Fact]
    public void The_guide_shows_every_member_of_the_example_store()
    {
        var quoted = string.Join('\n', Blocks.Where(b => b.Language == "csharp").Select(b => Normalized(b.Code)));
        var members = Read("tests", "Sesame.ExampleStore.Tests", "ExampleStore.cs")
            .Split('\n')
            .Select(line => line.Trim())
            .Where(line => Regex.IsMatch(line, @"^(public|private|protected|internal)\s"))
            .ToList();

        Assert.NotEmpty(members);
        Assert.All(members, member => Assert.Contains(member, quoted));
    }
}
