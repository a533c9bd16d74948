/// The lost-update check: many truly concurrent requests of one session, through the real HTTP
/// pipeline, each making one change; how many of the changes the session kept.
module Sesame.LoadTest.LostUpdates

open System
open System.Net.Http
open System.Threading.Tasks

/// One HTTP client for the check; cookies are sent by hand, so every request names the same session.
let private client =
    lazy
        (new HttpClient(
            new SocketsHttpHandler(UseCookies = false, MaxConnectionsPerServer = Int32.MaxValue, PooledConnectionLifetime = TimeSpan.FromMinutes 5.0),
            Timeout = TimeSpan.FromSeconds 30.0
        ))

/// The name=value of the first Set-Cookie of a response.
let private cookieOf (response: HttpResponseMessage) =
    match response.Headers.TryGetValues "Set-Cookie" with
    | true, values -> values |> Seq.head |> fun c -> c.Split(';')[0]
    | _ -> failwith $"{response.RequestMessage.RequestUri} set no cookie."

let private get (url: string) (cookie: string option) = task {
    use request = new HttpRequestMessage(HttpMethod.Get, url)
    cookie |> Option.iter (fun c -> request.Headers.Add("Cookie", c))
    let! response = client.Value.SendAsync request
    let! body = response.Content.ReadAsStringAsync()
    if not response.IsSuccessStatusCode then failwith $"{url} answered {int response.StatusCode}: {body}"
    return response, body
}

/// The body of a GET without a cookie (the app's own counters, such as the file floor's /stats).
let text (url: string) = task {
    let! _, body = get url None
    return body
}

/// Starts a session with a first request and gives its cookie.
let startSession (url: string) = task {
    let! response, _ = get url None
    return cookieOf response
}

/// Sends all the requests at once: each waits on one gate, opened when all are ready to go.
let private concurrently (urls: string[]) (cookie: string) = task {
    let gate = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    let requests =
        urls
        |> Array.map (fun url -> task {
            do! gate.Task
            let! _ = get url (Some cookie)
            return ()
        })
    gate.SetResult()
    let! _ = Task.WhenAll(requests)
    return ()
}

/// What survived of n concurrent changes, for increments and for different keys.
type Survived = { Increments: int; Keys: int; Of: int }

/// Runs both checks against one branch of the app (base like http://127.0.0.1:5000/memory); each
/// request waits workMs after its change before answering (0: none).
let check (baseUrl: string) (n: int) (workMs: int) = task {
    // Increments: a session at 1, then n concurrent increments; it should read 1 + n.
    let! cookie = startSession $"{baseUrl}/counter"
    do! concurrently (Array.create n $"{baseUrl}/counter?work={workMs}") cookie
    let! _, value = get $"{baseUrl}/value" (Some cookie)
    let increments = int value - 1
    // Different keys: a session with one other key, then n concurrent requests each setting a key of its own.
    let! cookie = startSession $"{baseUrl}/key?k=first"
    do! concurrently (Array.init n (fun i -> $"{baseUrl}/key?k=k{i}&work={workMs}")) cookie
    let! _, count = get $"{baseUrl}/keys" (Some cookie)
    return { Increments = increments; Keys = int count - 1; Of = n }
}
