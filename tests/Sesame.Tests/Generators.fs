module Sesame.Tests.Generators

open Sesame
open System
open System.Numerics
open System.Globalization
open FsCheck
open FsCheck.FSharp
open Expecto

// ---------------------------------------------------------------------------------------------
// Running properties
// ---------------------------------------------------------------------------------------------

/// FsCheck settings for a law: <paramref name="cases"/> cases, and never fewer than 1,000.
let lawConfig (cases: int) = { FsCheckConfig.defaultConfig with maxTest = max 1000 cases }

/// The function Expecto runs for a property test (it takes the run's FsCheck settings).
let private runnerOf (test: Test) =
    match test with
    | TestLabel(_, TestCase(AsyncFsCheck(_, _, run), _), _) -> run
    | other -> failwith $"Expecto.FsCheck made an unexpected test shape: %A{other}"

/// <summary>
/// A law checked by FsCheck on <paramref name="cases"/> cases (at least 1,000), with a guard run
/// after the cases passed: <paramref name="law"/> makes the property and its counters afresh for
/// every run (a stress run repeats it), and the guard fails the test when the counters show the law
/// held vacuously (too few cases reached what it is about).
/// </summary>
let testGuardedLawWith (cases: int) (name: string) (law: unit -> Property * (unit -> unit)) : Test =
    let config = lawConfig cases
    match testPropertyWithConfig config name (fun () -> true) with
    | TestLabel(label, TestCase(AsyncFsCheck(testConfig, stressConfig, _), focus), labelFocus) ->
        let run (runConfig: FsCheckConfig) = async {
            let property, guard = law ()
            do! runnerOf (testPropertyWithConfig config name property) runConfig
            guard ()
        }
        TestLabel(label, TestCase(AsyncFsCheck(testConfig, stressConfig, run), focus), labelFocus)
    | other -> failwith $"Expecto.FsCheck made an unexpected test shape: %A{other}"

/// A guarded law (see testGuardedLawWith) checked on 1,000 cases.
let testGuardedLaw (name: string) (law: unit -> Property * (unit -> unit)) = testGuardedLawWith 1000 name law

/// A law checked by FsCheck on <paramref name="cases"/> cases (at least 1,000); a failure reports the counterexample and the seed.
let testLawWith (cases: int) (name: string) (law: unit -> Property) = testGuardedLawWith cases name (fun () -> law (), ignore)

/// A law checked by FsCheck on 1,000 cases.
let testLaw (name: string) (law: unit -> Property) = testLawWith 1000 name law

/// Passes when <paramref name="ok"/> holds; otherwise fails the property with the description (built only on failure).
let claim (ok: bool) (describe: unit -> string) = if ok then true else failwith (describe ())

/// Shrinks a list by dropping one element at a time (so a failing update sequence shrinks to the updates that matter).
let shrinkList (items: 'item list) : seq<'item list> = seq {
    for i in 0 .. items.Length - 1 do
        List.removeAt i items
}

// ---------------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------------

/// Numbers that are easy to get wrong: beyond 2^53, beyond a double, beyond a decimal, with
/// trailing zeros that must survive, negative zero, and every exponent spelling.
let interestingNumbers = [
    "0"
    "-0"
    "1"
    "-1"
    "1.10"
    "2.50"
    "0.1"
    "-0.000"
    "1e400"
    "-1e400"
    "1E-7"
    "1e+2"
    "2.5E+10"
    "9007199254740993"
    "-9007199254740993"
    "9223372036854775807"
    "9223372036854775808"
    "-9223372036854775809"
    "123456789012345678901234567890123456789"
    "3.14159265358979323846264338327950288"
    "79228162514264337593543950336"
    "1e-400"
    "0.30000000000000004"
]

let private digitString (minLength: int) (maxLength: int) = gen {
    let! length = Gen.choose (minLength, maxLength)
    let! digits = Gen.listOfLength length (Gen.choose (0, 9))
    return digits |> List.map string |> String.concat ""
}

/// Text of a JSON number built from parts: sign, integer part, optional fraction and exponent.
let private composedNumberText (maxExponent: int) = gen {
    let! negative = Gen.elements [ false; false; true ]
    let! integer =
        Gen.oneof [
            Gen.constant "0"
            gen {
                let! first = Gen.choose (1, 9)
                let! rest = digitString 0 25
                return string first + rest
            }
        ]
    let! fraction = Gen.oneof [ Gen.constant ""; digitString 1 20 |> Gen.map (fun d -> "." + d) ]
    let! exponent =
        Gen.frequency [
            4, Gen.constant ""
            2, Gen.choose (-40, 40) |> Gen.map (fun e -> $"e{e}")
            1, Gen.choose (-maxExponent, maxExponent) |> Gen.map (fun e -> if e >= 0 then $"E+{e}" else $"E{e}")
        ]
    return (if negative then "-" else "") + integer + fraction + exponent
}

/// JSON number texts: common small values, 64-bit integers, decimals, huge integers, large exponents.
let numberTextWith (maxExponent: int) : Gen<string> =
    Gen.frequency [
        3, Gen.elements interestingNumbers
        3, Gen.choose (-1000, 1000) |> Gen.map string
        2, Gen.choose64 (Int64.MinValue, Int64.MaxValue) |> Gen.map (fun i -> i.ToString(CultureInfo.InvariantCulture))
        2,
        gen {
            let! mantissa = Gen.choose64 (-100_000_000L, 100_000_000L)
            let! scale = Gen.choose (0, 10)
            return (decimal mantissa / pown 10m scale).ToString(CultureInfo.InvariantCulture)
        }
        3, composedNumberText maxExponent
    ]

/// JSON numbers, with exponents up to ±500.
let number: Gen<JsonNumber> = numberTextWith 500 |> Gen.map JsonNumber.Parse

/// JSON numbers whose exponents may be thousands apart (around the exact-addition limit).
let wideNumber: Gen<JsonNumber> =
    Gen.frequency [
        3, numberTextWith 500
        1,
        gen {
            let! mantissa = Gen.choose (-99, 99)
            let! exponent = Gen.choose (-5000, 5000)
            return $"{mantissa}e{exponent}"
        }
    ]
    |> Gen.map JsonNumber.Parse

/// Increments: mostly what apps add (small integers and decimals), sometimes anything.
let incrementBy: Gen<JsonNumber> =
    Gen.frequency [
        4, Gen.choose (-5, 10) |> Gen.map (int64 >> JsonNumber.OfInt64)
        2, Gen.elements [ 0.5m; 1.10m; -0.25m; 0.001m ] |> Gen.map JsonNumber.OfDecimal
        1, number
    ]

// ---------------------------------------------------------------------------------------------
// Strings and keys
// ---------------------------------------------------------------------------------------------

/// Pieces strings are made of: ASCII, JSON's escapes, control characters, accented and CJK
/// letters, emoji (surrogate pairs, kept whole), separators and text that looks like markup.
let private stringPieces = [
    "a"
    "b"
    "z"
    "Z"
    "0"
    "9"
    " "
    "."
    "["
    "]"
    "\""
    "\\"
    "/"
    "'"
    "\n"
    "\r"
    "\t"
    "\u0000"
    "\u0001"
    "\u001f"
    "\u007f"
    "é"
    "ß"
    "Ω"
    "Я"
    "日本"
    "中"
    "😀"
    "👍🏽"
    "𝄞"
    "\u00a0"
    "\u2028"
    "\u2029"
    "\u200b"
    "\ufeff"
    "</script>"
    "<&>"
    "+"
    "\u0301"
    "ﷺ"
]

/// Strings made of the pieces above, including the empty string.
let jsonString: Gen<string> =
    Gen.frequency [
        1, Gen.constant ""
        6,
        gen {
            let! count = Gen.choose (1, 8)
            let! pieces = Gen.listOfLength count (Gen.elements stringPieces)
            return String.concat "" pieces
        }
    ]

/// The small key alphabet: updates collide and nest often.
let commonKeys = [ "a"; "b"; "c" ]

/// Keys a path must quote or that are easy to mangle: empty, dots, brackets, quotes, escapes, unicode.
let oddKeys = [
    ""
    "first.name"
    "a.b"
    "a[0]"
    "[0]"
    "]"
    "["
    "say \"hi\""
    "back\\slash"
    "é"
    "日本"
    "😀"
    " "
    "a b"
    "tab\t"
    "new\nline"
    "0"
    "01"
    "-1"
    "\u2028"
    "\u0000"
    "."
    ".."
]

/// Keys for trees and paths: mostly the small alphabet, sometimes an odd key.
let key: Gen<string> = Gen.frequency [ 8, Gen.elements commonKeys; 1, Gen.elements oddKeys; 1, jsonString ]

// ---------------------------------------------------------------------------------------------
// Trees
// ---------------------------------------------------------------------------------------------

/// A JSON tree at most <paramref name="depth"/> containers deep, at most <paramref name="width"/> items or keys per container.
let rec jsonOfDepth (depth: int) (width: int) : Gen<Json> =
    let leaf =
        Gen.frequency [
            1, Gen.constant Json.Null
            1, Gen.elements [ true; false ] |> Gen.map Json.Bool
            3, number |> Gen.map Json.Number
            3, jsonString |> Gen.map Json.String
        ]
    if depth <= 0 then
        leaf
    else
        let child = jsonOfDepth (depth - 1) width
        let array = gen {
            let! length = Gen.choose (0, width)
            let! items = Gen.listOfLength length child
            return Json.array items
        }
        let object = gen {
            let! count = Gen.choose (0, width)
            let! pairs = Gen.listOfLength count (Gen.zip key child)
            return Json.object pairs
        }
        Gen.frequency [ 3, leaf; 2, array; 3, object ]

/// Trees up to 4 levels deep and 4 wide, of every kind.
let jsonTree: Gen<Json> = Gen.sized (fun size -> jsonOfDepth (min 4 (1 + size / 20)) 4)

/// A session: an object at the root (what a store holds), mostly, and sometimes any other value.
let session: Gen<Json> =
    Gen.frequency [
        12,
        gen {
            let! count = Gen.choose (0, 4)
            let! pairs = Gen.listOfLength count (Gen.zip key (jsonOfDepth 3 3))
            return Json.object pairs
        }
        1, jsonOfDepth 3 3
    ]

// ---------------------------------------------------------------------------------------------
// Paths and updates
// ---------------------------------------------------------------------------------------------

/// A key segment: mostly a common key, rarely an odd one.
let keySegment: Gen<Segment> = Gen.frequency [ 8, Gen.elements commonKeys |> Gen.map Segment.Key; 1, Gen.elements oddKeys |> Gen.map Segment.Key ]

/// A segment below the first: mostly a common key, sometimes a small index (0 most often), rarely an odd key.
let segment: Gen<Segment> =
    Gen.frequency [ 7, keySegment; 2, Gen.frequency [ 5, Gen.constant 0; 2, Gen.constant 1; 1, Gen.constant 2 ] |> Gen.map Segment.Index ]

/// Segments of a path into a session: the first is a key (a session is an object), the rest anything.
let private segments (count: int) : Gen<Segment list> =
    if count = 0 then Gen.constant [] else Gen.map2 (fun first rest -> first :: rest) keySegment (Gen.listOfLength (count - 1) segment)

/// Paths of 1 to 4 segments over the small alphabet (rarely the root), so updates collide and nest often.
let updatePath: Gen<SessionPath> = gen {
    let! length = Gen.frequency [ 1, Gen.constant 0; 20, Gen.choose (1, 4) ]
    let! segments = segments length
    return SessionPath.ofSegments segments
}

/// A path that ends in a key, as Update.remove requires.
let keyEndingPath: Gen<SessionPath> = gen {
    let! length = Gen.choose (0, 3)
    let! prefix = segments length
    let! last = if length = 0 then keySegment else Gen.frequency [ 3, keySegment; 1, Gen.constant (Segment.Key "n") ]
    return SessionPath.ofSegments (prefix @ [ last ])
}

/// Where increments go: mostly a counter key "n", sometimes a key sets and removes use too.
let incrementPath: Gen<SessionPath> = gen {
    let! length = Gen.choose (0, 2)
    let! prefix = segments length
    let! last = Gen.frequency [ 3, Gen.constant (Segment.Key "n"); 1, keySegment ]
    return SessionPath.ofSegments (prefix @ [ last ])
}

/// One update: Set (of a small tree), Remove (of a key), Increment or Append.
let update: Gen<Update> =
    Gen.frequency [
        5, Gen.map2 Update.set updatePath (jsonOfDepth 2 3)
        1, Gen.map2 Update.set incrementPath (number |> Gen.map Json.Number)
        3, keyEndingPath |> Gen.map Update.remove
        1, Gen.constant (Update.Remove SessionPath.root)
        4, Gen.map2 (fun p by -> Update.Increment(p, by)) incrementPath incrementBy
        2, Gen.map2 (fun p value -> Update.Append(p, value)) updatePath (jsonOfDepth 1 2)
    ]

/// A request's update log: 0 to 12 updates.
let updates: Gen<Update list> = gen {
    let! count = Gen.frequency [ 3, Gen.choose (0, 6); 1, Gen.choose (7, 12) ]
    return! Gen.listOfLength count update
}

/// Paths for the text round trip: 1 to 6 segments of any key (odd ones often) and any non-negative index.
let anyPath: Gen<SessionPath> =
    let anySegment =
        Gen.frequency [
            3, key |> Gen.map Segment.Key
            2, Gen.elements oddKeys |> Gen.map Segment.Key
            1, jsonString |> Gen.map Segment.Key
            2, Gen.oneof [ Gen.choose (0, 20); Gen.choose (0, Int32.MaxValue) ] |> Gen.map Segment.Index
        ]
    gen {
        let! length = Gen.choose (1, 6)
        let! segments = Gen.listOfLength length anySegment
        return SessionPath.ofSegments segments
    }

// ---------------------------------------------------------------------------------------------
// Arbitraries, with readable counterexamples
// ---------------------------------------------------------------------------------------------

let private showUpdates (updates: Update list) = updates |> List.map string |> String.concat "; " |> sprintf "[%s]"

/// A tree and an update log, shown as JSON text and update text when a property fails.
[<StructuredFormatDisplay("{Display}")>]
type Scenario = {
    Tree: Json
    Updates: Update list
} with

    member this.Display = $"tree {Json.serialize this.Tree}, updates {showUpdates this.Updates}"
    override this.ToString() = this.Display

/// Scenarios: a session and a request's updates; shrinks by dropping updates and by emptying the tree.
let scenarios: Arbitrary<Scenario> =
    let generate = Gen.map2 (fun tree updates -> { Tree = tree; Updates = updates }) session updates
    let shrink (scenario: Scenario) = seq {
        for shorter in shrinkList scenario.Updates do
            { scenario with Updates = shorter }
        if scenario.Tree <> Json.emptyObject then { scenario with Tree = Json.emptyObject }
    }
    Arb.fromGenShrink (generate, shrink)

/// Scenarios around arrays: short arrays under two keys, paths through indexes 0 to 3, so that
/// updates append items that later updates rely on (order matters).
let arrayScenarios: Arbitrary<Scenario> =
    let index = Gen.frequency [ 3, Gen.constant 0; 3, Gen.constant 1; 2, Gen.constant 2; 1, Gen.constant 3 ] |> Gen.map Segment.Index
    let nestedIndex = Gen.frequency [ 4, Gen.constant 0; 1, Gen.constant 1 ] |> Gen.map Segment.Index
    let inner = Gen.elements [ "k"; "x" ] |> Gen.map Segment.Key
    let arrayPath = gen {
        let! first = Gen.elements [ "a"; "b" ] |> Gen.map Segment.Key
        let! shape = Gen.choose (0, 5)
        let! rest =
            match shape with
            | 0 -> Gen.constant []
            | 1 -> Gen.map List.singleton index
            | 2 -> Gen.map2 (fun i k -> [ i; k ]) index inner
            | 3 -> Gen.map3 (fun i k l -> [ i; k; l ]) index inner inner
            | 4 -> Gen.map3 (fun i k j -> [ i; k; j ]) index inner nestedIndex
            | _ -> Gen.map2 (fun i j -> [ i; j ]) index nestedIndex
        return SessionPath.ofSegments (first :: rest)
    }
    let keyEnding = gen {
        let! p = arrayPath
        let! k = inner
        return
            (match List.tryLast p.Segments with
             | Some(Segment.Index _) -> SessionPath.child k p
             | _ -> p)
    }
    let counter = gen {
        let! first = Gen.elements [ "a"; "b" ] |> Gen.map Segment.Key
        let! i = index
        return SessionPath.ofSegments [ first; i; Segment.Key "n" ]
    }
    let value = Gen.frequency [ 2, jsonOfDepth 0 0; 2, Gen.constant Json.emptyObject; 1, Gen.constant (Json.array []) ]
    let update =
        Gen.frequency [
            5, Gen.map2 Update.set arrayPath value
            3, keyEnding |> Gen.map Update.remove
            2, Gen.map2 (fun p by -> Update.Increment(p, by)) counter incrementBy
            3, Gen.map2 (fun p v -> Update.Append(p, v)) arrayPath value
        ]
    let item = Gen.frequency [ 1, Gen.constant (Json.int64 0L); 2, Gen.constant (Json.object [ "k", Json.int64 1L ]); 2, Gen.constant Json.emptyObject ]
    let tree = gen {
        let! a = Gen.choose (1, 3) |> Gen.bind (fun n -> Gen.listOfLength n item)
        let! b = Gen.choose (0, 2) |> Gen.bind (fun n -> Gen.listOfLength n item)
        let! hasB = Gen.elements [ true; false ]
        return Json.object [ "a", Json.array a; if hasB then "b", Json.array b ]
    }
    let generate = gen {
        let! tree = tree
        let! count = Gen.frequency [ 3, Gen.choose (1, 5); 1, Gen.choose (6, 10) ]
        let! updates = Gen.listOfLength count update
        return { Tree = tree; Updates = updates }
    }
    let shrink (scenario: Scenario) = shrinkList scenario.Updates |> Seq.map (fun shorter -> { scenario with Updates = shorter })
    Arb.fromGenShrink (generate, shrink)

/// A JSON value shown as its text.
[<StructuredFormatDisplay("{Display}")>]
type Tree = {
    Value: Json
} with

    member this.Display = Json.serialize this.Value
    override this.ToString() = this.Display

/// Trees of every kind, shown as JSON text.
let trees: Arbitrary<Tree> = Arb.fromGen (jsonTree |> Gen.map (fun value -> { Value = value }))

/// Paths for the text round trip, shown as their segments.
let paths: Arbitrary<SessionPath> = Arb.fromGen anyPath

/// Numbers, shown as their text.
let numbers: Arbitrary<JsonNumber> = Arb.fromGen number

/// Numbers whose exponents may be thousands apart.
let wideNumbers: Arbitrary<JsonNumber> = Arb.fromGen wideNumber

// ---------------------------------------------------------------------------------------------
// Exact arithmetic, computed independently of JsonNumber
// ---------------------------------------------------------------------------------------------

/// A number's text as mantissa * 10^exponent, by string surgery (not by JsonNumber's own code).
let exactParts (text: string) : BigInteger * int =
    let significand, exponent =
        match text.IndexOfAny [| 'e'; 'E' |] with
        | -1 -> text, 0
        | at -> text.Substring(0, at), int (text.Substring(at + 1).TrimStart '+')
    match significand.IndexOf '.' with
    | -1 -> BigInteger.Parse(significand, CultureInfo.InvariantCulture), exponent
    | dot ->
        let digits = significand.Remove(dot, 1)
        BigInteger.Parse(digits, CultureInfo.InvariantCulture), exponent - (significand.Length - dot - 1)

/// Whether two number texts denote the same value.
let sameValue (a: string) (b: string) =
    let ma, ea = exactParts a
    let mb, eb = exactParts b
    let e = min ea eb
    ma * BigInteger.Pow(10I, ea - e) = mb * BigInteger.Pow(10I, eb - e)

/// The exact sum of two number texts, as mantissa and exponent.
let exactSum (a: string) (b: string) : BigInteger * int =
    let ma, ea = exactParts a
    let mb, eb = exactParts b
    let e = min ea eb
    ma * BigInteger.Pow(10I, ea - e) + mb * BigInteger.Pow(10I, eb - e), e
