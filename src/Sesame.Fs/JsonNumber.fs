namespace Sesame

open System
open System.Globalization
open System.Numerics

/// <summary>
/// A JSON number kept as its exact text, so that a round trip never changes a value:
/// <c>1.10</c> stays <c>1.10</c>, <c>1e400</c> stays <c>1e400</c>, and 64-bit integers beyond
/// 2^53 keep every digit. Two numbers are equal when their texts are equal.
/// </summary>
[<Sealed; AllowNullLiteral(false)>]
type JsonNumber private (text: string) =

    /// Checks the JSON number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
    static let isValid (s: string) =
        let n = s.Length
        let mutable i = 0
        let digits () =
            let start = i
            while i < n && Char.IsAsciiDigit s[i] do
                i <- i + 1
            i > start
        if i < n && s[i] = '-' then i <- i + 1
        let intOk =
            if i < n && s[i] = '0' then
                i <- i + 1
                true
            else
                i < n && s[i] >= '1' && s[i] <= '9' && digits ()
        let fracOk =
            if intOk && i < n && s[i] = '.' then
                i <- i + 1
                digits ()
            else
                intOk
        let expOk =
            if fracOk && i < n && (s[i] = 'e' || s[i] = 'E') then
                i <- i + 1
                if i < n && (s[i] = '+' || s[i] = '-') then i <- i + 1
                digits ()
            else
                fracOk
        expOk && i = n

    /// The largest exponent (either sign) an exact addition accepts in either operand: beyond it the
    /// sum could need thousands of digits (e.g. 1e100000 + 1), which is refused rather than rounded.
    /// The bound is on each operand, not on the gap between them, so that a sum's exponent is within it
    /// whenever its operands' are: (a + b) + c and a + (b + c) then both succeed or both fail, and
    /// increments folded into one give what applying them one by one gives.
    static let maxExponent = 4096

    /// Splits the text into an exact mantissa and a power of ten: value = mantissa * 10^exponent.
    member internal _.Decompose() : struct (BigInteger * int) =
        let ePos = text.IndexOfAny([| 'e'; 'E' |])
        let significand, exponent =
            if ePos < 0 then
                text, 0L
            else
                let e =
                    match Int64.TryParse(text.AsSpan(ePos + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture) with
                    | true, e -> e
                    | _ -> raise (OverflowException $"The exponent of {text} is out of range for exact arithmetic.")
                text.Substring(0, ePos), e
        let dot = significand.IndexOf '.'
        let digits, scale = if dot < 0 then significand, 0 else significand.Remove(dot, 1), significand.Length - dot - 1
        let exponent = exponent - int64 scale
        if exponent > int64 Int32.MaxValue / 2L || exponent < int64 Int32.MinValue / 2L then
            raise (OverflowException $"The exponent of {text} is out of range for exact arithmetic.")
        struct (BigInteger.Parse(digits, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture), int exponent)

    /// The exact JSON text of this number.
    member _.Text = text

    /// <summary>The value as a 64-bit integer, when the text is an integer that fits.</summary>
    /// <param name="value">The value, when it fits.</param>
    /// <returns>Whether the text is an integer that fits.</returns>
    member _.TryGetInt64([<Runtime.InteropServices.Out>] value: byref<int64>) : bool =
        Int64.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, &value)

    /// The value as a 64-bit integer, if it is one that fits (for Sesame's own code, which matches on it).
    member internal _.Int64Value: int64 voption =
        match Int64.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture) with
        | true, v -> ValueSome v
        | _ -> ValueNone

    /// <summary>The value as a decimal, when the text converts without rounding.</summary>
    /// <param name="value">The value, when it converts exactly.</param>
    /// <returns>Whether the text converts to a decimal without rounding.</returns>
    member this.TryGetDecimal([<Runtime.InteropServices.Out>] value: byref<decimal>) : bool =
        match Decimal.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture) with
        | true, v ->
            // Decimal keeps 28-29 significant digits: compare exact values to know whether it rounded.
            let struct (m, e) = this.Decompose()
            if e < -60 || e > 60 then
                false
            else
                let struct (m2, e2) = (JsonNumber.OfDecimal v: JsonNumber).Decompose()
                let e0 = min e e2
                if m * BigInteger.Pow(10I, e - e0) = m2 * BigInteger.Pow(10I, e2 - e0) then
                    value <- v
                    true
                else
                    false
        | _ -> false

    /// <summary>The value as the nearest double (may round; huge values become infinity).</summary>
    member _.ToDouble() = Double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture)

    /// <summary>Adds two numbers exactly, keeping the finer of the two scales (<c>1.10 + 1 = 2.10</c>).</summary>
    /// <remarks>Written as mantissa × 10^exponent with an integer mantissa (<c>1.10</c> is 110 × 10^-2, <c>1e400</c> is 1 × 10^400),
    /// both exponents must be within ±4,096. Additions are associative: any grouping gives the same text, or every grouping is refused.</remarks>
    /// <exception cref="System.OverflowException">An exponent is beyond ±4,096, so the exact sum could need thousands of digits.</exception>
    static member Add(a: JsonNumber, b: JsonNumber) : JsonNumber =
        match a.TryGetInt64(), b.TryGetInt64() with
        // Counters are small integers: add them without BigInteger when the sum cannot overflow.
        // The text is the one the exact path gives for an integer sum (exponent 0).
        | (true, x), (true, y) when ((x ^^^ (x + y)) &&& (y ^^^ (x + y))) >= 0L -> JsonNumber.OfInt64(x + y)
        | _ ->
            let struct (ma, ea) = a.Decompose()
            let struct (mb, eb) = b.Decompose()
            let e = min ea eb
            if abs ea > maxExponent || abs eb > maxExponent then
                raise (OverflowException $"{a.Text} + {b.Text} cannot be computed exactly: an exponent is beyond ±{maxExponent}.")
            let sum = ma * BigInteger.Pow(10I, ea - e) + mb * BigInteger.Pow(10I, eb - e)
            JsonNumber.FromParts(sum, e)

    /// Formats mantissa * 10^exponent; the text decomposes back to the same pair, so sums are stable.
    static member internal FromParts(mantissa: BigInteger, exponent: int) : JsonNumber =
        if exponent > 0 then
            JsonNumber($"{mantissa.ToString(CultureInfo.InvariantCulture)}e{exponent}")
        elif exponent = 0 then
            JsonNumber(mantissa.ToString(CultureInfo.InvariantCulture))
        else
            let negative = mantissa.Sign < 0
            let digits = BigInteger.Abs(mantissa).ToString(CultureInfo.InvariantCulture)
            let scale = -exponent
            let padded = if digits.Length <= scale then String('0', scale - digits.Length + 1) + digits else digits
            let split = padded.Length - scale
            let body = padded.Substring(0, split) + "." + padded.Substring(split)
            JsonNumber(if negative then "-" + body else body)

    /// <summary>Parses JSON number text, keeping it exactly.</summary>
    /// <exception cref="System.FormatException">The text is not a JSON number.</exception>
    static member Parse(text: string) : JsonNumber =
        if isNull text || not (isValid text) then raise (FormatException $"'{text}' is not a JSON number.")
        JsonNumber text

    /// <summary>Parses JSON number text, keeping it exactly, when it is a JSON number.</summary>
    /// <param name="text">The text.</param>
    /// <param name="number">The number, when the text is one.</param>
    /// <returns>Whether the text is a JSON number.</returns>
    static member TryParse(text: string, [<Runtime.InteropServices.Out>] number: byref<JsonNumber>) : bool =
        if not (isNull text) && isValid text then
            number <- JsonNumber text
            true
        else
            false

    /// Wraps text the caller has already validated (a JSON reader's number token).
    static member internal Trusted(text: string) = JsonNumber text

    /// <summary>The number for a 64-bit integer.</summary>
    static member OfInt64(value: int64) = JsonNumber(value.ToString(CultureInfo.InvariantCulture))

    /// <summary>The number for a decimal, keeping its scale (<c>1.10m</c> gives <c>1.10</c>).</summary>
    static member OfDecimal(value: decimal) = JsonNumber(value.ToString(CultureInfo.InvariantCulture))

    /// <summary>The number for a double, in its shortest round-trip form.</summary>
    /// <exception cref="System.ArgumentException">NaN and infinities have no JSON form.</exception>
    static member OfDouble(value: float) =
        if Double.IsNaN value || Double.IsInfinity value then
            raise (ArgumentException($"{value} cannot be stored in JSON: NaN and infinities have no JSON form.", "value"))
        JsonNumber(value.ToString("R", CultureInfo.InvariantCulture))

    override _.ToString() = text
    override _.GetHashCode() = StringComparer.Ordinal.GetHashCode text
    override _.Equals(other: obj) =
        match other with
        | :? JsonNumber as n -> String.Equals(text, n.Text, StringComparison.Ordinal)
        | _ -> false

    interface IEquatable<JsonNumber> with
        member _.Equals(n: JsonNumber) = String.Equals(text, n.Text, StringComparison.Ordinal)
