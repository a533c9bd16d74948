namespace Sesame

open System
open System.Threading.Tasks
open Microsoft.AspNetCore.Http

/// <summary>Reading and changing the request's session from F# handlers.</summary>
/// <remarks>
/// Get the session with <c>Session.loadAsync ctx</c> (or <c>Session.handler</c>), then read and change
/// it with the functions below, the session last so they pipe:
/// <c>session |> Session.increment "times" 1m</c>. Paths are text like <c>cart.items[2].qty</c>.
/// </remarks>
[<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module Session =

    let internal parsePath (text: string) = SessionPath.parse text

    /// <summary>The request's session handle, not yet loaded.</summary>
    /// <exception cref="System.InvalidOperationException">Sesame is not set up for this request (no <c>UseSesame</c> or <c>withSession</c>).</exception>
    let ofContext (ctx: HttpContext) : SessionHandle =
        match RequestFeatures.get<SessionHandle> ctx.Features with
        | null -> raise (InvalidOperationException "This request has no session: add app.UseSesame() to the pipeline, or wrap the handler in withSession.")
        | handle -> handle

    /// <summary>The request's session, loaded from the store on first use (one round trip at most per request).</summary>
    let loadAsync (ctx: HttpContext) : Task<SessionHandle> =
        let handle = ofContext ctx
        let loading = handle.LoadAsync()
        if loading.IsCompletedSuccessfully then
            handle.AsCompletedTask
        else
            task {
                do! loading
                return handle
            }

    /// <summary>The whole session as it reads now.</summary>
    let current (session: SessionHandle) = session.Current

    /// <summary>The JSON value at a path, or <c>None</c>.</summary>
    let tryFind (path: string) (session: SessionHandle) = session.TryFind(parsePath path)

    /// <summary>The value at a path decoded as <typeparamref name="value"/>, or <c>None</c> when there is none. A value
    /// that does not fit the type gets the fallback <c>SesameOptions.ReadFallbacks</c> gives its path (by default it throws).</summary>
    /// <exception cref="System.Text.Json.JsonException">The value does not fit the type, and its fallback is <c>Throw</c>.</exception>
    let tryGet<'value> (path: string) (session: SessionHandle) : 'value option = session.TryGet<'value>(parsePath path)

    /// <summary>The value at a path decoded as <typeparamref name="value"/>, or <c>None</c> when there is none, with
    /// <paramref name="fallback"/> for a value that does not fit the type (<c>ReadFallback.Missing</c>: read as none;
    /// <c>Remove</c>: read as none and removed; <c>Throw</c>). The failure is logged once per path and type.</summary>
    /// <exception cref="System.Text.Json.JsonException">The value does not fit the type and the fallback is <c>Throw</c>.</exception>
    let tryGetWith<'value> (fallback: ReadFallback) (path: string) (session: SessionHandle) : 'value option = session.TryGet<'value>(parsePath path, fallback)

    /// <summary>The value at a path decoded as <typeparamref name="value"/>, or <paramref name="defaultValue"/> when there
    /// is none or it does not fit the type (logged once per path and type; the stored value stays).</summary>
    let getOr<'value> (path: string) (defaultValue: 'value) (session: SessionHandle) : 'value =
        match session.TryGet<'value>(parsePath path, ReadFallback.Missing) with
        | Some value -> value
        | None -> defaultValue

    /// <summary>Sets a value (encoded as JSON with the configured serializer options) at a path.</summary>
    let set (path: string) (value: 'value) (session: SessionHandle) = session.Set(parsePath path, Json.encodeWith session.Options.SerializerOptions value)

    /// <summary>Removes the value at a path. An array item shifts the rest, and is removed by writing the array as this
    /// request sees it: it does not merge with concurrent requests' changes to that array.</summary>
    let remove (path: string) (session: SessionHandle) = session.Remove(parsePath path)

    /// <summary>Adds to the number at a path exactly and gives the new value; concurrent increments add up.</summary>
    let increment (path: string) (by: decimal) (session: SessionHandle) : JsonNumber = session.Increment(parsePath path, by)

    /// <summary>Adds a value (encoded as JSON with the configured serializer options) at the end of the array at a path,
    /// creating the array when it is missing, and gives the array's new length. Concurrent appends all survive.</summary>
    let append (path: string) (value: 'value) (session: SessionHandle) : int =
        session.Append(parsePath path, Json.encodeWith session.Options.SerializerOptions value)

    /// <summary>Replaces the whole session with a value that encodes as a JSON object.</summary>
    let replace (value: 'value) (session: SessionHandle) = session.Replace(Json.encodeWith session.Options.SerializerOptions value)

    /// <summary>Empties the session.</summary>
    let clear (session: SessionHandle) = session.Clear()

    /// <summary>Moves the session and its data to a new id and kills the old one (at login, against session fixation).</summary>
    /// <returns><c>false</c> when the session had been destroyed or had expired meanwhile: the handle then holds a new,
    /// empty session, never the old data.</returns>
    let rotateAsync (session: SessionHandle) : Task<bool> = session.RotateAsync()

    /// <summary>Signs the session in as a user: moves it to a new id bound to the user, recording device facts, in one
    /// atomic store step that also indexes it under the user (see <see cref="M:Sesame.SessionHandle.SignInAsync(System.String)"/>).</summary>
    let signInAsync (userId: string) (session: SessionHandle) : Task<SignInResult> = session.SignInAsync userId

    /// <summary>Signs out: destroys the session, which leaves its user's index in the same step.</summary>
    let signOutAsync (session: SessionHandle) : Task = session.DestroyAsync()

    /// <summary>The user the session is bound to, or <c>None</c>.</summary>
    let userId (session: SessionHandle) : string option = session.UserId

    /// <summary>Deletes the session and expires the client's cookie (at logout).</summary>
    let destroyAsync (session: SessionHandle) : Task = session.DestroyAsync()

    /// <summary>
    /// Flashes a value (encoded as JSON with the configured serializer options) for the next request of the session
    /// only: that request reads it with <see cref="M:Sesame.SessionModule.tryGetFlash``1(System.String,Sesame.SessionHandle)"/>,
    /// and it is gone after (Rails' <c>flash</c>, Laravel's <c>flash</c>). Flashing a key again replaces its value. The
    /// value is kept in the facts beside the tree, never in the session's data.
    /// </summary>
    let flash (key: string) (value: 'value) (session: SessionHandle) = FlashState.Of(session).Set(key, Json.encodeWith session.Options.SerializerOptions value)

    /// <summary>
    /// The value an earlier request flashed under <paramref name="key"/>, decoded as <typeparamref name="value"/>, or
    /// <c>None</c>. The first read of the flash in a request ends every value flashed before it (read or not): this
    /// request's commit removes them, but for those it keeps (<c>keepFlash</c>, <c>reflash</c>). Values this request
    /// flashes are for the next request, not this one. Two concurrent requests may both read a value; whichever commits
    /// first removes it.
    /// </summary>
    /// <exception cref="System.Text.Json.JsonException">The value does not fit the type.</exception>
    let tryGetFlash<'value> (key: string) (session: SessionHandle) : 'value option =
        match FlashState.Of(session).TryFind key with
        | ValueSome json -> Some(Json.decodeWith<'value> session.Options.SerializerOptions json)
        | ValueNone -> None

    /// <summary>The keys of the values earlier requests flashed; like a read, ends them at this request's commit.</summary>
    let flashKeys (session: SessionHandle) : string list = FlashState.Of(session).ReadKeys()

    /// <summary>Carries the value flashed under <paramref name="key"/> one request further (Laravel's <c>keep</c>),
    /// whether or not this request read it.</summary>
    let keepFlash (key: string) (session: SessionHandle) = FlashState.Of(session).Keep key

    /// <summary>Carries every flashed value one request further (Laravel's <c>reflash</c>).</summary>
    let reflash (session: SessionHandle) = FlashState.Of(session).KeepAll()

    /// A handler that loads the session, does something to it, then continues.
    let private doThen (act: SessionHandle -> Task) : HttpHandler =
        fun next ctx -> task {
            let! session = loadAsync ctx
            do! act session
            return! next ctx
        }

    /// A handler that does something to the session without loading it, then continues.
    let private doUnloaded (act: SessionHandle -> Task) : HttpHandler =
        fun next ctx -> task {
            do! act (ofContext ctx)
            return! next ctx
        }

    /// <summary>A handler that rotates the request's session id, keeping its data, then continues.</summary>
    let rotate: HttpHandler = doThen (fun session -> rotateAsync session :> Task)

    /// <summary>A handler that destroys the request's session, then continues. It does not load the session: the id the
    /// request came with is enough, so a client that hangs up at once is logged out all the same.</summary>
    let destroy: HttpHandler = doUnloaded destroyAsync

    /// <summary>A handler that loads the session and continues with the handler <paramref name="f"/> makes of it.</summary>
    let handler (f: SessionHandle -> HttpHandler) : HttpHandler =
        fun next ctx -> task {
            let! session = loadAsync ctx
            return! f session next ctx
        }
