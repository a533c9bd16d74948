/// Small helpers every benchmark report of this folder and its neighbours (the flood run, Redis memory) shares: reading
/// an option from the command line, the median of repeated runs, and numbers and dates written the same on every machine.
module Sesame.LoadTest.Figures

open System
open System.Globalization

/// The value after <paramref name="name"/> on the command line, or the fallback.
let option (args: string[]) (name: string) (fallback: string) =
    match Array.tryFindIndex ((=) name) args with
    | Some i when i + 1 < args.Length -> args[i + 1]
    | _ -> fallback

/// A number in the invariant culture (a report reads the same whatever the machine's locale).
let inv (format: string) (value: float) = value.ToString(format, CultureInfo.InvariantCulture)

/// The median of repeated measurements (the mean of the middle two for an even count).
let median (values: float list) =
    let sorted = List.sort values
    let n = sorted.Length
    if n % 2 = 1 then sorted[n / 2] else (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0

/// When a report was generated: now, in UTC, to the minute.
let generatedAt () = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture)
