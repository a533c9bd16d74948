/// A listing's page picked from sessions held in no order (src/Sesame.Fs/IdPage.fs): the same page as sorting every
/// candidate and cutting it, whatever order and repeats the candidates come in.
module Sesame.Tests.IdPageTests

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open Sesame
open Sesame.Tests.Generators

/// Ids from a few characters whose ordinal order differs from their code points' (a surrogate pair, U+E000 above it
/// in UTF-16, U+00E9 and ASCII), so that repeats, shared prefixes and that order all come up.
let private idOf (pieces: int list) =
    let alphabet = [| "a"; "b"; "Z"; "\u00e9"; "\ue000"; "\U0001F600" |]
    String.Join("", pieces |> List.map (fun i -> alphabet[abs i % alphabet.Length]))

/// The page as sorting does it: the distinct ids after the cursor, in ordinal order, the first count.
let private sorted (after: string) (count: int) (ids: string list) =
    ids
    |> List.distinct
    |> List.filter (fun id -> isNull after || String.CompareOrdinal(id, after) > 0)
    |> List.sortWith (fun a b -> String.CompareOrdinal(a, b))
    |> List.truncate count

[<Tests>]
let tests =
    testList "IdPage" [
        testGuardedLaw "a page is the first ids after the cursor in ordinal order, each once, offered in any order"
        <| fun () ->
            let mutable cut = 0
            let law =
                Prop.forAll (Arb.fromGen (Gen.listOf (Gen.listOf (Gen.choose (0, 5)) |> Gen.map idOf)))
                <| fun ids ->
                    Prop.forAll (Arb.fromGen (Gen.choose (1, 6)))
                    <| fun count ->
                        Prop.forAll (Arb.fromGen (Gen.oneof [ Gen.constant null; Gen.elements ("" :: ids) ]))
                        <| fun after ->
                            let expected = sorted after count ids
                            // Half the candidates offered as strings, half as characters (as a ring's are).
                            let page = IdPage<int>(after, count)
                            ids
                            |> List.iteri (fun i id ->
                                if i % 2 = 0 then page.Offer(id, id.Length)
                                elif page.Wants(id.AsSpan()) then page.Take(id, id.Length))
                            let got = page.Sorted() |> List.ofArray
                            if List.length (List.distinct ids) > count then cut <- cut + 1
                            got |> List.map (fun (struct (id, _)) -> id) = expected && got |> List.forall (fun (struct (id, length)) -> length = id.Length)
            law, (fun () -> Expect.isGreaterThan cut 100 "many cases had more candidates than the page holds")

        testCase "a page holds at least one session" <| fun () -> Expect.throwsT<ArgumentException> (fun () -> IdPage<int>(null, 0) |> ignore) "count 0"
    ]
