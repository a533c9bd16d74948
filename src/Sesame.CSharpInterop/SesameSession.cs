using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http;

namespace Sesame;

/// <summary>
/// The request's session for C#: typed members (<see cref="Get{T}(string)"/>, <see cref="Set{T}(string, T)"/>,
/// <see cref="Increment(string, decimal)"/>, ...) and a <see cref="Dynamic"/> view you just change
/// (<c>s.foo.bar.baz *= 2</c>). Both record the same path updates on the session's immutable JSON
/// tree, which Sesame folds into one patch and commits in one write before the response starts.
/// </summary>
/// <remarks>
/// <para>Get it with <c>await context.GetSesameAsync()</c>, or as a minimal-API parameter
/// (<c>app.MapGet("/", (SesameSession session) =&gt; ...)</c>). It belongs to one request: used after
/// that request ended, every member throws <see cref="ObjectDisposedException"/>.</para>
/// <para>Paths are text: <c>cart.items[2].qty</c>; a key holding dots, brackets or quotes is written
/// quoted in brackets: <c>user["first.name"]</c>. Values are encoded and decoded with
/// <see cref="SesameOptions.SerializerOptions"/> (web defaults: camelCase property names), so paths
/// name the JSON names (<c>cart.items[0].qty</c> for a property <c>Qty</c>).</para>
/// <para>Serializing it with System.Text.Json writes the whole session as it reads now.</para>
/// <para>Reads see this request's changes at once. Several changes to one path add up to one
/// update in the commit; a request that changes nothing writes nothing.</para>
/// </remarks>
[JsonConverter(typeof(SesameSessionJsonConverter))]
public sealed class SesameSession
{
    private SessionProxy? root;
    private Task<SesameSession>? completed;

    /// <summary>Wraps a session handle of the F# API, e.g. one from <c>Session.loadAsync</c> in a mixed F#/C# app.</summary>
    /// <param name="handle">The request's session handle; load it (<see cref="SessionHandle.LoadAsync"/>) before using this wrapper.</param>
    /// <remarks>Prefer <c>context.GetSesameAsync()</c>, which loads the session and gives the request one wrapper.</remarks>
    public SesameSession(SessionHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        Handle = handle;
    }

    /// <summary>The F# session handle underneath: its update log, id and the F# API.</summary>
    public SessionHandle Handle { get; }

    /// <summary>
    /// The session as a <c>dynamic</c> object: read and assign members and indexes at any depth, and each
    /// assignment records one update at its full path. See <see cref="SessionProxy"/> for the rules.
    /// </summary>
    /// <example><code>
    /// dynamic s = session.Dynamic;
    /// s.times = (s.times ?? 0) + 1;
    /// s.foo ??= new { bar = new { baz = 1 } };
    /// s.foo.bar.baz *= 2;   // one update: set foo.bar.baz
    /// </code></example>
    public dynamic Dynamic => root ??= new SessionProxy(this, SessionPathModule.root);

    /// <summary>The session id, or <c>null</c> while the session is new and not yet stored.</summary>
    public string? Id => Handle.Id;

    /// <summary>Whether the session is new: not (yet) in the store.</summary>
    public bool IsNew => Handle.IsNew;

    /// <summary>Sesame's options in force, among them the <see cref="SesameOptions.SerializerOptions"/> values are encoded with.</summary>
    public SesameOptions Options => Handle.Options;

    /// <summary>The whole session as it reads now (the stored value with this request's changes applied), as an immutable tree.</summary>
    public Json Current
    {
        get
        {
            try
            {
                return Handle.Current;
            }
            catch (ObjectDisposedException e)
            {
                throw Stale(SessionPathModule.root, "read", e);
            }
        }
    }

    /// <summary>
    /// Whether the session was written by a newer version of the app (its shape is newer than
    /// <see cref="SesameOptions.ShapeVersion"/>) and is served read-only (<see cref="NewerShapePolicy.ReadOnly"/>): a change
    /// then throws <see cref="SessionShapeException"/>.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public bool IsReadOnly
    {
        get
        {
            try
            {
                return Handle.IsReadOnly;
            }
            catch (ObjectDisposedException e)
            {
                throw Stale(SessionPathModule.root, "read", e);
            }
        }
    }

    /// <summary>The shape version of the session as it reads: the app's <see cref="SesameOptions.ShapeVersion"/> (a session
    /// stored at an older one is read migrated), or a newer session's own when it is served read-only.</summary>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public int ShapeVersion
    {
        get
        {
            try
            {
                return Handle.ShapeVersion;
            }
            catch (ObjectDisposedException e)
            {
                throw Stale(SessionPathModule.root, "read", e);
            }
        }
    }

    /// <summary>The value at <paramref name="path"/> decoded as <typeparamref name="T"/>, or <c>default</c> when there is none (or it is JSON null).</summary>
    /// <param name="path">Where, e.g. <c>cart.items[2].qty</c>.</param>
    /// <returns>The value, or <c>default(T)</c>; a value that does not fit <typeparamref name="T"/> gets the fallback
    /// <see cref="SesameOptions.ReadFallbacks"/> gives the path (by default it throws).</returns>
    /// <exception cref="ArgumentException">The path text is not a path.</exception>
    /// <exception cref="JsonException">There is a value but it does not fit <typeparamref name="T"/> and its fallback is <see cref="ReadFallback.Throw"/>; the message names the path.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public T? Get<T>(string path) => TryGet<T>(SessionPathModule.parse(path), out var value) ? value : default;

    /// <summary>The value at <paramref name="path"/> decoded as <typeparamref name="T"/>, or <c>default</c> when there is
    /// none (or it is JSON null), with <paramref name="fallback"/> for a value that does not fit <typeparamref name="T"/>.</summary>
    /// <param name="path">Where, e.g. <c>cart.items[2].qty</c>.</param>
    /// <param name="fallback"><see cref="ReadFallback.Missing"/>: read it as none; <see cref="ReadFallback.Remove"/>: read it
    /// as none and remove it from the session; <see cref="ReadFallback.Throw"/>. The failure is logged once per path and type.</param>
    /// <returns>The value, or <c>default(T)</c>.</returns>
    /// <exception cref="ArgumentException">The path text is not a path.</exception>
    /// <exception cref="JsonException">The value does not fit <typeparamref name="T"/> and the fallback is <see cref="ReadFallback.Throw"/>.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public T? Get<T>(string path, ReadFallback fallback) => Read<T>(SessionPathModule.parse(path), fallback, out var value) ? value : default;

    /// <summary>The value at <paramref name="path"/> decoded as <typeparamref name="T"/>, or <c>default</c> when there is
    /// none, with <paramref name="fallback"/> for a value that does not fit (see <see cref="Get{T}(string, ReadFallback)"/>).</summary>
    /// <param name="path">Where, built from data: <c>SessionPath.Root.Key(name)</c>.</param>
    /// <param name="fallback">What a value that does not fit reads as.</param>
    /// <returns>The value, or <c>default(T)</c>.</returns>
    /// <exception cref="JsonException">The value does not fit <typeparamref name="T"/> and the fallback is <see cref="ReadFallback.Throw"/>.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public T? Get<T>(SessionPath path, ReadFallback fallback)
    {
        ArgumentNullException.ThrowIfNull(path);
        return Read<T>(path, fallback, out var value) ? value : default;
    }

    /// <summary>The value at <paramref name="path"/> decoded as <typeparamref name="T"/>, or <paramref name="defaultValue"/>
    /// when there is none (or it is JSON null) or it does not fit <typeparamref name="T"/> (logged once per path and type;
    /// the stored value stays).</summary>
    /// <param name="path">Where, e.g. <c>cart</c>.</param>
    /// <param name="defaultValue">What to read instead.</param>
    /// <returns>The value, or <paramref name="defaultValue"/>.</returns>
    /// <exception cref="ArgumentException">The path text is not a path.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public T GetOrDefault<T>(string path, T defaultValue) => Read<T>(SessionPathModule.parse(path), ReadFallback.Missing, out var value) ? value : defaultValue;

    /// <summary>The value at <paramref name="path"/> decoded as <typeparamref name="T"/>, or <paramref name="defaultValue"/>
    /// when there is none or it does not fit (see <see cref="GetOrDefault{T}(string, T)"/>).</summary>
    /// <param name="path">Where, built from data.</param>
    /// <param name="defaultValue">What to read instead.</param>
    /// <returns>The value, or <paramref name="defaultValue"/>.</returns>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public T GetOrDefault<T>(SessionPath path, T defaultValue)
    {
        ArgumentNullException.ThrowIfNull(path);
        return Read<T>(path, ReadFallback.Missing, out var value) ? value : defaultValue;
    }

    /// <summary>The value at <paramref name="path"/> decoded as <typeparamref name="T"/>, or <c>default</c> when there is none (or it is JSON null).</summary>
    /// <param name="path">Where, built from data: <c>SessionPath.Root.Key(name).Index(2)</c>; a key from user input is always one key.</param>
    /// <returns>The value, or <c>default(T)</c>.</returns>
    /// <exception cref="JsonException">There is a value but it does not fit <typeparamref name="T"/>; the message names the path.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public T? Get<T>(SessionPath path) => TryGet<T>(path, out var value) ? value : default;

    /// <summary>Reads the value at <paramref name="path"/> as <typeparamref name="T"/> when there is one.</summary>
    /// <param name="path">Where, e.g. <c>cart.items[2].qty</c>.</param>
    /// <param name="value">The value, when found.</param>
    /// <returns><c>true</c> when there is a value other than JSON null at the path.</returns>
    /// <exception cref="ArgumentException">The path text is not a path.</exception>
    /// <exception cref="JsonException">There is a value but it does not fit <typeparamref name="T"/>; the message names the path.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public bool TryGet<T>(string path, [MaybeNullWhen(false)] out T value) => TryGet(SessionPathModule.parse(path), out value);

    /// <summary>Reads the value at <paramref name="path"/> as <typeparamref name="T"/> when there is one.</summary>
    /// <param name="path">Where, built from data: <c>SessionPath.Root.Key(name).Index(2)</c>.</param>
    /// <param name="value">The value, when found.</param>
    /// <returns><c>true</c> when there is a value other than JSON null at the path (and it fits, or its fallback throws).</returns>
    /// <exception cref="JsonException">There is a value but it does not fit <typeparamref name="T"/> and the fallback
    /// <see cref="SesameOptions.ReadFallbacks"/> gives the path is <see cref="ReadFallback.Throw"/> (the default); the message names the path.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public bool TryGet<T>(SessionPath path, [MaybeNullWhen(false)] out T value)
    {
        ArgumentNullException.ThrowIfNull(path);
        return Read(path, null, out value);
    }

    /// <summary>Reads the value at <paramref name="path"/> as <typeparamref name="T"/> when there is one, with
    /// <paramref name="fallback"/> for a value that does not fit (see <see cref="Get{T}(string, ReadFallback)"/>).</summary>
    /// <param name="path">Where, e.g. <c>cart.items[2].qty</c>.</param>
    /// <param name="fallback">What a value that does not fit reads as.</param>
    /// <param name="value">The value, when found and fitting.</param>
    /// <returns><c>true</c> when there is a value other than JSON null at the path and it fits <typeparamref name="T"/>.</returns>
    /// <exception cref="ArgumentException">The path text is not a path.</exception>
    /// <exception cref="JsonException">The value does not fit <typeparamref name="T"/> and the fallback is <see cref="ReadFallback.Throw"/>.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public bool TryGet<T>(string path, ReadFallback fallback, [MaybeNullWhen(false)] out T value) =>
        Read(SessionPathModule.parse(path), fallback, out value);

    /// <summary>Reads the value at <paramref name="path"/> as <typeparamref name="T"/> when there is one, with
    /// <paramref name="fallback"/> for a value that does not fit.</summary>
    /// <param name="path">Where, built from data.</param>
    /// <param name="fallback">What a value that does not fit reads as.</param>
    /// <param name="value">The value, when found and fitting.</param>
    /// <returns><c>true</c> when there is a value other than JSON null at the path and it fits <typeparamref name="T"/>.</returns>
    /// <exception cref="JsonException">The value does not fit <typeparamref name="T"/> and the fallback is <see cref="ReadFallback.Throw"/>.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public bool TryGet<T>(SessionPath path, ReadFallback fallback, [MaybeNullWhen(false)] out T value)
    {
        ArgumentNullException.ThrowIfNull(path);
        return Read(path, fallback, out value);
    }

    // Decodes on the fast path; only a value that does not fit goes to the handle, which logs it once and applies the
    // read's fallback (else the options' for the path). Throw leaves the exception as it was, naming the path.
    private bool Read<T>(SessionPath path, ReadFallback? fallback, [MaybeNullWhen(false)] out T value)
    {
        var found = Find(path);
        if (found is null || found.IsNull)
        {
            value = default;
            return false;
        }

        try
        {
            value = JsonValues.Decode<T>(found, Options.SerializerOptions, path);
            return true;
        }
        catch (JsonException) when (Handle.RecoverUnreadable(path, typeof(T), fallback))
        {
            value = default;
            return false;
        }
    }

    /// <summary>The value at <paramref name="path"/> as a new, mutable <see cref="JsonNode"/> (changing it does not change the session).</summary>
    /// <param name="path">Where, e.g. <c>cart</c>.</param>
    /// <returns>The node, or <c>null</c> when there is no value (or it is JSON null).</returns>
    /// <exception cref="ArgumentException">The path text is not a path.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public JsonNode? GetNode(string path) => GetNode(SessionPathModule.parse(path));

    /// <summary>The value at <paramref name="path"/> as a new, mutable <see cref="JsonNode"/> (changing it does not change the session).</summary>
    /// <param name="path">Where, built from data: <c>SessionPath.Root.Key(name)</c>.</param>
    /// <returns>The node, or <c>null</c> when there is no value (or it is JSON null).</returns>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public JsonNode? GetNode(SessionPath path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var found = Find(path);
        return found is null ? null : JsonModule.toJsonNode(found);
    }

    /// <summary>Sets <paramref name="value"/> at <paramref name="path"/>, creating missing objects on the way (an array for index 0).</summary>
    /// <typeparam name="T">The value's type: anything System.Text.Json serializes (records, anonymous objects, dictionaries, lists), or a <see cref="JsonNode"/>, <see cref="JsonElement"/> or <see cref="Json"/>.</typeparam>
    /// <param name="path">Where, e.g. <c>cart.items[2]</c>; index <c>n</c> of an <c>n</c>-item array appends.</param>
    /// <param name="value">The value; <c>null</c> stores JSON null.</param>
    /// <exception cref="ArgumentException">The path text is not a path, or a number has no JSON form (NaN, infinity).</exception>
    /// <exception cref="PathConflictException">The path crosses a value of the wrong kind (a key into a string, an index past the end); nothing is recorded.</exception>
    /// <exception cref="NotSupportedException">The value's type cannot be serialized.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public void Set<T>(string path, T value) => Set(SessionPathModule.parse(path), value);

    /// <summary>Sets <paramref name="value"/> at <paramref name="path"/>, creating missing objects on the way (an array for index 0).</summary>
    /// <typeparam name="T">The value's type (see <see cref="Set{T}(string, T)"/>).</typeparam>
    /// <param name="path">Where, built from data: <c>SessionPath.Root.Key("prefs").Key(name)</c>; a key from user input is always one key.</param>
    /// <param name="value">The value; <c>null</c> stores JSON null.</param>
    /// <exception cref="ArgumentException">A number has no JSON form (NaN, infinity), the session would nest too deep, or a string holds a lone surrogate.</exception>
    /// <exception cref="PathConflictException">The path crosses a value of the wrong kind; nothing is recorded.</exception>
    /// <exception cref="NotSupportedException">The value's type cannot be serialized.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public void Set<T>(SessionPath path, T value)
    {
        ArgumentNullException.ThrowIfNull(path);
        SetAt(path, JsonValues.Encode(value, Options.SerializerOptions));
    }

    /// <summary>
    /// Adds <paramref name="value"/> at the end of the array at <paramref name="path"/>, creating the array when it is
    /// missing. Unlike setting index <c>n</c>, appends by concurrent requests all survive, each once.
    /// </summary>
    /// <typeparam name="T">The value's type (see <see cref="Set{T}(string, T)"/>).</typeparam>
    /// <param name="path">The array, e.g. <c>cart.items</c>.</param>
    /// <param name="value">The item.</param>
    /// <returns>The array's length after the append, as this request sees it.</returns>
    /// <exception cref="ArgumentException">The path text is not a path, or the value cannot be stored (see <see cref="Set{T}(string, T)"/>).</exception>
    /// <exception cref="PathConflictException">The path holds something other than an array; nothing is recorded.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public int Append<T>(string path, T value) => Append(SessionPathModule.parse(path), value);

    /// <summary>Adds <paramref name="value"/> at the end of the array at <paramref name="path"/> (see <see cref="Append{T}(string, T)"/>).</summary>
    /// <typeparam name="T">The value's type.</typeparam>
    /// <param name="path">The array, built from data.</param>
    /// <param name="value">The item.</param>
    /// <returns>The array's length after the append.</returns>
    /// <exception cref="PathConflictException">The path holds something other than an array; nothing is recorded.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public int Append<T>(SessionPath path, T value)
    {
        ArgumentNullException.ThrowIfNull(path);
        return AppendAt(path, JsonValues.Encode(value, Options.SerializerOptions));
    }

    /// <summary>Removes the value at <paramref name="path"/>; removing an array item shifts the items after it, and writes
    /// the array as this request sees it (it does not merge with concurrent requests' changes to that array).</summary>
    /// <param name="path">Where, e.g. <c>cart.items[2]</c> or <c>user.name</c>.</param>
    /// <returns><c>true</c> when there was a value to remove; nothing is recorded otherwise.</returns>
    /// <exception cref="ArgumentException">The path text is not a path.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public bool Remove(string path) => RemoveAt(SessionPathModule.parse(path));

    /// <summary>Removes the value at <paramref name="path"/>; removing an array item shifts the items after it, and writes
    /// the array as this request sees it (it does not merge with concurrent requests' changes to that array).</summary>
    /// <param name="path">Where, built from data: <c>SessionPath.Root.Key(name)</c>.</param>
    /// <returns><c>true</c> when there was a value to remove; nothing is recorded otherwise.</returns>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public bool Remove(SessionPath path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return RemoveAt(path);
    }

    /// <summary>
    /// Adds <paramref name="by"/> to the number at <paramref name="path"/> exactly (a missing value counts as
    /// zero). Unlike reading and setting, increments of one path by concurrent requests add up.
    /// </summary>
    /// <param name="path">Where, e.g. <c>visits</c>.</param>
    /// <param name="by">How much to add (default 1; may be negative or fractional).</param>
    /// <returns>The new value as this request sees it.</returns>
    /// <exception cref="ArgumentException">The path text is not a path.</exception>
    /// <exception cref="PathConflictException">The value there is not a number, or the path crosses a value of the wrong kind; nothing is recorded.</exception>
    /// <exception cref="OverflowException">The new value is beyond <see cref="decimal"/>'s range (the increment is recorded; read it exactly with <see cref="GetNode(string)"/>).</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public decimal Increment(string path, decimal by = 1) => IncrementValue(SessionPathModule.parse(path), by);

    /// <summary>Adds <paramref name="by"/> to the number at <paramref name="path"/> exactly (see <see cref="Increment(string, decimal)"/>).</summary>
    /// <param name="path">Where, built from data: <c>SessionPath.Root.Key("votes").Key(option)</c>.</param>
    /// <param name="by">How much to add (default 1).</param>
    /// <returns>The new value as this request sees it.</returns>
    /// <exception cref="PathConflictException">The value there is not a number, or the path crosses a value of the wrong kind; nothing is recorded.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public decimal Increment(SessionPath path, decimal by = 1)
    {
        ArgumentNullException.ThrowIfNull(path);
        return IncrementValue(path, by);
    }

    /// <summary>Empties the session; it stays alive, with no values.</summary>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public void Clear()
    {
        try
        {
            Handle.Clear();
        }
        catch (ObjectDisposedException e)
        {
            throw Stale(SessionPathModule.root, "change", e);
        }
    }

    /// <summary>Replaces the whole session with <paramref name="value"/>, which must encode as a JSON object.</summary>
    /// <param name="value">The new session, e.g. a record or an anonymous object.</param>
    /// <exception cref="ArgumentException">The value does not encode as a JSON object.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public void Replace<T>(T value)
    {
        var json = JsonValues.Encode(value, Options.SerializerOptions);
        try
        {
            Handle.Replace(json);
        }
        catch (ObjectDisposedException e)
        {
            throw Stale(SessionPathModule.root, "change", e);
        }
    }

    /// <summary>
    /// Moves the session and its data to a new id and kills the old one in one atomic store step: call it at login,
    /// against session fixation. A change another request committed under the old id before the move is kept.
    /// </summary>
    /// <returns><c>true</c> when the session moved; <c>false</c> when it had been destroyed or had expired meanwhile (the
    /// session is then a new, empty one: the old data never comes back).</returns>
    /// <exception cref="InvalidOperationException">The response has started, so the new cookie could not be sent.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public Task<bool> RotateAsync()
    {
        try
        {
            return Handle.RotateAsync();
        }
        catch (ObjectDisposedException e)
        {
            throw Stale(SessionPathModule.root, "change", e);
        }
    }

    /// <summary>
    /// Signs the session in as <paramref name="userId"/>: moves it to a new id (against fixation) bound to the user, with
    /// the device facts <see cref="SesameOptions.DeviceFacts"/> names, in one atomic store step that also adds it to the
    /// user's index (<see cref="SesameHttpContextExtensions.GetUserSessionsAsync"/> lists them). The session keeps its
    /// data: a login that must start clean calls <see cref="DestroyAsync"/> first, and signs in the new, empty session it
    /// leaves (<see cref="Clear"/> would empty the tree but leave the flash values planted in the session).
    /// </summary>
    /// <param name="userId">The user's id (a name identifier, never a display name).</param>
    /// <returns><see cref="SignInResult.SignedIn"/>, or <see cref="SignInResult.LimitReached"/> when the user already has
    /// <see cref="SesameOptions.MaxSessionsPerUser"/> sessions and the policy refuses more (nothing changed).</returns>
    /// <exception cref="ArgumentException">The user id is null or empty.</exception>
    /// <exception cref="InvalidOperationException">The response has started, so the new cookie could not be sent.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public Task<SignInResult> SignInAsync(string userId)
    {
        try
        {
            return Handle.SignInAsync(userId);
        }
        catch (ObjectDisposedException e)
        {
            throw Stale(SessionPathModule.root, "change", e);
        }
    }

    /// <summary>Signs out: destroys the session, which leaves its user's index in the same step (see <see cref="DestroyAsync"/>).</summary>
    /// <returns>A task that completes when the store has deleted the session.</returns>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public Task SignOutAsync() => DestroyAsync();

    /// <summary>The user the session is bound to by a sign-in, or <c>null</c>.</summary>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public string? UserId
    {
        get
        {
            try
            {
                return Handle.UserId is { } user ? user.Value : null;
            }
            catch (ObjectDisposedException e)
            {
                throw Stale(SessionPathModule.root, "read", e);
            }
        }
    }

    /// <summary>Deletes the session from the store and expires the client's cookie: call it at logout.</summary>
    /// <returns>A task that completes when the store has deleted the session.</returns>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public Task DestroyAsync()
    {
        try
        {
            return Handle.DestroyAsync();
        }
        catch (ObjectDisposedException e)
        {
            throw Stale(SessionPathModule.root, "change", e);
        }
    }

    /// <summary>
    /// Flashes <paramref name="value"/> for the next request of the session only: that request reads it with
    /// <see cref="GetFlash{T}(string)"/>, and it is gone after (Rails' <c>flash</c>, Laravel's <c>flash</c>). Flashing a
    /// key again replaces its value. The value is kept in the facts beside the session's tree, never in its data.
    /// </summary>
    /// <typeparam name="T">The value's type (see <see cref="Set{T}(string, T)"/>).</typeparam>
    /// <param name="key">The flash key, e.g. <c>notice</c>.</param>
    /// <param name="value">The value, e.g. a message.</param>
    /// <exception cref="ArgumentNullException">The key is null.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public void Flash<T>(string key, T value)
    {
        ArgumentNullException.ThrowIfNull(key);
        var json = JsonValues.Encode(value, Options.SerializerOptions);
        try
        {
            SessionModule.flash(key, json, Handle);
        }
        catch (ObjectDisposedException e)
        {
            throw Stale(SessionPathModule.root, "change", e);
        }
    }

    /// <summary>
    /// The value an earlier request flashed under <paramref name="key"/>, or <c>default</c>. The first read of the flash in
    /// a request ends every value flashed before it (read or not): this request's commit removes them, but for those it
    /// keeps (<see cref="KeepFlash(string)"/>, <see cref="Reflash"/>). Values this request flashes are for the next
    /// request. Two concurrent requests may both read a value; whichever commits first removes it.
    /// </summary>
    /// <typeparam name="T">The type to read the value as.</typeparam>
    /// <param name="key">The flash key.</param>
    /// <returns>The value, or <c>default(T)</c> when none was flashed (or it is JSON null).</returns>
    /// <exception cref="JsonException">The value does not fit <typeparamref name="T"/>.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public T? GetFlash<T>(string key) => TryGetFlash<T>(key, out var value) ? value : default;

    /// <summary>Reads the value an earlier request flashed under <paramref name="key"/> (see <see cref="GetFlash{T}(string)"/>).</summary>
    /// <typeparam name="T">The type to read the value as.</typeparam>
    /// <param name="key">The flash key.</param>
    /// <param name="value">The value, when there is one.</param>
    /// <returns><c>true</c> when a value other than JSON null was flashed under the key.</returns>
    /// <exception cref="JsonException">The value does not fit <typeparamref name="T"/>.</exception>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public bool TryGetFlash<T>(string key, [MaybeNullWhen(false)] out T value)
    {
        ArgumentNullException.ThrowIfNull(key);
        Json? found;
        try
        {
            found = SessionModule.tryGetFlash<Json>(key, Handle)?.Value;
        }
        catch (ObjectDisposedException e)
        {
            throw Stale(SessionPathModule.root, "read", e);
        }

        if (found is null || found.IsNull)
        {
            value = default;
            return false;
        }

        value = JsonValues.Decode<T>(found, Options.SerializerOptions, SessionPathModule.ofKeys([SessionMeta.Flash, key]));
        return true;
    }

    /// <summary>The keys of the values earlier requests flashed; like a read, ends them at this request's commit.</summary>
    /// <returns>The keys, each once.</returns>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public IReadOnlyList<string> GetFlashKeys()
    {
        try
        {
            return SessionModule.flashKeys(Handle).ToArray();
        }
        catch (ObjectDisposedException e)
        {
            throw Stale(SessionPathModule.root, "read", e);
        }
    }

    /// <summary>Carries the value flashed under <paramref name="key"/> one request further (Laravel's <c>keep</c>), read or not.</summary>
    /// <param name="key">The flash key.</param>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public void KeepFlash(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        try
        {
            SessionModule.keepFlash(key, Handle);
        }
        catch (ObjectDisposedException e)
        {
            throw Stale(SessionPathModule.root, "change", e);
        }
    }

    /// <summary>Carries every flashed value one request further (Laravel's <c>reflash</c>).</summary>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public void Reflash()
    {
        try
        {
            SessionModule.reflash(Handle);
        }
        catch (ObjectDisposedException e)
        {
            throw Stale(SessionPathModule.root, "change", e);
        }
    }

    /// <summary>The whole session as compact JSON text.</summary>
    /// <returns>The JSON text, e.g. <c>{"times":2}</c>.</returns>
    /// <exception cref="ObjectDisposedException">The session's request has ended.</exception>
    public string ToJsonString() => JsonModule.serialize(Current);

    /// <summary>The whole session as compact JSON text (see <see cref="ToJsonString"/>).</summary>
    /// <returns>The JSON text.</returns>
    public override string ToString() => ToJsonString();

    /// <summary>Lets a minimal-API handler take the session as a parameter: <c>(SesameSession session) =&gt; ...</c>.</summary>
    /// <param name="context">The request.</param>
    /// <returns>The request's session, loaded.</returns>
    /// <exception cref="InvalidOperationException">Sesame is not set up for this request (no <c>app.UseSesame()</c>).</exception>
    public static async ValueTask<SesameSession?> BindAsync(HttpContext context) => await context.GetSesameAsync().ConfigureAwait(false);

    /// <summary>A task already holding this session, so a request that asks again allocates nothing.</summary>
    internal Task<SesameSession> Completed => completed ??= Task.FromResult(this);

    internal Json? Find(SessionPath path) => Read(path, path, static (handle, at) => handle.TryFind(at)?.Value);

    internal bool Contains(SessionPath path) => Read(path, path, static (handle, at) => handle.Contains(at));

    /// <summary>The kind of value at <paramref name="path"/>; a stale session's error names <paramref name="reader"/> (the proxy that reads it).</summary>
    internal JsonValueKind KindAt(SessionPath path, SessionPath reader) => Read(path, reader, static (handle, at) => handle.KindAt(at));

    internal int ArrayLength(SessionPath path) => Read(path, path, static (handle, at) => handle.ArrayLength(at));

    /// <summary>A read of the handle at <paramref name="path"/>; used after the request ended, the error names <paramref name="named"/>.</summary>
    private T Read<T>(SessionPath path, SessionPath named, Func<SessionHandle, SessionPath, T> read)
    {
        try
        {
            return read(Handle, path);
        }
        catch (ObjectDisposedException e)
        {
            throw Stale(named, "read", e);
        }
    }

    internal void SetAt(SessionPath path, Json value)
    {
        try
        {
            Handle.Set(path, value);
        }
        catch (ObjectDisposedException e)
        {
            throw Stale(path, "change", e);
        }
    }

    internal int AppendAt(SessionPath path, Json value)
    {
        try
        {
            return Handle.Append(path, value);
        }
        catch (ObjectDisposedException e)
        {
            throw Stale(path, "change", e);
        }
    }

    internal bool RemoveAt(SessionPath path)
    {
        if (!Contains(path))
        {
            return false;
        }

        try
        {
            Handle.Remove(path);
            return true;
        }
        catch (ObjectDisposedException e)
        {
            throw Stale(path, "change", e);
        }
    }

    internal decimal IncrementValue(SessionPath path, decimal by)
    {
        JsonNumber result;
        try
        {
            result = Handle.Increment(path, by);
        }
        catch (ObjectDisposedException e)
        {
            throw Stale(path, "change", e);
        }

        if (result.TryGetDecimal(out var exact))
        {
            return exact;
        }

        // More digits than a decimal holds: the nearest decimal, as System.Text.Json would read it.
        if (decimal.TryParse(result.Text, NumberStyles.Float, CultureInfo.InvariantCulture, out var rounded))
        {
            return rounded;
        }

        throw new OverflowException($"The value at '{path}' is now {result.Text}, beyond the range of decimal; read it with GetNode(\"{path}\").");
    }

    // The handle refuses use after its request ended; say so in C# terms, naming what was attempted.
    internal static ObjectDisposedException Stale(SessionPath path, string verb, ObjectDisposedException inner)
    {
        var what = path.IsRoot ? "the session" : $"'{path}'";
        return new ObjectDisposedException(
            $"Cannot {verb} {what}: this Sesame session belongs to a request that has ended, so it can no longer be read or changed. "
            + "Do not keep a session (or a dynamic view of it) beyond its request: get the current request's with "
            + "'await HttpContext.GetSesameAsync()' or a SesameSession parameter.",
            inner);
    }
}

/// <summary>Writes a session as its current JSON, so <c>Results.Json(session)</c> shows the session.</summary>
internal sealed class SesameSessionJsonConverter : JsonConverter<SesameSession>
{
    public override SesameSession Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        throw new NotSupportedException("A Sesame session cannot be deserialized; deserialize into your own type.");

    public override void Write(Utf8JsonWriter writer, SesameSession value, JsonSerializerOptions options) =>
        JsonModule.writeTo(writer, value.Current);
}
