using Sesame.Testing;

namespace Sesame.ExampleStore.Tests;

/// <summary>The example store keeps the whole store contract: the packaged cases, one line per case list.</summary>
public sealed class ExampleStoreContractTests
{
    // Each case on a fresh store that reads a clock of the case's own, moved instead of waiting.
    public static TheoryData<SessionStoreCase> Contract => new(SessionStoreContract.Cases(clock => new ExampleStore(clock)));

    // The same cases on the system clock, as a store on a server's time runs them: letting time pass is a real wait.
    public static TheoryData<SessionStoreCase> ContractOnRealTime => new(SessionStoreContract.Cases(() => new ExampleStore()));

    [Theory]
    [MemberData(nameof(Contract))]
    public Task Keeps_the_store_contract(SessionStoreCase contractCase) => contractCase.RunAsync();

    [Theory]
    [MemberData(nameof(ContractOnRealTime))]
    public Task Keeps_the_store_contract_on_real_time(SessionStoreCase contractCase) => contractCase.RunAsync();

    [Fact]
    public Task Keeps_the_whole_store_contract_in_one_run() =>
        SessionStoreContract.RunAllAsync(clock => new ExampleStore(clock));
}
