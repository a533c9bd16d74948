using Microsoft.Extensions.DependencyInjection;
using Sesame.Testing;

namespace Sesame.ExampleStore.Tests;

/// <summary>The packaged contract fails a store that breaks it, and says which case and what differed.</summary>
public sealed class BrokenStoreTests
{
    /// <summary>The example store with one promise broken: sessions never expire (every idle timeout becomes a day).</summary>
    private sealed class NeverExpiringStore(TimeProvider clock) : SessionStore
    {
        private static readonly TimeSpan Day = TimeSpan.FromDays(1);
        private readonly ExampleStore inner = new(clock);

        private static CommitOptions Stretched(CommitOptions options) =>
            new(Day, options.MustExist, options.MaxSizeBytes, options.UserLimit);

        public override Task<StoredSession?> LoadAsync(string id, TimeSpan idleTimeout, CancellationToken cancellationToken) =>
            inner.LoadAsync(id, Day, cancellationToken);

        public override Task<CommitResult> CommitAsync(string id, SessionChange change, CommitOptions options, CancellationToken cancellationToken) =>
            inner.CommitAsync(id, change, Stretched(options), cancellationToken);

        public override Task<CommitResult> MoveAsync(string? fromId, string toId, SessionChange change, CommitOptions options, CancellationToken cancellationToken) =>
            inner.MoveAsync(fromId, toId, change, Stretched(options), cancellationToken);

        public override Task<bool> DeleteAsync(string id, CancellationToken cancellationToken) => inner.DeleteAsync(id, cancellationToken);

        public override Task<SessionPage> ListAsync(SessionQuery query, CancellationToken cancellationToken) => inner.ListAsync(query, cancellationToken);
    }

    /// <summary>The example store that cannot list anything.</summary>
    private sealed class UnlistingStore(TimeProvider clock) : SessionStore
    {
        private readonly ExampleStore inner = new(clock);

        public override Task<StoredSession?> LoadAsync(string id, TimeSpan idleTimeout, CancellationToken cancellationToken) =>
            inner.LoadAsync(id, idleTimeout, cancellationToken);

        public override Task<CommitResult> CommitAsync(string id, SessionChange change, CommitOptions options, CancellationToken cancellationToken) =>
            inner.CommitAsync(id, change, options, cancellationToken);

        public override Task<CommitResult> MoveAsync(string? fromId, string toId, SessionChange change, CommitOptions options, CancellationToken cancellationToken) =>
            inner.MoveAsync(fromId, toId, change, options, cancellationToken);

        public override Task<bool> DeleteAsync(string id, CancellationToken cancellationToken) => inner.DeleteAsync(id, cancellationToken);

        public override Task<SessionPage> ListAsync(SessionQuery query, CancellationToken cancellationToken) =>
            throw new NotSupportedException("This store cannot list sessions.");
    }

    [Fact]
    public async Task A_store_that_never_expires_fails_exactly_the_expiry_cases_in_one_exception_naming_them()
    {
        var run = SessionStoreContract.RunAllAsync(clock => new NeverExpiringStore(clock));

        var failure = await Assert.ThrowsAsync<StoreContractException>(() => run);

        string[] expiryCases = ["an idle session expires and is never served after", "an expired session leaves its user's listing"];
        Assert.Equal(expiryCases, failure.Failures.Select(f => f.CaseName));
        Assert.Null(failure.CaseName);
        Assert.Contains($"in 2 of {SessionStoreContract.CaseNames.Count} cases", failure.Message);
        foreach (var name in expiryCases)
        {
            Assert.Contains(name, failure.Message);
        }
    }

    [Fact]
    public async Task A_failed_case_names_itself_and_what_differed()
    {
        var expiry = SessionStoreContract.Cases(clock => new NeverExpiringStore(clock))
            .Single(c => c.Name == "an idle session expires and is never served after");

        var failure = await Assert.ThrowsAsync<StoreContractException>(() => expiry.RunAsync());

        Assert.Equal(expiry.Name, failure.CaseName);
        Assert.Equal("expired: expected None, got Some {\"a\":1}.", failure.Detail);
        Assert.Equal($"The store broke the contract in \"{expiry.Name}\": {failure.Detail}", failure.Message);
        Assert.Same(failure, Assert.Single(failure.Failures));
    }

    [Fact]
    public async Task A_store_that_throws_fails_with_what_it_threw()
    {
        var listing = SessionStoreContract.Cases(clock => new UnlistingStore(clock))
            .Single(c => c.Name == "all live sessions can be listed page by page, each once");

        var failure = await Assert.ThrowsAsync<StoreContractException>(() => listing.RunAsync());

        Assert.IsType<NotSupportedException>(failure.InnerException);
        Assert.Equal("the store threw NotSupportedException: This store cannot list sessions.", failure.Detail);
    }

    [Fact]
    public async Task A_cancelled_run_is_cancelled_not_failed()
    {
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        var first = SessionStoreContract.Cases(clock => new ExampleStore(clock))[0];

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => first.RunAsync(cancelled.Token));
    }

    [Fact]
    public void Every_case_has_a_name_of_its_own_and_shows_it()
    {
        var cases = SessionStoreContract.Cases(clock => new ExampleStore(clock));

        Assert.Equal(SessionStoreContract.CaseNames, cases.Select(c => c.Name));
        Assert.Equal(cases.Count, cases.Select(c => c.Name).Distinct().Count());
        Assert.All(cases, c => Assert.Equal(c.Name, c.ToString()));
        Assert.Contains("200 concurrent increments of one counter add up to exactly 200", SessionStoreContract.CaseNames);
    }

    [Fact]
    public void An_app_keeps_its_sessions_in_the_example_store_through_the_builder()
    {
        var services = new ServiceCollection();
        services.AddSesame().AddExampleStore();

        using var provider = services.BuildServiceProvider();

        Assert.IsType<ExampleStore>(provider.GetRequiredService<SessionStore>());
    }
}
