namespace Sesame

open System
open System.Collections.Generic

/// <summary>
/// Where this app instance's sign-ins moved sessions in the last few seconds: a login form submitted twice sends two
/// sign-ins of one session, and the second, finding the session moved by the first, joins the session the first made
/// instead of signing in an empty one (the browser keeps whichever response's cookie comes last, so an empty session
/// there would lose the cart the visitor logged in with).
/// </summary>
/// <remarks>
/// <para><b>Only for the same user.</b> A sign-in that follows a move has proved, as the first did, that it is that
/// user, so it is given nothing it could not have had by signing in itself; a request of the old id that signs in as
/// anyone else, or that only rotates, follows nothing, so the old id still opens nothing after a sign-in (session
/// fixation).</para>
/// <para><b>Noted before the move.</b> A sign-in notes its move before the store makes it, and forgets it when the move
/// fails: the store answers a move only after the app's <c>OnSignedIn</c> handlers ran, and a second submit that comes
/// meanwhile finds the session gone already. A follower therefore tries the moves it finds, newest first, and joins
/// the one that exists.</para>
/// <para><b>Bounded.</b> A move is held <see cref="P:Sesame.RecentSignIns.Window"/>, on the monotonic clock (a wall
/// clock set back does not keep it longer); at most <see cref="P:Sesame.RecentSignIns.Capacity"/> are held, the oldest
/// dropped first, so sign-ins at any rate hold a bounded memory. A second submit that reaches another instance of the
/// app (no sticky sessions) is not helped: it signs in an empty session, as it would without this.</para>
/// </remarks>
[<Sealed>]
type internal RecentSignIns(time: TimeProvider) =
    static let windowLength = TimeSpan.FromSeconds 10.0
    static let capacity = 10_000
    static let mostTries = 4
    // The moves from each old id, oldest first: (new id, user, when noted); `order` holds every move oldest first.
    let moves = Dictionary<string, List<struct (string * string * int64)>>(StringComparer.Ordinal)
    let order = Queue<struct (string * string * int64)>()
    let window = int64 (windowLength.TotalSeconds * float time.TimestampFrequency)

    let remove (fromId: string) (toId: string) =
        match moves.TryGetValue fromId with
        | true, list ->
            list.RemoveAll(fun struct (id, _, _) -> id = toId) |> ignore
            if list.Count = 0 then moves.Remove fromId |> ignore
        | _ -> ()

    /// Forgets the moves whose window has passed, and the oldest past the capacity (under the lock).
    let trim (now: int64) =
        let mutable go = order.Count > 0
        while go do
            let struct (fromId, toId, at) = order.Peek()
            if order.Count > capacity || now - at >= window then
                order.Dequeue() |> ignore
                remove fromId toId
                go <- order.Count > 0
            else
                go <- false

    /// How long a sign-in's move can be followed: far longer than a double submit's two requests lie apart.
    static member Window = windowLength

    /// The most moves held at once.
    static member Capacity = capacity

    /// The most sessions a follower tries to join.
    static member MostTries = mostTries

    /// Notes that a sign-in as <paramref name="userId"/> is moving the session <paramref name="fromId"/> to <paramref name="toId"/>.
    member _.Record(fromId: string, toId: string, userId: string) : unit =
        let now = time.GetTimestamp()
        lock moves (fun () ->
            match moves.TryGetValue fromId with
            | true, list -> list.Add(struct (toId, userId, now))
            | _ -> moves[fromId] <- List [ struct (toId, userId, now) ]
            order.Enqueue(struct (fromId, toId, now))
            trim now)

    /// Forgets a noted move that did not happen (it stays in the order until it lapses).
    member _.Forget(fromId: string, toId: string) : unit = lock moves (fun () -> remove fromId toId)

    /// <summary>The sessions a sign-in as <paramref name="userId"/> may find <paramref name="fromId"/> moved to, the most
    /// likely first: the moves of that user from it, newest first, each followed to where later moves of that user took
    /// it (a third submit, from the first's cookie); never <paramref name="own"/>, the caller's own move. At most
    /// <see cref="P:Sesame.RecentSignIns.MostTries"/>.</summary>
    member _.Candidates(fromId: string, userId: string, own: string) : string list =
        let now = time.GetTimestamp()
        lock moves (fun () ->
            trim now
            let found = List<string>()
            // Ids are fresh, so the moves have no loop; the depth only bounds the walk.
            let rec visit (id: string) (depth: int) =
                match moves.TryGetValue id with
                | true, list when depth < 8 ->
                    for i in list.Count - 1 .. -1 .. 0 do
                        let struct (toId, user, _) = list[i]
                        if found.Count < mostTries && toId <> own && String.Equals(user, userId, StringComparison.Ordinal) then
                            visit toId (depth + 1)
                            if found.Count < mostTries && not (found.Contains toId) then found.Add toId
                | _ -> ()
            visit fromId 0
            List.ofSeq found)

    /// How many moves are held (for tests of the bound).
    member _.Count = lock moves (fun () -> moves.Values |> Seq.sumBy (fun list -> list.Count))
