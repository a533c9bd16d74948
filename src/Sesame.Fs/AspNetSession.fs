namespace Sesame

open System
open System.Collections.Generic
open System.Text
open System.Threading
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Http.Features
open Microsoft.Extensions.Logging

/// <summary>
/// How ASP.NET Core's <c>ISession</c> values (byte arrays) are kept in a Sesame session's tree, one top-level key each,
/// in a form every reader of the tree understands.
/// </summary>
/// <remarks>
/// <para>Bytes that are valid UTF-8 text without control characters (tab, line feed and carriage return allowed) are
/// kept as a JSON string: what <c>SetString</c> writes reads as plain text to Sesame's own API
/// (<c>session.Get&lt;string&gt;("name")</c>, <c>Session.tryGet&lt;string&gt; "name"</c>), to tools and in the store.
/// Decoding valid UTF-8 and encoding it again gives the very same bytes, so this loses nothing.</para>
/// <para>Any other bytes are kept as base64 in a small tagged object, <c>{"$base64": "AAAABQ=="}</c>: what
/// <c>SetInt32</c> writes (four big-endian bytes, usually with zero bytes among them) or serialized binary data. A
/// string of control characters would be valid JSON too, but it is not text, and keeping it visibly binary says so.</para>
/// <para>Reading gives a string's UTF-8 bytes and a tagged object's decoded bytes. Any other value (one Sesame's own
/// API set: a number, an object) reads as its compact JSON text in UTF-8, so <c>GetString</c> shows it.</para>
/// </remarks>
[<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module SessionBytes =

    /// <summary>The one property of the object that holds bytes that are not text, as base64: <c>$base64</c>.</summary>
    [<Literal>]
    let Tag = "$base64"

    let private isText (bytes: ReadOnlySpan<byte>) =
        let mutable text = Unicode.Utf8.IsValid bytes
        let mutable i = 0
        while text && i < bytes.Length do
            let b = bytes[i]
            if b < 0x20uy && b <> 0x09uy && b <> 0x0Auy && b <> 0x0Duy then text <- false
            i <- i + 1
        text

    /// <summary>The JSON an ISession value is kept as: a string for text, <c>{"$base64": …}</c> for other bytes.</summary>
    /// <exception cref="System.ArgumentNullException">The bytes are null.</exception>
    let toJson (bytes: byte[]) : Json =
        if isNull bytes then nullArg (nameof bytes)
        if isText (ReadOnlySpan bytes) then Json.string (Encoding.UTF8.GetString bytes) else Json.object [ Tag, Json.string (Convert.ToBase64String bytes) ]

    /// <summary>The bytes ISession reads for a value of the tree (see the module's remarks).</summary>
    let ofJson (json: Json) : byte[] =
        match json with
        | Json.String text -> Encoding.UTF8.GetBytes text
        | Json.Object o when o.Count = 1 ->
            match o.Find Tag with
            | ValueSome(Json.String encoded) ->
                let buffer = Array.zeroCreate<byte>((encoded.Length / 4 + 1) * 3)
                match Convert.TryFromBase64String(encoded, Span buffer) with
                | true, written -> buffer[.. written - 1]
                | _ -> Json.toUtf8 json
            | _ -> Json.toUtf8 json
        | other -> Json.toUtf8 other

/// <summary>When <c>AddSessionCompatibility</c> loads a request's session before its handler runs.</summary>
/// <remarks>
/// ISession's members are synchronous and Sesame's stores are asynchronous. An in-process store (memory, file) answers
/// at once, so the first ISession call loads the session without waiting. A store across the network (Redis, Postgres)
/// does not: loading before the handler runs, as a task awaited by the pipeline, spares ISession a blocking wait. It
/// costs one store round trip for every request that carries a session ticket and passes through <c>UseSesame</c>,
/// whether or not the handler uses the session (and slides the session's idle expiry).
/// </remarks>
type SessionPreload =
    /// Never: the session loads on first use. With a store that does not answer at once, call
    /// <c>await HttpContext.Session.LoadAsync()</c> before using ISession (its members throw until then).
    | Never = 0
    /// When the store is shared by app instances (<see cref="P:Sesame.SessionStore.IsShared"/>: Redis, Postgres): the default.
    | WhenStoreIsShared = 1
    /// For every request that carries a session ticket.
    | Always = 2

/// <summary>Settings of the ISession compatibility (<c>AddSesame(...).AddSessionCompatibility(...)</c>).</summary>
/// <remarks>Default: <see cref="P:Sesame.SessionCompatibilityOptions.Preload"/> is <c>WhenStoreIsShared</c>.</remarks>
[<Sealed; AllowNullLiteral>]
type SessionCompatibilityOptions() =

    /// <summary>When the request's session is loaded before its handler runs. Default: when the store is shared.</summary>
    member val Preload = SessionPreload.WhenStoreIsShared with get, set

    /// Whether requests with a ticket load their session before the handler runs, on this store.
    member internal this.PreloadsFor(store: SessionStore) =
        match this.Preload with
        | SessionPreload.Always -> true
        | SessionPreload.WhenStoreIsShared -> store.IsShared
        | _ -> false

/// <summary>
/// ASP.NET Core's <c>ISession</c> over the request's Sesame session: each ISession key is a top-level key of the tree,
/// kept as <see cref="T:Sesame.SessionBytesModule"/> says; every change is a path update, committed with the request's
/// other changes in Sesame's one write before the response starts. So two requests that change different keys both
/// keep their changes.
/// </summary>
/// <remarks>
/// As ASP.NET Core's own session: <c>IsAvailable</c> is false when the store failed to load the session (the error is
/// logged; reads then find nothing and changes are dropped), an explicit <c>LoadAsync</c> or <c>CommitAsync</c> throws the
/// store's error, <c>Id</c> is a stable, non-secret name of the session that is not its cookie, a session nothing was
/// stored in is not kept, and a new session cannot be started once the response has started.
/// </remarks>
[<Sealed>]
type internal SesameAspNetSession(handle: SessionHandle, logger: ILogger) =

    /// The ISession id of a session that ISession created, kept with its facts so that it survives rotation and sign-in.
    static let idFact = SessionPath.ofKeys [ "aspNetSessionId" ]

    /// ASP.NET Core's limit on a key, in UTF-8 bytes.
    static let maxKeyBytes = int UInt16.MaxValue

    let mutable failureLogged = false

    /// Whether the session is loaded (false: the store failed, logged once); throws while it is still on its way.
    let available () =
        let loading = handle.LoadAsync()
        if loading.IsCompletedSuccessfully then
            true
        elif loading.IsCompleted then
            if not failureLogged then
                failureLogged <- true
                Log.loadError
                    logger
                    (match loading.Exception with
                     | null -> null
                     | e -> e.GetBaseException())
            false
        else
            raise (
                InvalidOperationException
                    "The session is still loading from its store, which answers asynchronously, and ISession's members are synchronous. Call 'await HttpContext.Session.LoadAsync()' before using the session, or let Sesame load it before the handler: AddSessionCompatibility(o => o.Preload = SessionPreload.Always)."
            )

    let keyPath (key: string) =
        if isNull key then nullArg "key"
        if Encoding.UTF8.GetByteCount key > maxKeyBytes then
            raise (ArgumentOutOfRangeException("key", $"The session key is longer than {maxKeyBytes} bytes of UTF-8."))
        SessionPath.ofKeys [ key ]

    let currentId () =
        match SessionPath.tryGet idFact handle.Meta with
        | Some(Json.String id) -> id
        | _ when handle.IsNew ->
            // Handed out while the session is new: the session is created with it (among its creation facts), whether
            // ISession or Sesame's own API stores something first; a session ended in this request takes its own along.
            match handle.CreationFact(idFact, fun () -> Json.string (Guid.NewGuid().ToString())) with
            | Json.String id -> id
            | _ -> String.Empty
        | _ -> SessionSummary.HandleOf handle.Id

    /// <summary>Gives a session that has an ISession id a new one: the session now belongs to another user (an account
    /// switch), whose code must not find rows an app keyed by the earlier user's id.</summary>
    static member internal RenewId(handle: SessionHandle) =
        if (SessionPath.tryGet idFact handle.Meta).IsSome then handle.RecordMeta(Update.Set(idFact, Json.string (Guid.NewGuid().ToString())))

    interface ISession with

        member _.IsAvailable = available ()

        member _.Id = if available () then currentId () else String.Empty

        member _.Keys: IEnumerable<string> =
            if available () then
                match handle.Current with
                | Json.Object o -> o |> Seq.map _.Key |> Array.ofSeq :> IEnumerable<string>
                | _ -> Array.Empty<string>()
            else
                Array.Empty<string>()

        member _.LoadAsync(cancellationToken: CancellationToken) : Task =
            let loading = handle.LoadAsync()
            if loading.IsCompleted || not cancellationToken.CanBeCanceled then loading else loading.WaitAsync cancellationToken

        member _.CommitAsync(cancellationToken: CancellationToken) : Task =
            // The request's folded commit, now rather than just before the response starts (a no-op without changes).
            if handle.IsLoaded then
                handle.CommitAsync cancellationToken
            else
                match handle.LoadBegun with
                // Nothing read or changed the session: nothing to commit.
                | null -> Task.CompletedTask
                // A load that failed (the store is down) throws its error here: the changes made meanwhile were
                // dropped, and must not be taken for saved. One still on its way is waited for, then committed.
                | loading -> task {
                    do! (if cancellationToken.CanBeCanceled then loading.WaitAsync cancellationToken else loading)
                    do! handle.CommitAsync cancellationToken
                  }

        member _.TryGetValue(key: string, value: byref<byte[]>) : bool =
            let path = keyPath key
            if available () then
                match handle.TryFind path with
                | Some json ->
                    value <- SessionBytes.ofJson json
                    true
                | None ->
                    value <- null
                    false
            else
                value <- null
                false

        member _.Set(key: string, value: byte[]) =
            if isNull value then nullArg "value"
            let path = keyPath key
            if available () then
                // A session ISession creates has an ISession id: given now, it is among the facts it is created with.
                if handle.IsNew then currentId () |> ignore
                handle.Set(path, SessionBytes.toJson value)

        member _.Remove(key: string) =
            let path = keyPath key
            if available () then handle.Remove path

        member _.Clear() =
            if available () then
                match handle.Current with
                | Json.Object o when o.Count = 0 -> ()
                | _ -> handle.Clear()

/// <summary>The request's <c>ISessionFeature</c>: <c>HttpContext.Session</c> is the Sesame session, made on first use.</summary>
[<Sealed>]
type internal SesameSessionFeature(handle: SessionHandle, logger: ILogger) =
    let mutable session: ISession = null

    /// The handle the feature's ISession uses.
    member _.Handle = handle

    interface ISessionFeature with
        member _.Session
            with get () =
                if isNull session then session <- SesameAspNetSession(handle, logger)
                session
            and set value = session <- value

/// <summary>What <c>AddSessionCompatibility</c> leaves in the app's services: its settings.</summary>
[<Sealed; AllowNullLiteral>]
type internal SessionCompatibility(options: SessionCompatibilityOptions) =
    /// The settings.
    member _.Options = options
