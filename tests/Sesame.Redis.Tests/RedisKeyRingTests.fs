/// AddSesameRedis: the sessions and the Data Protection key ring in one Redis, on one connection,
/// so app instances need nothing else in common to read each other's cookies.
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
open Xunit
open Sesame
open Sesame.Redis
open Sesame.Redis.Tests.RedisServer
open Sesame.Samples.Giraffe
open Sesame.Samples.Giraffe.GiraffeShape
open Sesame.Tests

let private app: HttpHandler = withSession >=> choose [ route "/" >=> App.counter; route "/session" >=> App.show ]

let private keysNotShared (logs: LogCapture) =
    logs.Entries |> List.filter (fun e -> e.EventId.Name = "DataProtectionKeysNotShared")

/// An app instance with its own connection to Redis (as on its own machine), set up by AddSesameRedis.
/// Given a folder, the instance first has its keys there, as a machine of its own would by default:
/// AddSesameRedis, called after, moves them to Redis.
let private startOnRedis (server: Server) (redis: RedisServer) (clientName: string) (localKeys: DirectoryInfo option) (configure: RedisStoreOptions -> unit) (logs: LogCapture) =
    task {
        let! connection = redis.ConnectAsync(clientName = clientName)
        let services (services: IServiceCollection) =
            localKeys |> Option.iter (fun folder -> services.AddDataProtection().PersistKeysToFileSystem folder |> ignore)
            services.AddSesameRedis(connection, "sesame-key-ring-test", Action<RedisStoreOptions> configure) |> ignore
        let! host = startHostWith server services (runHandler app) logs
        return host, connection
    }

/// One browser's cookie jar: cookies do not care about ports, so it goes to every instance on 127.0.0.1.
let private browserOn (jar: CookieContainer) (host: IHost) =
    new HttpClient(new HttpClientHandler(CookieContainer = jar, UseCookies = true), BaseAddress = addressOf host)

let private get (client: HttpClient) (url: string) =
    task {
        let! response = client.GetAsync url
        let! body = response.Content.ReadAsStringAsync()
        Assert.True(response.IsSuccessStatusCode, $"GET {url} on {client.BaseAddress} answered {int response.StatusCode}: {body}")
        return body
    }

/// Every key in the database with its Redis type.
let private keysIn (admin: IConnectionMultiplexer) (database: int) =
    task {
        let db = admin.GetDatabase database
        let! keys = db.ExecuteAsync("KEYS", [| box "*" |])
        let names: string[] = RedisResult.op_Explicit keys
        let! types = names |> Array.map (fun name -> db.KeyTypeAsync(RedisKey.op_Implicit name, CommandFlags.None)) |> Task.WhenAll
        return Array.zip names types |> Map.ofArray
    }

[<Fact>]
let ``an app set up with AddSesameRedis is not warned about its key ring, keeps it in Redis beside its sessions and uses one connection for both`` () =
    task {
        use redis = new RedisServer()
        use! admin = redis.ConnectAsync(clientName = "key-ring-admin", allowAdmin = true)
        let logs = new LogCapture()
        let! host, connection = startOnRedis Kestrel redis "key-ring-app" None (fun o -> o.KeyPrefix <- "shop:") logs
        use _connection = connection
        use _host = host
        use browser = browserOn (CookieContainer()) host
        let! first = get browser "/"
        Assert.Equal("1 times!", first)
        let! second = get browser "/"
        Assert.Equal("2 times!", second)
        Assert.Empty(keysNotShared logs)
        // One session hash and the key ring (a list holding the key's XML), both under the prefix.
        let! keys = keysIn admin 0
        Assert.Equal(2, keys.Count)
        Assert.Equal(RedisType.List, keys["shop:DataProtection-Keys"])
        let session = keys |> Map.filter (fun name kind -> name.StartsWith "shop:" && kind = RedisType.Hash) |> Map.keys |> Seq.exactlyOne
        Assert.Equal(SessionId.Length, session.Length - "shop:".Length)
        let! ring = admin.GetDatabase().ListRangeAsync(RedisKey.op_Implicit "shop:DataProtection-Keys", 0L, -1L, CommandFlags.None)
        Assert.NotEmpty ring
        Assert.All(ring, fun key -> Assert.Contains("<key ", string key))
        // Both went through the app's one connection: Redis sees no client but it and the admin.
        let! clients = admin.GetServer(redis.EndPoint).ClientListAsync(CommandFlags.None)
        Assert.All(clients, fun c -> Assert.Contains(c.Name, [ "key-ring-app"; "key-ring-admin" ]))
        Assert.Same(connection, (host.Services.GetRequiredService<ISessionStore>() :?> RedisStore).Connection)
        // The same store registered with AddSesame alone, its keys nowhere shared, is warned about.
        let unshared = new LogCapture()
        let services (services: IServiceCollection) =
            services.AddSesame(fun o -> o.Store <- new RedisStore(connection, RedisStoreOptions(KeyPrefix = "shop:"), null)) |> ignore
        use! _other = startHostWith InMemory services (runHandler app) unshared
        Assert.Single(keysNotShared unshared) |> ignore
    }

[<Fact>]
let ``two app instances on one Redis set up with AddSesameRedis, each with a key folder of its own, continue each other's sessions`` () =
    task {
        use redis = new RedisServer()
        let folderA, folderB = Directory.CreateTempSubdirectory "sesame-keys-a-", Directory.CreateTempSubdirectory "sesame-keys-b-"
        use _folders = { new IDisposable with member _.Dispose() = for f in [ folderA; folderB ] do f.Delete true }
        let logsA, logsB = new LogCapture(), new LogCapture()
        let! instanceA, connectionA = startOnRedis Kestrel redis "instance-a" (Some folderA) ignore logsA
        use _ca = connectionA
        use _a = instanceA
        let! instanceB, connectionB = startOnRedis Kestrel redis "instance-b" (Some folderB) ignore logsB
        use _cb = connectionB
        use _b = instanceB
        let jar = CookieContainer()
        use onA = browserOn jar instanceA
        use onB = browserOn jar instanceB
        let! first = get onA "/"
        Assert.Equal("1 times!", first)
        let cookie = jar.GetCookies(addressOf instanceA) |> Seq.exactlyOne
        let! second = get onB "/"
        Assert.Equal("2 times!", second)
        let! third = get onA "/"
        Assert.Equal("3 times!", third)
        let! fourth = get onB "/"
        Assert.Equal("4 times!", fourth)
        // One session throughout: neither instance rejected the other's cookie and issued its own.
        Assert.Equal(cookie.Value, (jar.GetCookies(addressOf instanceB) |> Seq.exactlyOne).Value)
        Assert.Empty(keysNotShared logsA @ keysNotShared logsB)
        // Neither machine-local folder was used.
        Assert.Empty(folderA.GetFiles())
        Assert.Empty(folderB.GetFiles())
    }

/// What the test above would see without a shared key ring: instances whose keys live in a folder
/// each reject each other's cookies (so the test above can only pass through the key ring in Redis).
[<Fact>]
let ``two app instances on one Redis with a key folder each do not continue each other's sessions`` () =
    task {
        use redis = new RedisServer()
        let folderA, folderB = Directory.CreateTempSubdirectory "sesame-keys-a-", Directory.CreateTempSubdirectory "sesame-keys-b-"
        use _folders = { new IDisposable with member _.Dispose() = for f in [ folderA; folderB ] do f.Delete true }
        let start (folder: DirectoryInfo) =
            task {
                let! store = RedisStore.ConnectAsync(redis.EndPoint)
                let services (services: IServiceCollection) =
                    services.AddSesame(fun o -> o.Store <- store) |> ignore
                    services.AddDataProtection().PersistKeysToFileSystem(folder).SetApplicationName("sesame-key-ring-test") |> ignore
                return! startHostWith Kestrel services (runHandler app) (new LogCapture())
            }
        use! instanceA = start folderA
        use! instanceB = start folderB
        let jar = CookieContainer()
        use onA = browserOn jar instanceA
        use onB = browserOn jar instanceB
        let! first = get onA "/"
        Assert.Equal("1 times!", first)
        let! onOther = get onB "/"
        Assert.Equal("1 times!", onOther)
    }

[<Fact>]
let ``AddSesameRedis on an existing store keeps the key ring under the store's prefix, in the store's database`` () =
    task {
        use redis = new RedisServer()
        use! admin = redis.ConnectAsync(allowAdmin = true)
        let! store = RedisStore.ConnectAsync(redis.EndPoint, RedisStoreOptions(KeyPrefix = "own:", Database = 3), null)
        let logs = new LogCapture()
        use! host = startHostWith InMemory (fun services -> services.AddSesameRedis(store, "sesame-key-ring-test") |> ignore) (runHandler app) logs
        let browser = Browser host
        let! first = browser.GetTextAsync "/"
        Assert.Equal("1 times!", first)
        let! inThree = keysIn admin 3
        Assert.Equal(RedisType.List, inThree["own:DataProtection-Keys"])
        Assert.Equal(2, inThree.Count)
        let! inZero = keysIn admin 0
        Assert.Empty inZero
        Assert.Empty(keysNotShared logs)
        Assert.Same(store, host.Services.GetRequiredService<ISessionStore>())
    }

[<Fact>]
let ``AddSesameRedis refuses a missing application name`` () =
    task {
        use redis = new RedisServer()
        use! connection = redis.ConnectAsync()
        for name in [ null; ""; "  " ] do
            let e = Assert.Throws<ArgumentException>(fun () -> ServiceCollection().AddSesameRedis(connection, name) |> ignore)
            Assert.Equal("applicationName", e.ParamName)
    }
