namespace Sesame

open System
open System.Text.Json
open System.Threading.Tasks

/// <summary>
/// A session as the memory and file stores hold it: its tree and its facts as compact UTF-8 JSON, one after the other
/// in one array. A parsed tree of the same session takes several times the memory (UTF-16 strings, an object per node),
/// and the many small objects of parsed facts would outlive the young generation with every session the store keeps.
/// Immutable; compared by reference, so the cache of parsed trees knows which value a tree is of.
/// </summary>
[<Sealed; AllowNullLiteral>]
type internal SessionText(utf8: byte[], dataLength: int) =
    /// Each thread's buffer and writer for serializing values.
    [<ThreadStatic; DefaultValue>]
    static val mutable private buffer: PooledBufferWriter

    [<ThreadStatic; DefaultValue>]
    static val mutable private writer: Utf8JsonWriter

    /// The tree's JSON, then the facts' JSON.
    member _.Utf8 = utf8

    /// The bytes of the tree's JSON (the size a session's limit counts).
    member _.DataLength = dataLength

    /// The bytes of the tree's JSON and the facts' JSON: what the session adds to a compacted file besides framing.
    member _.Length = utf8.Length

    /// The bytes of the facts' JSON.
    member _.FactsLength = utf8.Length - dataLength

    /// <summary>
    /// Refuses a value whose facts pass <paramref name="limit"/> (the tree's) and grew from <paramref name="before"/>'s
    /// (null: no session): flash values are the app's data, often its client's input (a form kept across a redirect),
    /// and are bounded as the tree is. A change that shrinks facts already past the limit (a read of the flash) goes
    /// through.
    /// </summary>
    static member CheckFacts(after: SessionText, before: SessionText, limit: int) =
        let facts = after.FactsLength
        if facts > limit && (isNull before || facts > before.FactsLength) then raise (SessionTooLargeException(int64 facts, limit))

    /// The tree's JSON.
    member _.Data = ReadOnlySpan(utf8, 0, dataLength)

    /// The facts' JSON.
    member _.Meta = ReadOnlySpan(utf8, dataLength, utf8.Length - dataLength)

    /// The facts, parsed.
    member this.ParseMeta() : Json = Json.parseStoredUtf8 this.Meta

    /// The tree and the facts, parsed.
    member this.Parse() : StoredSession = StoredSession(Json.parseStoredUtf8 this.Data, Json.parseStoredUtf8 this.Meta, int64 dataLength)

    /// See ParsedCache.
    [<DefaultValue>]
    val mutable private largeTree: WeakReference<StoredSession>

    interface ICachedText<StoredSession> with
        member this.CachedSize = int64 utf8.Length

        member this.LargeTree
            with get () = this.largeTree
            and set value = this.largeTree <- value

    /// A value of the two texts (copied), which must each be one compact JSON object.
    static member OfParts(data: ReadOnlySpan<byte>, meta: ReadOnlySpan<byte>) =
        let utf8 = Array.zeroCreate<byte>(data.Length + meta.Length)
        data.CopyTo(Span utf8)
        meta.CopyTo(Span(utf8, data.Length, meta.Length))
        SessionText(utf8, data.Length)

    /// The value of a session: its tree and its facts, each written as compact JSON.
    /// <exception cref="System.InvalidOperationException">The tree nests too deep to be read back.</exception>
    static member Of(session: StoredSession) : SessionText = SessionText.Of(session, null, null)

    /// <summary>
    /// The value of a session after a change to <paramref name="before"/> (null: none), which was parsed from
    /// <paramref name="beforeText"/>: when the change left the facts as they were (the same tree), their JSON is
    /// copied from the value before instead of written again, as it is on most commits.
    /// </summary>
    /// <exception cref="System.InvalidOperationException">The tree nests too deep to be read back.</exception>
    static member Of(session: StoredSession, before: StoredSession, beforeText: SessionText) : SessionText =
        if isNull SessionText.buffer then
            SessionText.buffer <- PooledBufferWriter 4096
            SessionText.writer <- new Utf8JsonWriter(SessionText.buffer, Json.storedWriterOptions)
        let buffer = SessionText.buffer
        let writer = SessionText.writer
        buffer.Reset()
        try
            writer.Reset buffer
            Json.writeTo writer session.Data
            writer.Flush()
            let dataLength = buffer.WrittenCount
            let factsUnchanged = not (isNull before) && not (isNull beforeText) && obj.ReferenceEquals(session.Meta, before.Meta)
            let factsLength = if factsUnchanged then beforeText.Utf8.Length - beforeText.DataLength else 0
            if not factsUnchanged then
                // A second root value: the writer is reset between them, so it adds no separator.
                writer.Reset buffer
                Json.writeTo writer session.Meta
                writer.Flush()
            let utf8 = Array.zeroCreate<byte>(buffer.WrittenCount + factsLength)
            buffer.WrittenSpan.CopyTo(Span utf8)
            if factsUnchanged then beforeText.Meta.CopyTo(Span(utf8, dataLength, factsLength))
            SessionText(utf8, dataLength)
        finally
            // A large session's array goes back to the shared pool rather than staying with the thread.
            if buffer.Capacity > 256 * 1024 then buffer.Release()

/// The parsed trees of the stores that hold sessions as SessionText (see ParsedCache).
[<RequireQualifiedAccess>]
module internal ParsedValues =

    /// The tree of exactly this value: kept, or parsed now (and kept).
    /// <exception cref="T:Sesame.SessionStoreException">The value cannot be read (the store wrote it, so this is a bug).</exception>
    let get (cache: ParsedCache<SessionText, StoredSession>) (id: string) (value: SessionText) : StoredSession =
        match cache.TryGet(id, value) with
        | ValueSome session -> session
        | ValueNone ->
            let session =
                try
                    value.Parse()
                with :? JsonException as e ->
                    raise (SessionStoreException($"The store holds a session it cannot read ({e.Message}).", e))
            cache.Put(id, value, session)
            session

    /// The tree of exactly this value as a completed task, for a store's load: the one kept with the tree when the
    /// cache keeps it, so that a load of a session in use allocates nothing.
    /// <exception cref="T:Sesame.SessionStoreException">The value cannot be read (the store wrote it, so this is a bug).</exception>
    let loaded (cache: ParsedCache<SessionText, StoredSession>) (id: string) (value: SessionText) : Task<StoredSession> =
        match cache.TryGetCompleted(id, value) with
        | null -> Task.FromResult(get cache id value)
        | completed -> completed

    /// Keeps the tree and facts a commit made for the value it wrote, with the value's size (known from its text, so
    /// nobody counts it again); gives the tree as kept.
    let put (cache: ParsedCache<SessionText, StoredSession>) (id: string) (value: SessionText) (session: StoredSession) =
        let kept = StoredSession(session.Data, session.Meta, int64 value.DataLength)
        cache.Put(id, value, kept)
        kept

/// Reporting the sessions the memory and file stores end, from the values they hold.
[<AutoOpen>]
module internal SessionTextReports =
    type SessionStore with

        /// Reports a session the store ended by itself, its facts parsed from its value only when the observer reads
        /// them (an empty object otherwise; also for a value not known).
        member store.ReportEndedValue(id: string, value: SessionText, reason: SessionEndReason) =
            if not (isNull store.Observer) then
                store.ReportEnded(id, (if isNull value || not store.ObserverReadsFacts then Json.emptyObject else value.ParseMeta()), reason)
