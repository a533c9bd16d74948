/// The per-request work, step by step: validating the cookie, loading the session from the memory
/// store, folding the request's updates, serializing the commit, and a whole one-key-change request
/// without HTTP. Sessions of 1 KB and 16 KB show which costs grow with the session and which do not.
///
///   dotnet fsi build.fsx bench -- --filter '*RequestBenchmarks*'
module Sesame.Benchmarks.RequestBenchmarks

open System
open System.Threading
open BenchmarkDotNet.Attributes
open Microsoft.AspNetCore.DataProtection
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.Logging.Abstractions
open Sesame

/// A session of about <paramref name="kilobytes"/> KB of compact JSON: a user, a cart that grows
/// to the size wanted, preferences and a counter.
let sessionOf (kilobytes: int) =
    let item (k: int) = $"""{{"sku":"SKU-{k:D5}","name":"Widget number {k}","qty":{1 + k % 5},"price":{10 + k % 90}.99}}"""
    let build (items: int) =
        let cart = String.Join(",", Array.init items item)
        Json.parse
            $"""{{"user":{{"id":4711,"name":"Ada Lovelace","email":"ada@example.com","roles":["customer","newsletter"]}},"cart":{{"items":[{cart}],"currency":"EUR"}},"prefs":{{"theme":"dark","locale":"en-GB"}},"visits":1}}"""
    let target = int64 kilobytes * 1024L
    let rec grow items =
        let json = build items
        if JsonSize.utf8Length json >= target then json else grow (items + 1)
    grow 1

let private commitOptions = {
    IdleTimeout = TimeSpan.FromMinutes 20.0
    MustExist = true
    MaxSizeBytes = SesameOptions.DefaultMaxSessionBytes
    UserLimit = UserLimit.None
}

/// Cookie validation: Data Protection's unprotect, and Sesame's read of the request's cookie.
[<MemoryDiagnoser>]
type CookieBenchmarks() =
    let options = SesameOptions()
    let protector = (EphemeralDataProtectionProvider() :> IDataProtectionProvider).CreateProtector "Sesame.SessionCookie.v1"
    let seal =
        TicketSeal((EphemeralDataProtectionProvider() :> IDataProtectionProvider).CreateProtector TicketSeal.Purpose, TimeProvider.System, NullLogger.Instance)
    let cookie = SessionCookie(protector, seal, options, TimeProvider.System, NullLogger.Instance)
    let ticket = { Id = SessionId.create (); Created = DateTimeOffset.UtcNow }
    let protectedValue = protector.Protect(SessionTicket.format ticket)
    let context = DefaultHttpContext()
    do context.Request.Headers.Cookie <- $"{options.Cookie.Name}={protectedValue}"

    /// The cryptography alone: what validating a cookie costs without a cache.
    [<Benchmark(Baseline = true)>]
    member _.Unprotect() = protector.Unprotect protectedValue

    /// What a request pays to read its session ticket from the cookie.
    [<Benchmark>]
    member _.ReadCookie() =
        match cookie.TryRead context.Request with
        | ValueSome ticket -> ticket.Id
        | ValueNone -> null

/// A store that holds one tree and stores nothing: what a request costs apart from the store's work.
[<Sealed>]
type private InertStore(tree: Json) =
    inherit SessionStore()
    static let committed = Threading.Tasks.Task.FromResult CommitResult.Committed
    let loaded = Threading.Tasks.Task.FromResult(StoredSession tree)

    override _.LoadAsync(_, _, _) = loaded
    override _.CommitAsync(_, _, _, _) = committed
    override _.MoveAsync(_, _, _, _, _) = committed
    override _.DeleteAsync(_, _) = Threading.Tasks.Task.FromResult true
    override _.ListAsync(_, _) = Threading.Tasks.Task.FromResult SessionPage.Empty

/// The session's own steps, for 1 KB and 16 KB sessions in the memory store.
[<MemoryDiagnoser>]
type SessionBenchmarks() =
    let mutable store: SessionStore = null
    let mutable inert: SessionStore = null
    let mutable ticket = { Id = SessionId.create (); Created = DateTimeOffset.UtcNow }
    let mutable wholeSession = Patch.empty
    let visits = SessionPath.parse "visits"
    let options = SesameOptions()
    let oneKeyChange = Patch.fold [ Update.increment visits 1m ]
    let oneKeyCommit = SessionChange oneKeyChange
    let oneKeyUpdates = [| Update.increment visits 1m |]
    let context = DefaultHttpContext()
    let readTicket = Func<HttpRequest, SessionTicket voption>(fun _ -> ValueSome ticket)
    let signIns = RecentSignIns TimeProvider.System

    /// The session's size in KB of compact JSON.
    [<Params(1, 16)>]
    member val SessionKB = 1 with get, set

    [<GlobalSetup>]
    member this.Setup() =
        let session = sessionOf this.SessionKB
        store <- new MemoryStore()
        inert <- InertStore(session)
        wholeSession <- Patch.fold [ Update.Set(SessionPath.root, session) ]
        store.CommitAsync(ticket.Id, SessionChange wholeSession, { commitOptions with MustExist = false }, CancellationToken.None).Wait()

    /// Loading the session from the memory store (a hit).
    [<Benchmark>]
    member _.Load() = store.LoadAsync(ticket.Id, commitOptions.IdleTimeout, CancellationToken.None).Result

    /// Folding a one-key change (an increment) into a patch.
    [<Benchmark>]
    member _.FoldOneKeyChange() = Patch.fold oneKeyUpdates

    /// Serializing the patch of a one-key change, as a persistent store writes it: must not grow with the session.
    [<Benchmark>]
    member _.PatchToUtf8OneKeyChange() = Patch.toUtf8 oneKeyChange

    /// Serializing the patch that creates the whole session (a new session's first commit).
    [<Benchmark>]
    member _.PatchToUtf8WholeSession() = Patch.toUtf8 wholeSession

    /// The memory store's commit of a one-key change: the store write itself.
    [<Benchmark>]
    member _.MemoryStoreCommitOneKeyChange() = store.CommitAsync(ticket.Id, oneKeyCommit, commitOptions, CancellationToken.None).Result

    /// A whole request that changes one key, without HTTP: a session handle, load, increment, commit.
    [<Benchmark>]
    member _.RequestOneKeyChange() =
        let handle = SessionHandle(context, readTicket, store, options, TimeProvider.System, NullLogger.Instance, signIns, null)
        handle.LoadAsync().Wait()
        handle.Increment(visits, 1m) |> ignore
        handle.CommitAsync(CancellationToken.None).Wait()
        handle.Close()

    /// The same request on a store that stores nothing: the session handle's own cost, which must not grow with the session.
    [<Benchmark>]
    member _.RequestOneKeyChangeWithoutStore() =
        let handle = SessionHandle(context, readTicket, inert, options, TimeProvider.System, NullLogger.Instance, signIns, null)
        handle.LoadAsync().Wait()
        handle.Increment(visits, 1m) |> ignore
        handle.CommitAsync(CancellationToken.None).Wait()
        handle.Close()

    /// A whole request that only reads one value, without HTTP.
    [<Benchmark>]
    member _.RequestReadOnly() =
        let handle = SessionHandle(context, readTicket, store, options, TimeProvider.System, NullLogger.Instance, signIns, null)
        handle.LoadAsync().Wait()
        let visits = handle.TryFind visits
        handle.CommitAsync(CancellationToken.None).Wait()
        handle.Close()
        visits

/// The exact arithmetic behind every increment (done twice per request: once to show the handler
/// the new value, once by the store against the stored value).
[<MemoryDiagnoser>]
type IncrementBenchmarks() =
    let counter = JsonNumber.Parse "123456"
    let one = JsonNumber.OfDecimal 1m

    [<Benchmark>]
    member _.JsonNumberAdd() = JsonNumber.Add(counter, one)
