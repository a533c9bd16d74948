/// Sealed session tickets (TicketFormat.Sealed, the default): what opens, what never does, keys renewed and revoked,
/// and apps on either format reading each other's tickets.
module Sesame.Tests.TicketSealTests

open System
open System.IO
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.DataProtection
open Microsoft.AspNetCore.DataProtection.KeyManagement
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Logging
open Microsoft.Extensions.Logging.Abstractions
open Microsoft.Extensions.Time.Testing
open Expecto
open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

/// A Data Protection provider with a key ring of its own in a fresh folder, and the ring's key manager.
type private KeyRing() =
    let folder = Directory.CreateTempSubdirectory "sesame-seal-keys-"
    let services = ServiceCollection().AddDataProtection().PersistKeysToFileSystem(folder).Services.BuildServiceProvider()
    member _.Provider = services.GetRequiredService<IDataProtectionProvider>()
    member this.Protector = this.Provider.CreateProtector TicketSeal.Purpose
    member _.Keys = services.GetRequiredService<IKeyManager>()

    /// Revokes every key of the ring and waits until Data Protection refuses them (it reloads its key ring in the
    /// background after a revocation).
    member this.RevokeAll() =
        let probe = this.Protector.Protect [| 1uy |]
        this.Keys.RevokeAllKeys(DateTimeOffset.UtcNow.AddSeconds 1.0, "a test")
        let refuses () =
            try
                this.Protector.Unprotect probe |> ignore
                false
            with :? Security.Cryptography.CryptographicException ->
                true
        let waited = Diagnostics.Stopwatch.StartNew()
        while not (refuses ()) && waited.Elapsed < TimeSpan.FromSeconds 30.0 do
            Threading.Thread.Sleep 50
        Expect.isTrue (refuses ()) "Data Protection refuses the revoked keys."
    interface IDisposable with
        member _.Dispose() =
            services.Dispose()
            folder.Delete true

/// A protector that counts the payloads it opens.
type private CountingProtector(inner: IDataProtector) =
    let mutable opened = 0
    member _.Opened = opened
    interface IDataProtector with
        member _.CreateProtector(purpose: string) = inner.CreateProtector purpose
        member _.Protect(plaintext: byte[]) = inner.Protect plaintext
        member _.Unprotect(protectedData: byte[]) =
            Threading.Interlocked.Increment &opened |> ignore
            inner.Unprotect protectedData

let private ticketText () = SessionTicket.format { Id = SessionId.create (); Created = DateTimeOffset.UtcNow }

/// The ticket text a value opens to, or null.
let private opened (seal: TicketSeal) (value: string) =
    let mutable reason = null
    let mutable trustedUntil = 0L
    let text = seal.TryOpen(value, &reason, &trustedUntil)
    if isNull text then Expect.isNotNull reason "A value that opens nothing has a reason." else Expect.isNull reason "reason"
    text

let private base64Url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

let private count = Session.handler (fun s -> text (string (s |> Session.increment "n" 1m)))

/// An app on the given ticket format, over the store, with the key ring in the folder under the application name.
let private startOn (format: TicketFormat) (store: SessionStore) (keys: DirectoryInfo) =
    let services (services: IServiceCollection) =
        services.AddSesame(fun o -> o.TicketFormat <- format).AddStore(store) |> ignore
        services.AddDataProtection().SetApplicationName("sesame-seal-tests").PersistKeysToFileSystem keys |> ignore
    startHostWith InMemory services (runHandler (withSession >=> count)) (new LogCapture())

[<Tests>]
let tests =
    testList "Sealed tickets" [
        testCase "a sealed ticket opens to its text, which it carries in clear between its key and its tag"
        <| fun () ->
            use ring = new KeyRing()
            let seal = TicketSeal(ring.Protector, TimeProvider.System, NullLogger.Instance)
            let ticket = ticketText ()
            let value = seal.Seal ticket
            Expect.equal (opened seal value) ticket "It opens to its ticket."
            let parts = value.Split '.'
            Expect.equal parts.Length 4 "key.id.created.tag"
            Expect.equal $"{parts[1]}.{parts[2]}" ticket "The ticket is in clear."
            Expect.equal parts[3].Length 22 "A 128-bit tag in base64url."
            Expect.isLessThan value.Length 300 "A sealed ticket stays far below the cookie's 512 characters."
            // Another seal over the same key ring (another instance of the app) opens it too.
            Expect.equal (opened (TicketSeal(ring.Protector, TimeProvider.System, NullLogger.Instance)) value) ticket "Another instance opens it."

        testCase "no change of one character of a sealed ticket, and no character added or taken out, opens anything"
        <| fun () ->
            use ring = new KeyRing()
            let seal = TicketSeal(ring.Protector, TimeProvider.System, NullLogger.Instance)
            let value = seal.Seal(ticketText ())
            let others = base64Url + ". =%+/"
            let mutable tried = 0
            for i in 0 .. value.Length - 1 do
                for c in others do
                    if c <> value[i] then
                        let changed = value.Substring(0, i) + string c + value.Substring(i + 1)
                        Expect.isNull (opened seal changed) $"Character {i} changed to '{c}' opens nothing."
                        tried <- tried + 1
                let removed = value.Remove(i, 1)
                Expect.isNull (opened seal removed) $"Character {i} taken out opens nothing."
                Expect.isNull (opened seal (value.Insert(i, "A"))) $"A character added at {i} opens nothing."
            Expect.isGreaterThan tried 10_000 "Every position, every other character."

        testCase "a ticket sealed under another key ring opens nothing, nor do parts of tickets put together"
        <| fun () ->
            use ring = new KeyRing()
            use foreignRing = new KeyRing()
            let seal = TicketSeal(ring.Protector, TimeProvider.System, NullLogger.Instance)
            let foreign = TicketSeal(foreignRing.Protector, TimeProvider.System, NullLogger.Instance)
            let ticket = ticketText ()
            let own = seal.Seal ticket
            let forged = foreign.Seal ticket
            let partsOf (value: string) = value.Substring(0, value.IndexOf '.'), value.Substring(value.LastIndexOf '.' + 1)
            let ownKey, ownTag = partsOf own
            let foreignKey, foreignTag = partsOf forged
            Expect.isNull (opened seal forged) "Another key ring's ticket for the same id."
            Expect.isNull (opened seal $"{ownKey}.{ticket}.{foreignTag}") "This app's key with another key's tag."
            Expect.isNull (opened seal $"{foreignKey}.{ticket}.{ownTag}") "Another key with this app's tag."
            let other = ticketText ()
            Expect.isNull (opened seal $"{ownKey}.{other}.{ownTag}") "Another ticket under this app's key and tag."
            let otherTag = snd (partsOf (seal.Seal other))
            Expect.isNull (opened seal $"{ownKey}.{ticket}.{otherTag}") "A tag of this key for another ticket."

        testCase "values of a sealed ticket's shape that are not one open nothing and raise nothing"
        <| fun () ->
            use ring = new KeyRing()
            let seal = TicketSeal(ring.Protector, TimeProvider.System, NullLogger.Instance)
            let ticket = ticketText ()
            let value = seal.Seal ticket
            let key = value.Substring(0, value.IndexOf '.')
            let tag = value.Substring(value.LastIndexOf '.' + 1)
            let hostile = [
                "."
                ".."
                "..."
                $".{ticket}.{tag}"
                $"{key}..{tag}"
                $"{key}.{ticket}."
                $"{key}.{ticket}.{tag}=="
                $"{key}.{ticket}.{tag.Substring(0, 20)}=="
                $"{key}.{ticket}.{tag.Substring(0, 21)}" + "%"
                $"{key} .{ticket}.{tag}"
                $"{key}==.{ticket}.{tag}"
                $"{key}.{ticket}x.{tag}"
                $"{key}.{ticket.Replace('.', 'é')}.{tag}"
                $"{key}.{String('1', 65)}.{tag}"
                $"{String('A', 401)}.{ticket}.{tag}"
                $"{key}.{ticket}.{String('\u0000', 22)}"
                $"AAAA.{ticket}.{tag}"
            ]
            for text in hostile do
                Expect.isNull (opened seal text) $"{text} opens nothing."

        testCase "a key seals for an hour, then tickets get a new key, and those of the old one still open"
        <| fun () ->
            use ring = new KeyRing()
            let clock = FakeTimeProvider(DateTimeOffset.UtcNow)
            let logs = new LogCapture()
            let seal = TicketSeal(ring.Protector, clock, (logs :> ILoggerProvider).CreateLogger "Sesame")
            let keyOf (value: string) = value.Substring(0, value.IndexOf '.')
            let first = seal.Seal(ticketText ())
            clock.Advance(TimeSpan.FromMinutes 59.0)
            let sameHour = seal.Seal(ticketText ())
            Expect.equal (keyOf sameHour) (keyOf first) "Within the hour, the same key."
            clock.Advance(TimeSpan.FromMinutes 2.0)
            let ticket = ticketText ()
            let next = seal.Seal ticket
            Expect.notEqual (keyOf next) (keyOf first) "After the hour, a new key."
            Expect.equal (opened seal next) ticket "The new key's ticket opens."
            Expect.isNotNull (opened seal first) "The old key's ticket still opens."
            let made = logs.Entries |> List.filter (fun e -> e.EventId.Name = "SealKeyMade")
            Expect.equal made.Length 2 "Each new key is logged once."
            Expect.isTrue (made |> List.forall (fun e -> e.Level = LogLevel.Debug)) "at debug level"
            Expect.isFalse (logs.Entries |> List.exists (fun e -> e.EventId.Name = "SealKeyRefused")) "No key was refused."

        testCase "revoking the Data Protection key refuses the tickets it sealed within a minute, and new tickets get a new key"
        <| fun () ->
            use ring = new KeyRing()
            let clock = FakeTimeProvider(DateTimeOffset.UtcNow)
            let logs = new LogCapture()
            let seal = TicketSeal(ring.Protector, clock, (logs :> ILoggerProvider).CreateLogger "Sesame")
            let ticket = ticketText ()
            let before = seal.Seal ticket
            Expect.equal (opened seal before) ticket "It opens before the revocation."
            ring.RevokeAll()
            Expect.equal (opened seal before) ticket "Within the minute the key is trusted as opened."
            clock.Advance(TimeSpan.FromSeconds 61.0)
            Expect.isNull (opened seal before) "A minute after the revocation it opens nothing."
            Expect.isNull (opened (TicketSeal(ring.Protector, clock, NullLogger.Instance)) before) "Nor on another instance."
            let after = seal.Seal ticket
            Expect.notEqual (after.Substring(0, after.IndexOf '.')) (before.Substring(0, before.IndexOf '.')) "A new key."
            Expect.equal (opened seal after) ticket "The new key's ticket opens."
            let refused = logs.Entries |> List.filter (fun e -> e.EventId.Name = "SealKeyRefused")
            Expect.equal refused.Length 1 "The refused key is logged once."
            Expect.equal refused.Head.Level LogLevel.Warning "as a warning"
            Expect.stringContains refused.Head.Message "revoked" "saying why"

        testCase "a value opened or issued late in its key's trust is not trusted past it: a revoked key refuses within a minute whichever cache holds it"
        <| fun () ->
            use ring = new KeyRing()
            let clock = FakeTimeProvider(DateTimeOffset.UtcNow)
            let options = SesameOptions()
            let seal = TicketSeal(ring.Protector, clock, NullLogger.Instance)
            let cookie = SessionCookie(ring.Provider.CreateProtector SessionCookie.Purpose, seal, options, clock, NullLogger.Instance)
            let issue () =
                let context = DefaultHttpContext()
                cookie.Write(context, { Id = SessionId.create (); Created = clock.GetUtcNow() })
                let header = string context.Response.Headers.SetCookie
                header.Substring(options.Cookie.Name.Length + 1, header.IndexOf ';' - options.Cookie.Name.Length - 1)
            let opens (value: string) =
                let context = DefaultHttpContext()
                context.Request.Headers.Cookie <- $"{options.Cookie.Name}={value}"
                (cookie.TryRead context.Request).IsSome
            let issuedFirst = issue ()
            let sealedFirst = seal.Seal(ticketText ())
            Expect.isTrue (opens issuedFirst) "An issued value opens."
            ring.RevokeAll()
            clock.Advance(TimeSpan.FromSeconds 59.0)
            Expect.isTrue (opens sealedFirst) "Seen first 59 s after its key was opened: the key is still trusted."
            let issuedLate = issue ()
            Expect.isTrue (opens issuedLate) "Issued 59 s after its key was opened: the key is still trusted."
            clock.Advance(TimeSpan.FromSeconds 2.0)
            for value, what in [ issuedFirst, "issued first"; sealedFirst, "opened late"; issuedLate, "issued late" ] do
                Expect.isFalse (opens value) $"A minute after its key was last checked, the value {what} opens nothing."
            let issuedAfter = issue ()
            Expect.isTrue (opens issuedAfter) "A value issued after that is sealed with a new key, and opens."

        testCase "the app's own key opens its tickets without the key ring while other instances' keys come and go"
        <| fun () ->
            use ring = new KeyRing()
            let counting = CountingProtector(ring.Protector)
            let seal = TicketSeal(counting, TimeProvider.System, NullLogger.Instance)
            let own = seal.Seal(ticketText ())
            let others = [ for _ in 1..300 -> TicketSeal(ring.Protector, TimeProvider.System, NullLogger.Instance).Seal(ticketText ()) ]
            let before = counting.Opened
            for other in others do
                Expect.isNotNull (opened seal other) "Another instance's ticket opens."
                Expect.isNotNull (opened seal own) "The app's own ticket opens."
            Expect.equal (counting.Opened - before) 300 "Each other instance's key was opened once, the app's own not at all."

        testCase "tickets sealed and opened on many threads at once, under two instances' keys renewed meanwhile, all open"
        <| fun () ->
            use ring = new KeyRing()
            let clock = FakeTimeProvider(DateTimeOffset.UtcNow)
            let one = TicketSeal(ring.Protector, clock, NullLogger.Instance)
            let other = TicketSeal(ring.Protector, clock, NullLogger.Instance)
            let failures = Collections.Concurrent.ConcurrentBag<string>()
            let worker (n: int) =
                Task.Run(fun () ->
                    for i in 1..2_000 do
                        let ticket = ticketText ()
                        let sealer, opener = if (n + i) % 2 = 0 then one, other else other, one
                        let value = sealer.Seal ticket
                        if opened opener value <> ticket || opened sealer value <> ticket then failures.Add value
                        if n = 0 && i % 100 = 0 then clock.Advance(TimeSpan.FromMinutes 7.0))
            Task.WaitAll [| for n in 0..7 -> worker n |]
            Expect.isEmpty failures "Every ticket opened on both instances."

        testCaseTask "apps on either format open each other's tickets over one store and key ring"
        <| fun () -> task {
            let keys = Directory.CreateTempSubdirectory "sesame-seal-formats-"
            try
                let store = new MemoryStore()
                use! sealing = startOn TicketFormat.Sealed store keys
                use! protecting = startOn TicketFormat.Protected store keys
                let onSealing = Browser sealing
                let! first = onSealing.GetTextAsync "/"
                Expect.equal first "1" "A new session on the sealing app."
                Expect.isTrue (onSealing.Cookie.Value.Contains '.') "Its cookie is sealed."
                let onProtecting = Browser protecting
                onProtecting.Cookie <- onSealing.Cookie
                let! second = onProtecting.GetTextAsync "/"
                Expect.equal second "2" "The protecting app opens the sealed cookie's session."
                let fresh = Browser protecting
                let! _ = fresh.GetTextAsync "/"
                Expect.isTrue (fresh.Cookie.Value.StartsWith "CfDJ8") "The protecting app's cookie is Data Protection's."
                Expect.isFalse (fresh.Cookie.Value.Contains '.') "It has no dot."
                let back = Browser sealing
                back.Cookie <- fresh.Cookie
                let! again = back.GetTextAsync "/"
                Expect.equal again "2" "The sealing app opens the protected cookie's session."
            finally
                keys.Delete true
        }

        testCaseTask "a ticket format that is not one fails the app at startup, naming both"
        <| fun () -> task {
            let! error =
                throwsAsync<InvalidOperationException>(fun () ->
                    startHost (new MemoryStore()) (fun o -> o.TicketFormat <- enum 7) (fun app -> app.UseSesame() |> ignore) (new LogCapture()) :> Task)
            Expect.stringContains error.Message "TicketFormat.Sealed" "error.Message"
            Expect.stringContains error.Message "TicketFormat.Protected" "error.Message"
        }
    ]
