namespace Sesame.Testing

open System
open System.Collections.Generic

/// <summary>
/// A store broke the contract: one case failed (<see cref="P:Sesame.Testing.StoreContractException.CaseName"/>), or,
/// from <see cref="M:Sesame.Testing.SessionStoreContract.RunAllAsync(System.Collections.Generic.IEnumerable{Sesame.Testing.SessionStoreCase},System.Threading.CancellationToken)"/>,
/// several did (<see cref="P:Sesame.Testing.StoreContractException.Failures"/>). The message names each case and what
/// differed from what the contract requires. Only the contract suite raises it.
/// </summary>
[<Sealed>]
type StoreContractException private (message: string, caseName: string, detail: string, failures: IReadOnlyList<StoreContractException>, inner: exn) =
    inherit Exception(message, inner)

    /// <summary>One case failed.</summary>
    /// <param name="caseName">The case's name.</param>
    /// <param name="detail">What differed from what the contract requires.</param>
    /// <param name="inner">What the store threw, when it threw something the case did not expect; otherwise <c>null</c>.</param>
    internal new(caseName: string, detail: string, inner: exn) =
        StoreContractException($"The store broke the contract in \"{caseName}\": {detail}", caseName, detail, null, inner)

    /// <summary>Several cases of one run failed; the message lists each.</summary>
    /// <param name="failures">The failures of the cases, one each.</param>
    /// <param name="caseCount">How many cases ran.</param>
    internal new(failures: IReadOnlyList<StoreContractException>, caseCount: int) =
        if isNull failures || failures.Count = 0 then invalidArg (nameof failures) "A failed run has at least one failed case."
        let lines = [ for failure in failures -> $"{Environment.NewLine}- \"{failure.CaseName}\": {failure.Detail}" ]
        let message = $"The store broke the contract in {failures.Count} of {caseCount} cases:{String.concat String.Empty lines}"
        StoreContractException(message, null, null, failures, null)

    /// <summary>The failed case's name; <c>null</c> for a run in which several failed (see <see cref="P:Sesame.Testing.StoreContractException.Failures"/>).</summary>
    member _.CaseName = caseName

    /// <summary>What differed from what the contract requires; <c>null</c> for a run in which several failed.</summary>
    member _.Detail = detail

    /// <summary>The failure of every failed case: this one alone when one case failed.</summary>
    member this.Failures: IReadOnlyList<StoreContractException> = if isNull failures then [| this |] :> IReadOnlyList<_> else failures
