/// Seeded random changes that stress the stored form: keys with marks, quotes, escapes and unicode, numbers beyond
/// doubles and beyond exact arithmetic, empty containers, paths that cross values of the wrong kind.
module Sesame.Postgres.Tests.Generator

open System
open Sesame

[<Sealed>]
type ChangeGenerator(seed: int) =
    let random = Random seed
    let keys = [| "a"; "b"; "c.d"; ""; "ключ"; "𝄞"; "q\"uote"; "x\u0001y"; "back\\slash"; "n"; "[0]"; "shape" |]
    let numbers = [|
        "0"
        "1"
        "-0"
        "-17"
        "999999999999999999"
        "-2.5"
        "1.10"
        "9007199254740993"
        "9223372036854775807"
        "1e400"
        "-0.0"
        "3.14159265358979323846"
        "1E-2"
        "1e5000"
        "1e-3000"
        "1e4097"
    |]
    let increments = [| "1"; "0.01"; "-3"; "1e2"; "2.50"; "-9007199254740993"; "18446744073709551616" |]
    let strings = [| ""; "ada"; "héllo ✓ 𝄞"; "line\nbreak"; "\"quoted\""; "<tag>&"; "\u0000"; "tab\there" |]

    member _.Next(n: int) = random.Next n
    member _.Pick(items: 'item[]) = items[random.Next items.Length]
    member this.Key() = this.Pick keys

    member this.Value(depth: int) : Json =
        match random.Next(if depth >= 3 then 6 else 9) with
        | 0 -> Json.Null
        | 1 -> Json.Bool(random.Next 2 = 0)
        | 2 -> Json.Number(JsonNumber.Parse(this.Pick numbers))
        | 3
        | 4 -> Json.String(this.Pick strings)
        | 5 -> if random.Next 2 = 0 then Json.array [] else Json.object []
        | 6
        | 7 -> Json.object [ for _ in 1 .. random.Next 4 -> this.Key(), this.Value(depth + 1) ]
        | _ -> Json.array [ for _ in 1 .. random.Next 4 -> this.Value(depth + 1) ]

    /// A path that mostly fits the tree (down through its containers, then one step to an existing or new child),
    /// now and then a random one.
    member this.PathIn(tree: Json) =
        if random.Next 5 = 0 then
            SessionPath.ofSegments [ for _ in 1 .. 1 + random.Next 3 -> if random.Next 3 = 0 then Segment.Index(random.Next 3) else Segment.Key(this.Key()) ]
        else
            let rec walk (node: Json) (segments: Segment list) =
                match node with
                | Json.Object o when o.Count > 0 && random.Next 3 > 0 ->
                    let (KeyValue(key, child)) = o |> Seq.item (random.Next o.Count)
                    walk child (Segment.Key key :: segments)
                | Json.Array items when items.Length > 0 && random.Next 3 > 0 ->
                    let i = random.Next items.Length
                    walk items[i] (Segment.Index i :: segments)
                | Json.Object _ -> Segment.Key(this.Key()) :: segments
                | Json.Array items -> Segment.Index(random.Next(items.Length + 1)) :: segments
                | _ when segments.IsEmpty -> [ Segment.Key(this.Key()) ]
                | _ -> segments
            SessionPath.ofSegments (List.rev (walk tree []))

    member this.Update(tree: Json) =
        match random.Next 10 with
        | 0
        | 1
        | 2
        | 3 -> Update.Set((if random.Next 40 = 0 then SessionPath.root else this.PathIn tree), (if random.Next 40 = 0 then Json.object [] else this.Value 0))
        | 4
        | 5 -> Update.Increment(this.PathIn tree, JsonNumber.Parse(this.Pick increments))
        | 6
        | 7 -> Update.Append(this.PathIn tree, this.Value 1)
        | _ ->
            match List.rev (this.PathIn tree).Segments with
            // Mostly keys (an update removes keys only), now and then an index, which is a conflict.
            | Segment.Index _ :: above when random.Next 4 > 0 -> Update.Remove(SessionPath.ofSegments (List.rev (Segment.Key(this.Key()) :: above)))
            | segments -> Update.Remove(SessionPath.ofSegments (List.rev segments))

    member this.Patch(tree: Json) = Patch.fold [ for _ in 1 .. 1 + random.Next 3 -> this.Update tree ]

    /// A change of tree and facts, now and then with a shape upgrade.
    member this.Change(session: StoredSession) =
        let tree, facts = if isNull session then Json.emptyObject, Json.emptyObject else session.Data, session.Meta
        let meta =
            match random.Next 4 with
            | 0 -> Patch.fold [ Update.Set(SessionPath.ofKeys [ SessionMeta.Flash; this.Key() ], this.Value 1) ]
            | 1 -> Patch.fold [ Update.Remove(SessionPath.ofKeys [ SessionMeta.Flash ]) ]
            | _ -> Patch.empty
        let upgrade =
            if random.Next 6 = 0 then
                let from = SessionMeta.shapeOf facts + random.Next 2 - (if random.Next 3 = 0 then 1 else 0)
                ValueSome { From = max 0 from; To = max 0 from + 1; Data = this.Patch tree }
            else
                ValueNone
        SessionChange(this.Patch tree, meta, upgrade)
