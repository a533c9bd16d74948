using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace Sesame;

/// <summary>
/// Moving values between .NET and the session's JSON tree. Objects go through System.Text.Json with
/// the session's serializer options; the common scalars (string, bool, int, long, decimal, double)
/// take a direct route that gives exactly what the serializer would, and is used only when the
/// options cannot make a difference (no converter for that type, no number-as-string handling,
/// the reflection resolver).
/// </summary>
internal static class JsonValues
{
    private static readonly Json True = Json.NewBool(true);
    private static readonly Json False = Json.NewBool(false);
    private static readonly object BoxedTrue = true;
    private static readonly object BoxedFalse = false;

    /// <summary>Which scalar types a set of serializer options leaves as plain JSON scalars.</summary>
    private sealed class Plain(JsonSerializerOptions options)
    {
        private static readonly JsonNumberHandling WriteChanging =
            JsonNumberHandling.WriteAsString | JsonNumberHandling.AllowNamedFloatingPointLiterals;

        public readonly bool String = Untouched(options, typeof(string));
        public readonly bool Bool = Untouched(options, typeof(bool));
        public readonly bool Int64 = Untouched(options, typeof(long));
        public readonly bool Int32 = Untouched(options, typeof(int));
        public readonly bool Decimal = Untouched(options, typeof(decimal));
        public readonly bool Double = Untouched(options, typeof(double));

        /// <summary>Numbers are written as JSON numbers (not strings, not named literals).</summary>
        public readonly bool NumbersWritten = (options.NumberHandling & WriteChanging) == 0;

        private static bool StandardContracts(JsonSerializerOptions options) =>
            options.TypeInfoResolver is null
            || options.TypeInfoResolver is DefaultJsonTypeInfoResolver { Modifiers.Count: 0 } resolver
               && resolver.GetType() == typeof(DefaultJsonTypeInfoResolver);

        private static bool Untouched(JsonSerializerOptions options, Type type)
        {
            if (!StandardContracts(options))
            {
                return false;
            }

            foreach (var converter in options.Converters)
            {
                if (converter.CanConvert(type))
                {
                    return false;
                }
            }

            return true;
        }
    }

    private static readonly ConditionalWeakTable<JsonSerializerOptions, Plain> PlainByOptions = new();

    private static Plain PlainFor(JsonSerializerOptions options)
    {
        if (PlainByOptions.TryGetValue(options, out var plain))
        {
            return plain;
        }

        plain = new Plain(options);
        // Options are frozen once the serializer has used them; until then they may still change, so nothing is kept.
        if (options.IsReadOnly)
        {
            PlainByOptions.AddOrUpdate(options, plain);
        }

        return plain;
    }

    /// <summary>Encodes a value as the session would store it.</summary>
    /// <exception cref="NotSupportedException">The value's type cannot be serialized.</exception>
    /// <exception cref="ArgumentException">A number has no JSON form (NaN, infinity).</exception>
    /// <exception cref="JsonException">The object graph has a cycle or is too deep.</exception>
    public static Json Encode<T>(T value, JsonSerializerOptions options)
    {
        switch (value)
        {
            case null:
                return Json.Null;
            case Json json:
                return json;
            case SessionProxy proxy:
                return proxy.CurrentValue();
            case SesameSession session:
                return session.Current;
            case string text when PlainFor(options).String:
                return Json.NewString(text);
            case bool flag when PlainFor(options).Bool:
                return flag ? True : False;
            case long number when PlainFor(options) is { Int64: true, NumbersWritten: true }:
                return JsonModule.int64(number);
            case int number when PlainFor(options) is { Int32: true, NumbersWritten: true }:
                return JsonModule.int64(number);
            case decimal number when PlainFor(options) is { Decimal: true, NumbersWritten: true }:
                return JsonModule.@decimal(number);
            case double number when PlainFor(options) is { Double: true, NumbersWritten: true }:
                return Json.NewNumber(JsonNumber.OfDouble(number));
            default:
                return JsonModule.encodeWith(options, value);
        }
    }

    /// <summary>Decodes a JSON value as <typeparamref name="T"/>; the path names the value in errors.</summary>
    /// <exception cref="JsonException">The value does not fit the type; the message names the path.</exception>
    public static T Decode<T>(Json json, JsonSerializerOptions options, SessionPath path)
    {
        if (TryDecodeScalar(json, options, out T scalar))
        {
            return scalar;
        }

        try
        {
            return JsonModule.decodeWith<T>(options, json);
        }
        catch (JsonException e)
        {
            throw new JsonException($"The session value at '{path}' cannot be read as {typeof(T).Name}: {e.Message}", e);
        }
    }

    private static bool TryDecodeScalar<T>(Json json, JsonSerializerOptions options, out T value)
    {
        // typeof(T) tests are constants once the JIT specialises the method, so only one branch remains.
        if (typeof(T) == typeof(long))
        {
            if (json is Json.Number n && n.Item.TryGetInt64(out var v) && PlainFor(options).Int64)
            {
                value = (T)(object)v;
                return true;
            }
        }
        else if (typeof(T) == typeof(int))
        {
            if (json is Json.Number n && n.Item.TryGetInt64(out var v)
                && v is >= int.MinValue and <= int.MaxValue && PlainFor(options).Int32)
            {
                value = (T)(object)(int)v;
                return true;
            }
        }
        else if (typeof(T) == typeof(decimal))
        {
            if (json is Json.Number n && n.Item.TryGetDecimal(out var v) && PlainFor(options).Decimal)
            {
                value = (T)(object)v;
                return true;
            }
        }
        else if (typeof(T) == typeof(double))
        {
            if (json is Json.Number n && PlainFor(options).Double)
            {
                var d = n.Item.ToDouble();
                if (double.IsFinite(d))
                {
                    value = (T)(object)d;
                    return true;
                }
            }
        }
        else if (typeof(T) == typeof(string))
        {
            if (json is Json.String s && PlainFor(options).String)
            {
                value = (T)(object)s.Item;
                return true;
            }
        }
        else if (typeof(T) == typeof(bool))
        {
            if (json is Json.Bool b && PlainFor(options).Bool)
            {
                value = (T)(object)b.Item;
                return true;
            }
        }
        else if (typeof(T) == typeof(Json))
        {
            value = (T)(object)json;
            return true;
        }

        value = default!;
        return false;
    }

    /// <summary>
    /// The .NET value of a leaf: <c>long</c> for an integer that fits, else <c>decimal</c> when exact, else
    /// <c>double</c>; <c>string</c>, <c>bool</c>; <c>null</c> for JSON null and for nothing. Objects and arrays are left to the caller.
    /// </summary>
    public static object? Leaf(Json? json)
    {
        switch (json)
        {
            case Json.Number n:
                var number = n.Item;
                if (number.TryGetInt64(out var integer))
                {
                    return integer;
                }

                if (number.TryGetDecimal(out var exact))
                {
                    return exact;
                }

                return number.ToDouble();
            case Json.String s:
                return s.Item;
            case Json.Bool b:
                return b.Item ? BoxedTrue : BoxedFalse;
            default:
                return null;
        }
    }
}
