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
/// <para><b>Bounded.</b> An entry lives <see cref="F:Sesame.RecentSignIns.Window"/>; at most
/// <see cref="F:Sesame.RecentSignIns.Capacity"/> are held, the oldest dropped first, so sign-ins at any rate hold a
/// bounded memory. A second submit that reaches another instance of the app (no sticky sessions) is not helped: it
/// signs in an empty session, as it would without this.</para>
/// </remarks>
[<Sealed>]
type internal RecentSignIns(time: TimeProvider) =
    // One entry per session a sign-in moved, by its old id; `order` holds the same ids oldest first (entries are made
    // with one window, so the oldest made is the first to lapse).
    let moves = Dictionary<string, struct (SessionTicket * string * int64)>(StringComparer.Ordinal)
    let order = Queue<struct (string * int64)>()

    /// How long a sign-in's move can be followed: far longer than a double submit's two requests lie apart.
    static member val Window = TimeSpan.FromSeconds 10.0

    /// The most moves held at once.
    static member val Capacity = 10_000

    /// Forgets the moves whose window has passed, and the oldest past the capacity (call under the lock).
    member private _.Trim(now: int64) =
        let mutable go = order.Count > 0
        while go do
            let struct (id, at) = order.Peek()
            if order.Count > RecentSignIns.Capacity || now - at >= RecentSignIns.Window.Ticks then
                order.Dequeue() |> ignore
                // A later move of the same old id replaced the entry: it is the later one's to forget.
                match moves.TryGetValue id with
                | true, struct (_, _, madeAt) when madeAt = at -> moves.Remove id |> ignore
                | _ -> ()
                go <- order.Count > 0
            else
                go <- false

    /// Notes that a sign-in as <paramref name="userId"/> moved the session <paramref name="fromId"/> to <paramref name="moved"/>.
    member this.Record(fromId: string, moved: SessionTicket, userId: string) : unit =
        let now = time.GetUtcNow().UtcTicks
        lock moves (fun () ->
            moves[fromId] <- struct (moved, userId, now)
            order.Enqueue(struct (fromId, now))
            this.Trim now)

    /// <summary>The session a sign-in as <paramref name="userId"/> moved <paramref name="fromId"/> to within the window;
    /// none for a move by a sign-in as anyone else, or none at all.</summary>
    member this.TryFollow(fromId: string, userId: string) : SessionTicket voption =
        let now = time.GetUtcNow().UtcTicks
        lock moves (fun () ->
            this.Trim now
            // A later sign-in of the same user may have moved that session again (a third submit, from the first's
            // cookie): the session is wherever the last move took it. Ids are fresh, so the chain has no loop; the
            // count only bounds it.
            let rec follow (id: string) (found: SessionTicket voption) (hops: int) =
                match moves.TryGetValue id with
                | true, struct (moved, user, _) when hops < 8 && String.Equals(user, userId, StringComparison.Ordinal) ->
                    follow moved.Id (ValueSome moved) (hops + 1)
                | _ -> found
            follow fromId ValueNone 0)

    /// How many moves are held (for tests of the bound).
    member _.Count = lock moves (fun () -> moves.Count)
