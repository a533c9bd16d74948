using System.Collections;
using System.Dynamic;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Sesame;

/// <summary>
/// A <c>dynamic</c> view of one object or array in the session, at a fixed path: what
/// <see cref="SesameSession.Dynamic"/> and <c>context.GetDynamicSesameAsync()</c> give. It holds no copy: every
/// read sees the session as it is now, and every assignment records one update at its full path.
/// </summary>
/// <remarks>
/// <para><b>Reading</b> a member (<c>s.cart</c>) or an index (<c>s["first.name"]</c>, <c>s.items[2]</c>) gives
/// a <c>long</c> for an integer that fits, else a <c>decimal</c> when the number fits exactly, else a
/// <c>double</c>; a <c>string</c>, a <c>bool</c>; another proxy for an object or array; and <c>null</c>
/// for JSON null and for anything missing, so <c>s.times = (s.times ?? 0) + 1</c> works. Mind that
/// <c>decimal</c> and <c>double</c> do not mix in C#: write <c>s.price * 2m</c>, or cast.
/// On an array, <c>Length</c> and <c>Count</c> give its number of items.</para>
/// <para><b>Assigning</b> a member or an index records one set at the full path: <c>s.foo.bar.baz *= 2</c>
/// reads through the proxies for <c>foo</c> and <c>foo.bar</c> and records <c>set foo.bar.baz</c>, nothing
/// else. Missing objects on the way are created only through the typed facade or by assigning whole
/// values (<c>s.foo = new { bar = new { baz = 1 } }</c>): reading a missing member gives <c>null</c>, as
/// in JavaScript. Strings, booleans and numbers are stored as JSON scalars; anything else — anonymous
/// objects, records, classes, dictionaries, lists, arrays, <see cref="JsonNode"/> — is stored as a JSON
/// tree, encoded with <see cref="SesameOptions.SerializerOptions"/> (web defaults: camelCase names).
/// Assigning a proxy copies the value it shows. An array index equal to the array's length appends.</para>
/// <para><b>Methods</b> (they never hide data: reading or assigning a member named <c>Remove</c> reaches the session):
/// <list type="bullet">
/// <item><c>Remove(key)</c> / <c>Remove(index)</c>: removes an object's member or an array's item (the items
/// after it shift; the array is written as this request sees it, so it does not merge with concurrent requests'
/// changes to it); returns whether there was one.</item>
/// <item><c>Increment(key)</c> / <c>Increment(key, by)</c>: adds to a number exactly (missing counts as
/// zero) and returns the new value as a <c>decimal</c>. Unlike <c>s.n += 1</c>, which sets the value this
/// request computed, increments of one path by concurrent requests add up.</item>
/// <item><c>Add(value)</c>: appends to an array.</item>
/// <item><c>ToJsonString()</c>, like <c>ToString()</c>: the current value as compact JSON.</item>
/// </list></para>
/// <para><b>Enumerating</b> an array gives its items (values or proxies, as reading does); an item removed or added
/// while the loop runs makes it throw <see cref="InvalidOperationException"/>, as a <c>List&lt;T&gt;</c> does (items are
/// found by position: remove from the last index down); enumerating an object
/// gives <c>KeyValuePair&lt;string, object?&gt;</c> of its members. <b>Converting</b> a proxy to a type
/// (<c>Cart cart = s.cart;</c>) decodes the current value with the serializer options; to
/// <see cref="JsonNode"/> or <see cref="Json"/> gives the value as that. Serializing a proxy with
/// System.Text.Json writes the current value.</para>
/// <para>A proxy belongs to its request: used after the request ended, it throws
/// <see cref="ObjectDisposedException"/>, for reads as for changes. A proxy names a path, not a value: once an item
/// before its own was removed, it names the item now at its index. Once nothing is at its path (its object removed,
/// its index past the array's end), it reads as missing, and a change through it throws
/// <see cref="InvalidOperationException"/> rather than make the value again.</para>
/// </remarks>
[JsonConverter(typeof(SessionProxyJsonConverter))]
public sealed class SessionProxy : DynamicObject, IEnumerable<object?>
{
    private readonly SesameSession session;
    private readonly SessionPath path;

    internal SessionProxy(SesameSession session, SessionPath path)
    {
        this.session = session;
        this.path = path;
    }

    /// <summary>Reads a member: a scalar, a proxy for an object or array, or <c>null</c> when missing.</summary>
    /// <param name="binder">The member's name.</param>
    /// <param name="result">The value.</param>
    /// <returns>Always <c>true</c>: a missing member reads as <c>null</c>.</returns>
    public override bool TryGetMember(GetMemberBinder binder, out object? result)
    {
        if (binder.Name is "Length" or "Count" && session.ArrayLength(path) is var length and >= 0)
        {
            result = length;
            return true;
        }

        result = Read(Segment.NewKey(binder.Name));
        return true;
    }

    /// <summary>Assigns a member: records one set at this proxy's path plus the member's name.</summary>
    /// <param name="binder">The member's name.</param>
    /// <param name="value">The value to store.</param>
    /// <returns>Always <c>true</c>.</returns>
    /// <exception cref="PathConflictException">This proxy's value is not an object (an array, say); nothing is recorded.</exception>
    /// <exception cref="InvalidOperationException">This proxy's value is no longer in the session; nothing is recorded.</exception>
    public override bool TrySetMember(SetMemberBinder binder, object? value)
    {
        EnsureStillThere();
        session.SetAt(SessionPathModule.child(Segment.NewKey(binder.Name), path), Encode(value));
        return true;
    }

    /// <summary>Reads an index: a string is an object key (any characters), an integer an array index.</summary>
    /// <param name="binder">The binder.</param>
    /// <param name="indexes">One key or one index.</param>
    /// <param name="result">The value, or <c>null</c> when missing.</param>
    /// <returns>Always <c>true</c>.</returns>
    /// <exception cref="ArgumentException">Not exactly one string or integer index.</exception>
    public override bool TryGetIndex(GetIndexBinder binder, object[] indexes, out object? result)
    {
        result = Read(SegmentOf(indexes));
        return true;
    }

    /// <summary>Assigns an index: records one set at this proxy's path plus the key or index.</summary>
    /// <param name="binder">The binder.</param>
    /// <param name="indexes">One key (string) or one array index (integer; the array's length appends).</param>
    /// <param name="value">The value to store.</param>
    /// <returns>Always <c>true</c>.</returns>
    /// <exception cref="ArgumentException">Not exactly one string or integer index.</exception>
    /// <exception cref="PathConflictException">The index does not fit this value (a key into an array, an index past the end); nothing is recorded.</exception>
    /// <exception cref="InvalidOperationException">This proxy's value is no longer in the session; nothing is recorded.</exception>
    public override bool TrySetIndex(SetIndexBinder binder, object[] indexes, object? value)
    {
        var segment = SegmentOf(indexes);
        EnsureStillThere();
        session.SetAt(SessionPathModule.child(segment, path), Encode(value));
        return true;
    }

    /// <summary>Runs one of the proxy's methods: <c>Remove</c>, <c>Increment</c>, <c>Add</c>, <c>ToJsonString</c> (see the class remarks).</summary>
    /// <param name="binder">The method's name.</param>
    /// <param name="args">Its arguments.</param>
    /// <param name="result">What it returns.</param>
    /// <returns><c>true</c> for those methods, <c>false</c> (no such method) for any other name.</returns>
    public override bool TryInvokeMember(InvokeMemberBinder binder, object?[]? args, out object? result)
    {
        args ??= [];
        switch (binder.Name)
        {
            case "Remove" when args.Length == 1:
                result = session.RemoveAt(SessionPathModule.child(SegmentOf(args!), path));
                return true;
            case "Increment" when args.Length is 1 or 2 && args[0] is string key:
                var by = args.Length == 2 ? ToDecimal(args[1]) : 1m;
                EnsureStillThere();
                result = session.IncrementValue(SessionPathModule.child(Segment.NewKey(key), path), by);
                return true;
            case "Add" when args.Length == 1:
                if (session.ArrayLength(path) < 0)
                {
                    throw new InvalidOperationException($"Add appends to an array, and '{Describe()}' is not one.");
                }

                // An append, not a set of index n: concurrent requests' Adds all survive.
                session.AppendAt(path, Encode(args[0]));
                result = null;
                return true;
            case "ToJsonString" when args.Length == 0:
                result = ToJsonString();
                return true;
            case "Remove" or "Increment" or "Add" or "ToJsonString":
                throw new ArgumentException(
                    $"Wrong arguments for {binder.Name}: use Remove(key or index), Increment(key) or Increment(key, by), Add(value), ToJsonString().");
            default:
                result = null;
                return false;
        }
    }

    /// <summary>Converts the current value: to <see cref="Json"/> or <see cref="JsonNode"/> as is, to any other type by decoding it with the serializer options.</summary>
    /// <param name="binder">The target type.</param>
    /// <param name="result">The converted value.</param>
    /// <returns>Always <c>true</c>.</returns>
    /// <exception cref="JsonException">The value does not fit the type; the message names the path.</exception>
    public override bool TryConvert(ConvertBinder binder, out object? result)
    {
        var current = CurrentValue();
        var type = binder.Type;
        if (type == typeof(Json))
        {
            result = current;
        }
        else if (typeof(JsonNode).IsAssignableFrom(type))
        {
            var node = JsonModule.toJsonNode(current);
            result = node is null || type.IsInstanceOfType(node)
                ? node
                : throw new InvalidCastException($"'{Describe()}' holds a {node.GetValueKind()}, not a {type.Name}.");
        }
        else
        {
            try
            {
                result = JsonSerializer.Deserialize(JsonModule.toUtf8(current), type, session.Options.SerializerOptions);
            }
            catch (JsonException e)
            {
                throw new JsonException($"The session value at '{Describe()}' cannot be read as {type.Name}: {e.Message}", e);
            }
        }

        return true;
    }

    /// <summary>The member names of an object (none for an array).</summary>
    /// <returns>The names, in insertion order.</returns>
    public override IEnumerable<string> GetDynamicMemberNames() =>
        session.Find(path) is Json.Object o ? o.Item.Select(p => p.Key).ToArray() : [];

    /// <summary>
    /// The items of an array (values, or proxies for objects and arrays), or the members of an object as
    /// <c>KeyValuePair&lt;string, object?&gt;</c>, as they are now.
    /// </summary>
    /// <returns>The enumerator.</returns>
    public IEnumerator<object?> GetEnumerator()
    {
        var here = session.Find(path);
        return here switch
        {
            Json.Array a => Items(a.Item),
            Json.Object o => Members(o.Item),
            _ => Enumerable.Empty<object?>().GetEnumerator(),
        };
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>The current value as compact JSON (<c>null</c> when it is no longer there).</summary>
    /// <returns>The JSON text.</returns>
    public override string ToString() => ToJsonString();

    private string ToJsonString() => JsonModule.serialize(CurrentValue());

    /// <summary>The value this proxy shows now; JSON null once it is no longer there.</summary>
    internal Json CurrentValue() => session.Find(path) ?? Json.Null;

    private IEnumerator<object?> Items(System.Collections.Immutable.ImmutableArray<Json> items)
    {
        for (var i = 0; i < items.Length; i++)
        {
            // Items are found by position: once the loop removed or added one, the proxies it would go on to give
            // name other items (or none), and a loop that removes as it goes would skip and remove the wrong ones.
            // Read without making the tree this request changed: a loop that changes each item stays linear.
            if (i > 0 && session.ArrayLength(path) != items.Length)
            {
                throw new InvalidOperationException(
                    $"The array '{Describe()}' was changed while it was enumerated (an item removed or added): its items are found by position, so the loop would skip or repeat items. Remove from the last index down (for (var i = items.Count - 1; i >= 0; i--)), or assign the array you want.");
            }

            yield return View(items[i], Segment.NewIndex(i));
        }
    }

    /// <summary>
    /// A change through a proxy lands only where the proxy's value still is: the path of an object removed (or an array
    /// item shifted past the end) since the proxy was read would otherwise be created again, with only this change in it.
    /// </summary>
    private void EnsureStillThere()
    {
        if (!path.IsRoot && !session.Contains(path))
        {
            throw new InvalidOperationException(
                $"Cannot change '{Describe()}' through this proxy: it is no longer in the session (removed since the proxy was read, or its array shortened), and the change would make it again. Nothing was recorded; read it again from the session.");
        }
    }

    private IEnumerator<object?> Members(JsonObject members)
    {
        foreach (var member in members)
        {
            yield return new KeyValuePair<string, object?>(member.Key, View(member.Value, Segment.NewKey(member.Key)));
        }
    }

    /// <summary>
    /// A child's value as reading gives it: a proxy for an object or array, else the leaf. Read by kind first, so that
    /// a loop reading what it just changed does not make the changed tree again for each read (a leaf is found in the
    /// request's changes as it is).
    /// </summary>
    private object? Read(Segment segment)
    {
        var childPath = SessionPathModule.child(segment, path);
        return session.KindAt(childPath, path) switch
        {
            JsonValueKind.Object or JsonValueKind.Array => new SessionProxy(session, childPath),
            JsonValueKind.Undefined => null,
            _ => JsonValues.Leaf(session.Find(childPath)),
        };
    }

    private object? View(Json? child, Segment segment) =>
        child is Json.Object or Json.Array ? new SessionProxy(session, SessionPathModule.child(segment, path)) : JsonValues.Leaf(child);

    private Json Encode(object? value) => JsonValues.Encode(value, session.Options.SerializerOptions);

    private string Describe() => path.IsRoot ? "the session" : path.ToString();

    private static Segment SegmentOf(object?[] indexes)
    {
        if (indexes.Length != 1)
        {
            throw new ArgumentException($"A session index takes one key (a string) or one array index (an integer), not {indexes.Length} values.");
        }

        long? index = indexes[0] switch
        {
            int i => i,
            long l => l,
            short s => s,
            byte b => b,
            sbyte b => b,
            ushort s => s,
            uint u => u,
            _ => null,
        };
        return indexes[0] switch
        {
            string key => Segment.NewKey(key),
            _ when index is >= 0 and <= int.MaxValue => Segment.NewIndex((int)index.Value),
            _ when index is not null => throw new ArgumentOutOfRangeException(nameof(indexes), index, "An array index must be between 0 and int.MaxValue."),
            null => throw new ArgumentNullException(nameof(indexes), "A session key cannot be null."),
            var other => throw new ArgumentException($"A session index is a string key or an integer array index, not a {other.GetType().Name}."),
        };
    }

    private static decimal ToDecimal(object? by) => by switch
    {
        decimal d => d,
        int or long or short or byte or sbyte or ushort or uint or ulong or double or float => Convert.ToDecimal(by, CultureInfo.InvariantCulture),
        _ => throw new ArgumentException($"Increment takes a number to add, not {by?.GetType().Name ?? "null"}."),
    };
}

/// <summary>Writes a proxy as the JSON it shows, so <c>Results.Json(s.cart)</c> and nested proxies serialize as their values.</summary>
internal sealed class SessionProxyJsonConverter : JsonConverter<SessionProxy>
{
    public override SessionProxy Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        throw new NotSupportedException("A session proxy is a view of the session and cannot be deserialized; deserialize into your own type.");

    public override void Write(Utf8JsonWriter writer, SessionProxy value, JsonSerializerOptions options) =>
        JsonModule.writeTo(writer, value.CurrentValue());
}
