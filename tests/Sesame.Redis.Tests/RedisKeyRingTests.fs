/// AddRedisStore (and its one-call form AddSesameRedis): the sessions and the Data Protection key ring in
/// one Redis, on one connection, so app instances need nothing else in common to read each other's cookies.
module Sesame.Redis.Tests.RedisKeyRingTests

open System
open System.IO
open System.Net
open System.Net.Http
open System.Threading.Tasks
open Microsoft.AspNetCore.DataProtection
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Hosting
open StackExchange.Redis
open Expecto
open Sesame
open Sesame.Redis
open Sesame.Redis.Tests.RedisServer
open Sesame.Samples.Giraffe
open Sesame.Samples.Giraffe.GiraffeShape
open Sesame.Tests

let private app: HttpHandler = withSession >=> choose [ route "/" >=> App.counter; route "/session" >=> App.show ]

let private keysNotShared (logs: LogCapture) = logs.Entries |> List.filter (fun e -> e.EventId.Name = "DataProtectionKeysNotShared")

/// An app instance with its own connection to Redis (as on its own machine), set up by AddRedisStore.
/// Given a folder, the instance first has its keys there, as a machine of its own would by default:
/// AddRedisStore, called after, moves them to Redis.
let private startOn
    (server: Server)
    (connect: unit -> Task<ConnectionMultiplexer>)
    (localKeys: DirectoryInfo option)
    (configure: RedisStoreOptions -> unit)
    (logs: LogCapture)
    = task {
    let! connection = connect ()
    let services (services: IServiceCollection) =
        localKeys |> Option.iter (fun folder -> services.AddDataProtection().PersistKeysToFileSystem folder |> ignore)
        services.AddSesame().AddRedisStore(connection, "sesame-key-ring-test", Action<RedisStoreOptions> configure) |> ignore
    let! host = startHostWith server services (runHandler app) logs
    return host, connection
}

let private startOnRedis
    (server: Server)
    (redis: RedisServer)
    (clientName: string)
    (localKeys: DirectoryInfo option)
    (configure: RedisStoreOptions -> unit)
    (logs: LogCapture)
    =
    startOn server (fun () -> redis.ConnectAsync(clientName = clientName)) localKeys configure logs

/// One browser's cookie jar: cookies do not care about ports, so it goes to every instance on 127.0.0.1.
let private browserOn (jar: CookieContainer) (host: IHost) =
    new HttpClient(new HttpClientHandler(CookieContainer = jar, UseCookies = true), BaseAddress = addressOf host)

let private get (client: HttpClient) (url: string) = task {
    let! response = client.GetAsync url
    let! body = response.Content.ReadAsStringAsync()
    Expect.isTrue response.IsSuccessStatusCode $"GET {url} on {client.BaseAddress} answered {int response.StatusCode}: {body}"
    return body
}

/// Every key in the database with its Redis type.
let private keysIn (admin: IConnectionMultiplexer) (database: int) = task {
    let db = admin.GetDatabase database
    let! keys = db.ExecuteAsync("KEYS", [| box "*" |])
    let names: string[] = RedisResult.op_Explicit keys
    let! types = names |> Array.map (fun name -> db.KeyTypeAsync(RedisKey.op_Implicit name, CommandFlags.None)) |> Task.WhenAll
    return Array.zip names types |> Map.ofArray
}



/// What the test above would see without a shared key ring: instances whose keys live in a folder
/// each reject each other's cookies (so the test above can only pass through the key ring in Redis).
/// Two app instances on one Redis (or one cluster), each set up with AddRedisStore on a connection of its own
/// and a key folder of its own (which AddRedisStore replaces with the key ring in Redis): one browser's session
/// goes back and forth between them.
let private twoInstancesContinue (connect: unit -> Task<ConnectionMultiplexer>) : Task = task {
    let folderA, folderB = Directory.CreateTempSubdirectory "sesame-keys-a-", Directory.CreateTempSubdirectory "sesame-keys-b-"
    use _folders = {
        new IDisposable with
            member _.Dispose() =
                for f in [ folderA; folderB ] do
                    f.Delete true
    }
    let logsA, logsB = new LogCapture(), new LogCapture()
    let! instanceA, connectionA = startOn Kestrel connect (Some folderA) ignore logsA
    use _ca = connectionA
    use _a = instanceA
    let! instanceB, connectionB = startOn Kestrel connect (Some folderB) ignore logsB
    use _cb = connectionB
    use _b = instanceB
    let jar = CookieContainer()
    use onA = browserOn jar instanceA
    use onB = browserOn jar instanceB
    let! first = get onA "/"
    Expect.equal first "1 times!" "the counter"
    let cookie = jar.GetCookies(addressOf instanceA) |> Seq.exactlyOne
    let! second = get onB "/"
    Expect.equal second "2 times!" "the counter"
    let! third = get onA "/"
    Expect.equal third "3 times!" "the counter"
    let! fourth = get onB "/"
    Expect.equal fourth "4 times!" "the counter"
    // One session throughout: neither instance rejected the other's cookie and issued its own.
    Expect.equal (jar.GetCookies(addressOf instanceB) |> Seq.exactlyOne).Value cookie.Value "one cookie throughout"
    Expect.isEmpty (keysNotShared logsA @ keysNotShared logsB) "no key-ring warning"
    // Neither machine-local folder was used.
    Expect.isEmpty (folderA.GetFiles()) "folder A unused"
    Expect.isEmpty (folderB.GetFiles()) "folder B unused"
}

[<Tests>]
let tests =
    testSequenced
    <| testList "RedisKeyRing" [
        testCaseTask "an app set up with AddRedisStore is not warned about its key ring, keeps it in Redis beside its sessions and uses one connection for both"
        <| fun () -> task {
            use redis = new RedisServer()
            use! admin = redis.ConnectAsync(clientName = "key-ring-admin", allowAdmin = true)
            let logs = new LogCapture()
            let! host, connection = startOnRedis Kestrel redis "key-ring-app" None (fun o -> o.KeyPrefix <- "shop:") logs
            use _connection = connection
            use _host = host
            use browser = browserOn (CookieContainer()) host
            let! first = get browser "/"
            Expect.equal first "1 times!" "the counter"
            let! second = get browser "/"
            Expect.equal second "2 times!" "the counter"
            Expect.isEmpty (keysNotShared logs) "no key-ring warning"
            // One session hash with its shard's expiry and id sets, and the key ring (a list holding the key's XML), all under the prefix.
            let! keys = keysIn admin 0
            Expect.equal keys.Count 4 $"one session hash, its shard's two sets and the key ring: %A{keys}"
            Expect.equal keys["shop:DataProtection-Keys"] RedisType.List "the key ring is a list"
            let session = keys |> Map.filter (fun name kind -> name.StartsWith "shop:" && kind = RedisType.Hash) |> Map.keys |> Seq.exactlyOne
            let id = session.Substring "shop:{c}:".Length
            Expect.equal session $"shop:{{{id[0]}}}:{id}" "the session key is the prefix, the id's first character as hash tag, and the id"
            Expect.equal id.Length 32 "an id Sesame made"
            Expect.equal keys[$"shop:{{{id[0]}}}expiry"] RedisType.SortedSet "the shard's expiry set"
            Expect.equal keys[$"shop:{{{id[0]}}}ids"] RedisType.SortedSet "the shard's id set"
            let! ring = admin.GetDatabase().ListRangeAsync(RedisKey.op_Implicit "shop:DataProtection-Keys", 0L, -1L, CommandFlags.None)
            Expect.isNonEmpty ring "the key ring holds keys"
            for key in ring do
                Expect.stringContains (string key) "<key " "each entry is a key's XML"
            // Both went through the app's one connection: Redis sees no client but it and the admin.
            let! clients = admin.GetServer(redis.EndPoint).ClientListAsync(CommandFlags.None)
            for c in clients do
                Expect.contains [ "key-ring-app"; "key-ring-admin" ] c.Name "only the app's and the admin's connections"
            Expect.isTrue
                (obj.ReferenceEquals(connection, (host.Services.GetRequiredService<SessionStore>() :?> RedisStore).Connection))
                "the store uses the app's connection"
            // The same store registered with AddStore alone, its keys nowhere shared, is warned about.
            let unshared = new LogCapture()
            let services (services: IServiceCollection) =
                services.AddSesame().AddStore(fun _ -> new RedisStore(connection, RedisStoreOptions(KeyPrefix = "shop:"), null) :> SessionStore) |> ignore
            use! _other = startHostWith InMemory services (runHandler app) unshared
            Expect.hasLength (keysNotShared unshared) 1 "one key-ring warning"
        }
        testCaseTask "two app instances on one Redis set up with AddRedisStore, each with a key folder of its own, continue each other's sessions"
        <| fun () -> task {
            use redis = new RedisServer()
            do! twoInstancesContinue (fun () -> redis.ConnectAsync())
        }
        testCaseTask
            "two app instances on a Redis Cluster set up with AddRedisStore, each with a key folder of its own, continue each other's sessions"
            (fun () -> task {
                let cluster, _ = RedisCluster.shared.Value
                do! twoInstancesContinue cluster.ConnectAsync
            })
        |> testSequencedGroup "redis cluster"
        testCaseTask "two app instances on one Redis with a key folder each do not continue each other's sessions"
        <| fun () -> task {
            use redis = new RedisServer()
            let folderA, folderB = Directory.CreateTempSubdirectory "sesame-keys-a-", Directory.CreateTempSubdirectory "sesame-keys-b-"
            use _folders = {
                new IDisposable with
                    member _.Dispose() =
                        for f in [ folderA; folderB ] do
                            f.Delete true
            }
            let start (folder: DirectoryInfo) = task {
                let! store = RedisStore.ConnectAsync(redis.EndPoint)
                let services (services: IServiceCollection) =
                    services.AddSesame().AddStore(fun _ -> store :> SessionStore) |> ignore
                    services.AddDataProtection().PersistKeysToFileSystem(folder).SetApplicationName("sesame-key-ring-test") |> ignore
                return! startHostWith Kestrel services (runHandler app) (new LogCapture())
            }
            use! instanceA = start folderA
            use! instanceB = start folderB
            let jar = CookieContainer()
            use onA = browserOn jar instanceA
            use onB = browserOn jar instanceB
            let! first = get onA "/"
            Expect.equal first "1 times!" "the counter"
            let! onOther = get onB "/"
            Expect.equal onOther "1 times!" "the counter"
        }
        testCaseTask "AddSesameRedis with an existing store keeps the key ring under the store's prefix, in the store's database"
        <| fun () -> task {
            use redis = new RedisServer()
            use! admin = redis.ConnectAsync(allowAdmin = true)
            let! store = RedisStore.ConnectAsync(redis.EndPoint, RedisStoreOptions(KeyPrefix = "own:", Database = 3), null)
            let logs = new LogCapture()
            use! host = startHostWith InMemory (fun services -> services.AddSesameRedis(store, "sesame-key-ring-test") |> ignore) (runHandler app) logs
            let browser = Browser host
            let! first = browser.GetTextAsync "/"
            Expect.equal first "1 times!" "the counter"
            let! inThree = keysIn admin 3
            Expect.equal inThree["own:DataProtection-Keys"] RedisType.List "the key ring in database 3"
            Expect.equal inThree.Count 4 "the session, its shard's two sets and the key ring"
            let! inZero = keysIn admin 0
            Expect.isEmpty inZero "nothing in database 0"
            Expect.isEmpty (keysNotShared logs) "no key-ring warning"
            Expect.isTrue (obj.ReferenceEquals(store, host.Services.GetRequiredService<SessionStore>())) "the app's store"
        }
        testCaseTask "AddRedisStore and AddSesameRedis refuse a missing application name"
        <| fun () -> task {
            use redis = new RedisServer()
            use! connection = redis.ConnectAsync()
            for name in [ null; ""; "  " ] do
                let e = throws<ArgumentException>(fun () -> ServiceCollection().AddSesame().AddRedisStore(connection, name) |> ignore)
                Expect.equal e.ParamName "applicationName" "the parameter named"
                let e = throws<ArgumentException>(fun () -> ServiceCollection().AddSesameRedis(connection, name) |> ignore)
                Expect.equal e.ParamName "applicationName" "the parameter named"
        }
    ]
