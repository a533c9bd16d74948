/// The memory store as the model of the Redis store: the same random commits, moves, deletes, loads and
/// listings go to both, and every answer must be the same (results, exceptions and their messages, trees and
/// facts to the byte, listings, the sessions ended for a user's limit).
module Sesame.Redis.Tests.RedisModel

open System
open System.Collections.Generic
open System.Security.Cryptography
open System.Text
open System.Threading
open System.Threading.Tasks
open Sesame
open Sesame.Tests.StoreContract

let private alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

/// The first character of a user's session ids (the rule of SessionId.shardOf, which the store contract names).
let shardOf (user: string) = alphabet[int (SHA256.HashData(Encoding.UTF8.GetBytes user)[0] &&& 63uy)]

/// An id as Sesame makes one: 32 characters of the id alphabet, the first one the user's shard (random for none).
let idFor (random: Random) (user: string) =
    let first = if isNull user then alphabet[random.Next 64] else shardOf user
    String(first, 1) + String([| for _ in 1..31 -> alphabet[random.Next 64] |])

/// A seeded generator of the changes that stress the stored form: keys with marks, quotes, escapes and
/// unicode; numbers beyond doubles; empty containers; changes of the facts; shape upgrades.
type Generator(seed: int) =
    let random = Random seed
    let keys = [| "a"; "b"; "c.d"; ""; "ключ"; "𝄞"; "q\"uote"; "x\u0001y"; "back\\slash"; "n"; "[0]" |]
    let numbers = [| "0"; "1"; "-2.5"; "1.10"; "9007199254740993"; "1e400"; "-0.0"; "3.14159265358979323846"; "1E-2" |]
    let increments = [| "1"; "0.01"; "-3"; "1e2"; "2.50" |]
    let strings = [| ""; "ada"; "héllo ✓ 𝄞"; "line\nbreak"; "\"quoted\""; "<tag>&" |]

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

    /// A path that mostly fits the tree: down through existing containers, then one step to an existing or new child.
    member this.PathIn(tree: Json) =
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
        match random.Next 9 with
        | 0
        | 1
        | 2
        | 3 -> Update.set (if random.Next 30 = 0 then SessionPath.root else this.PathIn tree) (this.Value 0)
        | 4
        | 5 -> Update.Increment(this.PathIn tree, JsonNumber.Parse(this.Pick increments))
        | 6 -> Update.Append(this.PathIn tree, this.Value 1)
        | _ ->
            match List.rev (this.PathIn tree).Segments with
            | Segment.Index _ :: above -> Update.remove (SessionPath.ofSegments (List.rev (Segment.Key(this.Key()) :: above)))
            | segments -> Update.remove (SessionPath.ofSegments (List.rev segments))

    member this.Patch(tree: Json) = Patch.fold [ for _ in 1 .. 1 + random.Next 3 -> this.Update tree ]

    /// A change of the facts that does not touch the user binding.
    member this.FactsUpdate() =
        let key = this.Pick [| "flash"; "device"; "shape"; "created"; "x" |]
        match random.Next 40 with
        // Binds (or unbinds) the user, which a commit refuses.
        | 0 -> Update.set SessionPath.root (Json.object [ key, this.Value 1 ])
        | n when n % 5 = 1 -> Update.remove (SessionPath.ofKeys [ key ])
        | n when n % 5 = 2 -> Update.Increment(SessionPath.ofKeys [ SessionMeta.Shape ], JsonNumber.Parse "1")
        | n when n % 5 = 3 -> Update.set (SessionPath.ofKeys [ SessionMeta.Flash; this.Key() ]) (this.Value 1)
        | _ -> Update.set (SessionPath.ofKeys [ key ]) (this.Value 1)

    /// A commit's change: the tree's, now and then the facts', now and then a shape upgrade.
    member this.Change(tree: Json) =
        let data = this.Patch tree
        let meta = if random.Next 2 = 0 then Patch.empty else Patch.fold [ for _ in 1 .. 1 + random.Next 2 -> this.FactsUpdate() ]
        let upgrade =
            if random.Next 4 = 0 then
                let from = random.Next 3
                ValueSome { From = from; To = from + 1 + random.Next 2; Data = this.Patch tree }
            else
                ValueNone
        SessionChange(data, meta, upgrade)

let private outcome (work: unit -> Task<'result>) : Task<Result<'result, string>> = task {
    try
        let! result = work ()
        return Ok result
    with e ->
        let e =
            match e with
            | :? AggregateException as a -> a.InnerException
            | e -> e
        return Error(e.GetType().Name + ": " + e.Message)
}

let private show (session: StoredSession) = if isNull session then "none" else Json.serialize session.Data + " | " + Json.serialize session.Meta

/// <summary>
/// Runs <paramref name="steps"/> random operations on both stores and fails at the first answer that differs.
/// Ids are made as Sesame makes them (a bound session's id starts with its user's shard). Gives how many of each
/// kind of answer there were, so a caller can check the walk went through every outcome.
/// </summary>
let compare (redis: SessionStore) (seed: int) (steps: int) : Task<Map<string, int>> = task {
    use memory = new MemoryStore()
    let memoryEnded, redisEnded = EndedRecorder(), EndedRecorder()
    memory.Observer <- memoryEnded
    redis.Observer <- redisEnded
    let generator = Generator seed
    let random = Random(seed + 1)
    let users = [| "ada"; "bob"; "zoë"; "u{x}" |]
    let ids = ResizeArray<string>()
    let trees = Dictionary<string, Json>()
    let owners = Dictionary<string, string>()
    let mutable counts = Map.empty
    let count (kind: string) = counts <- counts |> Map.change kind (fun n -> Some(defaultArg n 0 + 1))
    let options = { IdleTimeout = TimeSpan.FromMinutes 10.0; MustExist = false; MaxSizeBytes = 1 <<< 20; UserLimit = UserLimit.None }
    let same (what: string) (expected: 'value) (actual: 'value) =
        if expected <> actual then failwithf "%s: the memory store gave\n  %A\nthe Redis store\n  %A" what expected actual
    let kind (result: Result<CommitResult, string>) =
        match result with
        | Ok r -> string r
        | Error e -> e.Substring(0, e.IndexOf ':')
    for step in 1..steps do
        let pickId () = if ids.Count = 0 || random.Next 8 = 0 then idFor random null else ids[random.Next ids.Count]
        let treeOf (id: string) =
            match trees.TryGetValue id with
            | true, tree -> tree
            | _ -> Json.emptyObject
        match random.Next 12 with
        | 0
        | 1
        | 2
        | 3
        | 4 ->
            let id = pickId ()
            let change = generator.Change(treeOf id)
            let commit = { options with MustExist = random.Next 3 = 0; MaxSizeBytes = (if random.Next 6 = 0 then 60 + random.Next 100 else 1 <<< 20) }
            let! expected = outcome (fun () -> memory.CommitAsync(id, change, commit, CancellationToken.None))
            let! actual = outcome (fun () -> redis.CommitAsync(id, change, commit, CancellationToken.None))
            same $"step {step}, commit {change}" expected actual
            count ("commit " + kind expected)
            if expected = Ok CommitResult.Committed && not (ids.Contains id) then ids.Add id
        | 5
        | 6 ->
            let id = pickId ()
            let! expected = memory.LoadAsync(id, options.IdleTimeout, CancellationToken.None)
            let! actual = redis.LoadAsync(id, options.IdleTimeout, CancellationToken.None)
            same $"step {step}, load" (show expected) (show actual)
            if not (isNull expected) then trees[id] <- expected.Data
            count "load"
        | 7
        | 8 ->
            let from = if random.Next 5 = 0 then null else pickId ()
            let user = if random.Next 3 = 0 then null else generator.Pick users
            let unbind = isNull user && random.Next 4 = 0
            // As Sesame does: a bound session rotates to an id of its user's shard.
            let keeps =
                if isNull user && not unbind && not (isNull from) then
                    match owners.TryGetValue from with
                    | true, owner -> owner
                    | _ -> null
                else
                    null
            let toId = idFor random (if isNull user then keeps else user)
            let data = generator.Patch(if isNull from then Json.emptyObject else treeOf from)
            let meta =
                Patch.fold [
                    if not (isNull user) then Update.set (SessionPath.ofKeys [ SessionMeta.User ]) (Json.String user)
                    elif unbind then Update.remove (SessionPath.ofKeys [ SessionMeta.User ])
                    if random.Next 2 = 0 then Update.set (SessionPath.ofKeys [ SessionMeta.Device ]) (Json.object [ "ua", Json.String "test" ])
                ]
            let limit =
                if random.Next 2 = 0 then
                    UserLimit.None
                else
                    { MaxSessions = 1 + random.Next 3; Policy = (if random.Next 2 = 0 then UserLimitPolicy.Refuse else UserLimitPolicy.EndLeastRecent) }
            let change = SessionChange(data, meta)
            let move = { options with UserLimit = limit }
            let! expected = outcome (fun () -> memory.MoveAsync(from, toId, change, move, CancellationToken.None))
            let! actual = outcome (fun () -> redis.MoveAsync(from, toId, change, move, CancellationToken.None))
            same $"step {step}, move {change} with {limit}" expected actual
            count ("move " + kind expected)
            if expected = Ok CommitResult.Committed then
                ids.Add toId
                let owner =
                    if not (isNull user) then user
                    elif unbind then null
                    else keeps
                if not (isNull owner) then owners[toId] <- owner
                if not (isNull from) then ids.Remove from |> ignore
        | 9 ->
            let id = pickId ()
            let! expected = memory.DeleteAsync(id, CancellationToken.None)
            let! actual = redis.DeleteAsync(id, CancellationToken.None)
            same $"step {step}, delete" expected actual
            count "delete"
        | _ ->
            let user = if random.Next 3 = 0 then null else generator.Pick users
            let query = { UserId = user; After = null; Limit = 1 + random.Next 5 }
            let listing (store: SessionStore) = task {
                let! all = SessionStore.listAllAsync query CancellationToken.None store
                return [ for s in all -> s.Id, Json.serialize s.Meta, s.SizeBytes ]
            }
            let! expected = listing memory
            let! actual = listing redis
            same $"step {step}, listing of {user}" expected actual
            count "listing"
        // No two operations in one millisecond: "least recently seen" must mean the same in both stores.
        do! Task.Delay 2
        same $"step {step}, the sessions ended" memoryEnded.Ended redisEnded.Ended
    return counts
}
