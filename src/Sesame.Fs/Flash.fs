namespace Sesame

open System
open System.Collections.Generic

/// <summary>One flash value as the facts beside the tree hold it (under <c>flash.&lt;entry id&gt;</c>).</summary>
[<Struct; NoComparison; NoEquality>]
type internal FlashEntry = {
    /// The entry's own key in the <c>flash</c> object: random, so that removing it can only remove this value.
    Id: string
    /// The flash key the app chose (<c>notice</c>).
    Key: string
    /// The value.
    Value: Json
    /// When it was flashed (Unix milliseconds): of two values flashed under one key, the later is the one read.
    At: int64
}

/// <summary>
/// One request's flash: the values earlier requests flashed for it (<em>incoming</em>, as the session was when the
/// request first used the flash), and what the request flashes or keeps for the next (<em>outgoing</em>).
/// </summary>
/// <remarks>
/// <para>Flash values live in the facts beside the tree (<see cref="F:Sesame.SessionMeta.Flash"/>), never in the
/// session's data: an object of entries <c>{"key": …, "value": …, "at": …}</c>, each under a random entry id. Every
/// change is a facts update recorded on the handle, so it is committed with the request's other changes in one
/// atomic write.</para>
/// <para>The first read of the flash in a request (of any key) ends every incoming value: its commit removes them,
/// read or not, except those the request keeps (Rails' flash sweep). A request that never reads the flash leaves the
/// values for the next one that does. Values flashed by this request are not incoming: they are for the next request.</para>
/// <para>Removals name the exact entries the request loaded, so a value another request flashes meanwhile (under the
/// same key or not) is never removed by this one. Two concurrent requests that both read a value both see it;
/// whichever commits first removes it, and the other's removal finds nothing left to remove.</para>
/// </remarks>
[<Sealed>]
type internal FlashState private (handle: SessionHandle) =

    static let flashKey = SessionMeta.Flash

    static let entryPath (id: string) = SessionPath.ofKeys [ flashKey; id ]

    static let entryJson (entry: FlashEntry) = Json.object [ "key", Json.string entry.Key; "value", entry.Value; "at", Json.int64 entry.At ]

    static let tryEntry (id: string) (json: Json) : FlashEntry voption =
        match json with
        | Json.Object o ->
            match o.Find "key", o.Find "value", o.Find "at" with
            | ValueSome(Json.String key), ValueSome value, at ->
                let at =
                    match at with
                    | ValueSome(Json.Number n) ->
                        (match n.Int64Value with
                         | ValueSome v -> v
                         | ValueNone -> 0L)
                    | _ -> 0L
                ValueSome { Id = id; Key = key; Value = value; At = at }
            | _ -> ValueNone
        | _ -> ValueNone

    static let entriesOf (meta: Json) : FlashEntry[] =
        match SessionPath.tryGet (SessionPath.ofKeys [ flashKey ]) meta with
        | Some(Json.Object o) -> [|
            for KeyValue(id, json) in o do
                match tryEntry id json with
                | ValueSome entry -> entry
                | ValueNone -> ()
          |]
        | _ -> [||]

    static let newEntryId () = BufferedRandom.Base64Url 9

    /// The values earlier requests flashed, as the session was when this request first used the flash.
    let mutable incoming = entriesOf handle.Meta
    /// The entry ids this request flashed a value under.
    let flashed = HashSet<string>(StringComparer.Ordinal)
    /// The entry id of each key this request flashed or kept: those outlive the sweep.
    let outgoing = Dictionary<string, string>(StringComparer.Ordinal)
    let outgoingIds = HashSet<string>(StringComparer.Ordinal)
    let mutable swept = false

    let isPresent (id: string) = (SessionPath.tryGet (entryPath id) handle.Meta).IsSome

    /// The incoming value a read of <paramref name="key"/> gives: the latest flashed.
    let latest (key: string) : FlashEntry voption =
        let mutable found = ValueNone
        for entry in incoming do
            if entry.Key = key then
                match found with
                | ValueSome(earlier: FlashEntry) when earlier.At > entry.At -> ()
                | _ -> found <- ValueSome entry
        found

    /// Ends the incoming values at this request's commit (once), but those the request keeps.
    let sweep () =
        if not swept then
            swept <- true
            for entry in incoming do
                // Gone already (the session was destroyed in this request): nothing to record, no session to create.
                if not (outgoingIds.Contains entry.Id) && isPresent entry.Id then handle.RecordMeta(Update.Remove(entryPath entry.Id))

    let keepEntry (entry: FlashEntry) =
        match outgoing.TryGetValue entry.Key with
        | true, _ -> () // flashed anew (or kept) by this request: that value goes on instead
        | _ ->
            outgoing[entry.Key] <- entry.Id
            outgoingIds.Add entry.Id |> ignore
            // Not removed unless the sweep ran; if it did, the entry is put back as it was.
            if swept then handle.RecordMeta(Update.Set(entryPath entry.Id, entryJson entry))

    /// <summary>The flash state of the request the handle belongs to, made on first use.</summary>
    static member Of(handle: SessionHandle) : FlashState =
        match handle.FlashState with
        | :? FlashState as state -> state
        | _ ->
            let state = FlashState(handle)
            handle.FlashState <- state
            state

    /// <summary>Flashes a value for the next request; flashing a key again in this request replaces the value.</summary>
    member _.Set(key: string, value: Json) =
        if isNull key then nullArg (nameof key)
        let id =
            match outgoing.TryGetValue key with
            | true, id -> id
            | _ -> newEntryId ()
        let entry = { Id = id; Key = key; Value = value; At = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() }
        handle.RecordMeta(Update.Set(entryPath id, entryJson entry))
        // An incoming value of the same key is superseded: the next request reads this one, and only this one.
        for earlier in incoming do
            if earlier.Key = key && not (outgoingIds.Contains earlier.Id) && isPresent earlier.Id then handle.RecordMeta(Update.Remove(entryPath earlier.Id))
        outgoing[key] <- id
        outgoingIds.Add id |> ignore
        flashed.Add id |> ignore

    /// <summary>The value earlier requests flashed under <paramref name="key"/>; ends every incoming value at this request's commit.</summary>
    member _.TryFind(key: string) : Json voption =
        if isNull key then nullArg (nameof key)
        sweep ()
        match latest key with
        | ValueSome entry -> ValueSome entry.Value
        | ValueNone -> ValueNone

    /// <summary>The keys of the incoming values; like a read, ends them at this request's commit.</summary>
    member _.ReadKeys() : string list =
        sweep ()
        incoming |> Seq.map _.Key |> Seq.distinct |> List.ofSeq

    /// <summary>Carries the incoming value of <paramref name="key"/> one request further.</summary>
    member _.Keep(key: string) =
        if isNull key then nullArg (nameof key)
        match latest key with
        | ValueSome entry -> keepEntry entry
        | ValueNone -> ()

    /// <summary>What this request read, kept and flashed so far: gives the function that goes back to it (with the
    /// handle's own <c>Savepoint</c>, for an account switch a refused sign-in undoes).</summary>
    member internal _.Savepoint() : unit -> unit =
        let savedIncoming, savedSwept = incoming, swept
        let savedFlashed, savedOutgoingIds = List.ofSeq flashed, List.ofSeq outgoingIds
        let savedOutgoing = List.ofSeq outgoing
        fun () ->
            incoming <- savedIncoming
            swept <- savedSwept
            flashed.Clear()
            flashed.UnionWith savedFlashed
            outgoingIds.Clear()
            outgoingIds.UnionWith savedOutgoingIds
            outgoing.Clear()
            for KeyValue(key, id) in savedOutgoing do
                outgoing[key] <- id

    /// <summary>
    /// Ends every incoming value at this request's commit, kept ones too, and reads none of them again: the session
    /// now belongs to another user (an account switch). What this request flashed itself stays.
    /// </summary>
    member _.EndIncoming() =
        for entry in incoming do
            if not (flashed.Contains entry.Id) then
                if outgoingIds.Remove entry.Id then outgoing.Remove entry.Key |> ignore
                if isPresent entry.Id then handle.RecordMeta(Update.Remove(entryPath entry.Id))
        incoming <- [||]
        swept <- true

    /// <summary>Carries every incoming value one request further.</summary>
    member _.KeepAll() =
        for entry in incoming do
            match latest entry.Key with
            | ValueSome chosen when chosen.Id = entry.Id -> keepEntry entry
            | _ -> ()
