/// The floors: the counter's store work done without Sesame, in the same app, so that Sesame's store rows can be
/// compared with the least a store of that kind costs. Each floor answers /counter as Sesame's counter does
/// ("N times!"), names its session by a cookie holding a plain random id (unsigned: Sesame also seals its ticket
/// with a MAC under a key Data Protection protects), and does per request what Sesame's store does for the counter:
///   Redis: the same round trips (a shared-cookie request makes one script call to load and one to commit; a
///          new session, the commit alone) through one ConnectionMultiplexer with the Redis store's options;
///   file:  one durable append of a record of the same bytes as the file store's, group-committed (a writer
///          thread writes whatever is queued in one write and flushes it with one fsync), the counter held in a
///          ConcurrentDictionary.
/// Written plainly here, on purpose: nothing of Sesame's is called.
module Sesame.LoadTest.Floors

open System
open System.Buffers.Binary
open System.Collections.Concurrent
open System.Diagnostics
open System.IO
open System.Numerics
open System.Security.Cryptography
open System.Text
open System.Threading
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open StackExchange.Redis

/// The cookie that names a floor's session.
[<Literal>]
let CookieName = "floor"

/// Sesame's default idle timeout: the floors' sessions expire after as long.
let idleTimeout = TimeSpan.FromMinutes 20.0

/// A new session id: 24 random bytes in base64url, as long as Sesame's ids (32 characters).
let newId () = Convert.ToBase64String(RandomNumberGenerator.GetBytes 24).Replace('+', '-').Replace('/', '_')

let private setCookie (ctx: HttpContext) (id: string) =
    ctx.Response.Cookies.Append(CookieName, id, CookieOptions(Path = "/", HttpOnly = true, SameSite = SameSiteMode.Lax))

let private cookieOf (ctx: HttpContext) =
    match ctx.Request.Cookies.TryGetValue CookieName with
    | true, id when not (String.IsNullOrEmpty id) -> id
    | _ -> null

/// The load script: the session's hash and a slide of its idle expiry (Sesame's Load.lua reads the hash and its TTL,
/// and slides the expiry at most once per refresh interval).
let private loadScript =
    """
local fields = redis.call('HGETALL', KEYS[1])
if #fields > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return fields
"""

/// The commit script: the counter's increment and the idle expiry (Sesame's Commit.lua applies the change to the
/// hash's nodes, keeps its size and last-seen fields, the expiry and id sets, and sets the TTL).
let private commitScript =
    """
local times = redis.call('HINCRBY', KEYS[1], 'times', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return times
"""

/// The Redis floor: per shared-cookie request two EVALSHA round trips (load, then commit), per new session one (the
/// commit, which creates the hash), on one connection opened as RedisStore.ConnectAsync opens its own.
[<Sealed>]
type RedisFloor private (connection: ConnectionMultiplexer, loadHash: byte[], commitHash: byte[]) =
    let database = connection.GetDatabase()
    let ttl = RedisValue.op_Implicit (int64 idleTimeout.TotalMilliseconds)
    let keyOf (id: string) = RedisKey.op_Implicit ("floor:" + id)

    /// Connects with the Redis store's options (no abort on a failed connect; commands fail at once rather than wait
    /// in a backlog while disconnected) and loads the two scripts.
    static member ConnectAsync(configuration: string) : Task<RedisFloor> = task {
        let settings = ConfigurationOptions.Parse configuration
        settings.AbortOnConnectFail <- false
        settings.BacklogPolicy <- BacklogPolicy.FailFast
        let! connection = ConnectionMultiplexer.ConnectAsync(settings, null)
        let server = connection.GetServer(connection.GetEndPoints()[0])
        let! loadHash = server.ScriptLoadAsync loadScript
        let! commitHash = server.ScriptLoadAsync commitScript
        return new RedisFloor(connection, loadHash, commitHash)
    }

    /// /counter: load the session named by the cookie (if any), then commit the increment (creating the session when
    /// there was none, and then setting the cookie).
    member _.HandleAsync(ctx: HttpContext) : Task =
        if ctx.Request.Path.Value <> "/counter" then
            ctx.Response.StatusCode <- 404
            Task.CompletedTask
        else
            task {
                let cookie = cookieOf ctx
                let mutable id = null
                if not (isNull cookie) then
                    let! loaded = database.ScriptEvaluateAsync(loadHash, [| keyOf cookie |], [| ttl |], CommandFlags.None)
                    let fields: RedisResult[] = RedisResult.op_Explicit loaded
                    if fields.Length > 0 then id <- cookie
                let created = isNull id
                if created then id <- newId ()
                let! committed = database.ScriptEvaluateAsync(commitHash, [| keyOf id |], [| ttl |], CommandFlags.None)
                let times: int64 = RedisResult.op_Explicit committed
                if created then setCookie ctx id
                do! ctx.Response.WriteAsync $"{times} times!"
            }

    interface IDisposable with
        member _.Dispose() = connection.Dispose()

/// The file store's record layout (see FileStore's remarks): a 16-byte header (payload length, CRC-32C of the rest,
/// the file length known flushed), then the payload: kind, expiry and last seen (UTC ticks), id length, id, change.
module private Record =
    let headerLength = 16
    let kindChange = 1uy
    let kindCreate = 2uy

    /// The counter's change, as the file store writes it: the data patch, then the facts patch (empty).
    let incrementBody = "[[[\"increment\",[\"times\"],1]],[]]"B

    /// A new session's record, as the file store writes it: the session whole (its tree, then its facts: the time it was
    /// created), each set at the root.
    let createBody (createdMs: int64) = Encoding.UTF8.GetBytes $"""[[["set",[],{{"times":1}}]],[["set",[],{{"created":{createdMs}}}]]]"""

    let payload (kind: byte) (expires: int64) (lastSeen: int64) (id: string) (body: byte[]) =
        let idLength = Encoding.UTF8.GetByteCount id
        let p = Array.zeroCreate<byte>(21 + idLength + body.Length)
        p[0] <- kind
        BinaryPrimitives.WriteInt64LittleEndian(Span(p, 1, 8), expires)
        BinaryPrimitives.WriteInt64LittleEndian(Span(p, 9, 8), lastSeen)
        BinaryPrimitives.WriteInt32LittleEndian(Span(p, 17, 4), idLength)
        Encoding.UTF8.GetBytes(id, Span(p, 21, idLength)) |> ignore
        Buffer.BlockCopy(body, 0, p, 21 + idLength, body.Length)
        p

    /// Frames a payload into dest at `at`; gives the record's length.
    let frame (dest: byte[]) (at: int) (durableLength: int64) (payload: byte[]) =
        let length = headerLength + payload.Length
        BinaryPrimitives.WriteUInt32LittleEndian(Span(dest, at, 4), uint32 payload.Length)
        BinaryPrimitives.WriteInt64LittleEndian(Span(dest, at + 8, 8), durableLength)
        Buffer.BlockCopy(payload, 0, dest, at + headerLength, payload.Length)
        let record = ReadOnlySpan(dest, at, length)
        // The same checksum as the store's records (the one piece of the store the floor uses: the same work).
        let crc = Sesame.Crc32C.OfRecord record
        BinaryPrimitives.WriteUInt32LittleEndian(Span(dest, at + 4, 4), crc)
        length

/// The file floor: the counter in a ConcurrentDictionary, and per request one record appended to a file of its own
/// (the same bytes the file store appends for the counter) that the request waits for until it is flushed to disk.
/// One writer thread does group commit as the file store's does: it takes everything queued at once, writes it with
/// one write and flushes it with one fsync, then completes every request of the batch.
[<Sealed>]
type FileFloor(path: string) =
    let handle = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite, FileShare.None, FileOptions.None)
    let counters = ConcurrentDictionary<string, int64>()
    let queueLock = obj ()
    let mutable queue = ResizeArray<struct (byte[] * TaskCompletionSource)>()
    let mutable draining = ResizeArray<struct (byte[] * TaskCompletionSource)>()
    let mutable closing = false
    let mutable length = 0L
    let mutable durableLength = 0L
    let mutable buffer: byte[] = Array.zeroCreate 65536
    let mutable batches = 0L
    let mutable records = 0L
    let mutable fsyncTicks = 0L

    do
        // The file store's header: magic and format version.
        let header = Array.zeroCreate<byte> 16
        "SesameFS"B.CopyTo(header, 0)
        BinaryPrimitives.WriteUInt32LittleEndian(Span(header, 8, 4), 2u)
        RandomAccess.Write(handle, ReadOnlySpan header, 0L)
        RandomAccess.FlushToDisk handle
        length <- 16L
        durableLength <- 16L

    let writeBatch (batch: ResizeArray<struct (byte[] * TaskCompletionSource)>) =
        let mutable bytes = 0
        for struct (payload, _) in batch do
            bytes <- bytes + Record.headerLength + payload.Length
        if buffer.Length < bytes then buffer <- Array.zeroCreate (max bytes (2 * buffer.Length))
        let mutable at = 0
        for struct (payload, _) in batch do
            at <- at + Record.frame buffer at durableLength payload
        try
            RandomAccess.Write(handle, ReadOnlySpan(buffer, 0, bytes), length)
            length <- length + int64 bytes
            let started = Stopwatch.GetTimestamp()
            RandomAccess.FlushToDisk handle
            Volatile.Write(&fsyncTicks, fsyncTicks + (Stopwatch.GetTimestamp() - started))
            durableLength <- length
            Volatile.Write(&batches, batches + 1L)
            Volatile.Write(&records, records + int64 batch.Count)
            for struct (_, flushed) in batch do
                flushed.TrySetResult() |> ignore
        with e ->
            for struct (_, flushed) in batch do
                flushed.TrySetException e |> ignore

    let run () =
        let mutable running = true
        while running do
            let batch =
                lock queueLock (fun () ->
                    while queue.Count = 0 && not closing do
                        Monitor.Wait queueLock |> ignore
                    let taken = queue
                    queue <- draining
                    draining <- taken
                    if taken.Count = 0 then running <- false
                    taken)
            if batch.Count > 0 then
                writeBatch batch
                batch.Clear()

    let writer = Thread(ThreadStart run, IsBackground = true, Name = "file floor writer")
    do writer.Start()

    /// Queues a record; completes once it is on disk.
    member _.AppendAsync(payload: byte[]) : Task =
        let flushed = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
        lock queueLock (fun () ->
            if closing then
                flushed.TrySetException(ObjectDisposedException "FileFloor") |> ignore
            else
                queue.Add(struct (payload, flushed))
                if queue.Count = 1 then Monitor.Pulse queueLock)
        flushed.Task

    /// Records written, fsyncs made and the time spent in them (µs) so far.
    member _.Counts = struct (Volatile.Read &records, Volatile.Read &batches, int64 (Stopwatch.GetElapsedTime(0L, Volatile.Read &fsyncTicks).TotalMicroseconds))

    /// /counter: increment the counter of the session named by the cookie (a new session when there is none, then
    /// setting the cookie), append its record and answer once it is flushed.
    member this.HandleAsync(ctx: HttpContext) : Task =
        if ctx.Request.Path.Value = "/stats" then
            let struct (records, batches, fsyncUs) = this.Counts
            ctx.Response.WriteAsync $"{records} {batches} {fsyncUs}"
        elif ctx.Request.Path.Value <> "/counter" then
            ctx.Response.StatusCode <- 404
            Task.CompletedTask
        else
            let now = DateTimeOffset.UtcNow
            let expires = now.UtcTicks + idleTimeout.Ticks
            let cookie = cookieOf ctx
            let times, payload =
                if not (isNull cookie) && counters.ContainsKey cookie then
                    counters.AddOrUpdate(cookie, 1L, fun _ n -> n + 1L), Record.payload Record.kindChange expires now.UtcTicks cookie Record.incrementBody
                else
                    let id = newId ()
                    counters[id] <- 1L
                    setCookie ctx id
                    1L, Record.payload Record.kindCreate expires now.UtcTicks id (Record.createBody (now.ToUnixTimeMilliseconds()))
            task {
                do! this.AppendAsync payload
                do! ctx.Response.WriteAsync $"{times} times!"
            }

    interface IDisposable with
        member _.Dispose() =
            lock queueLock (fun () ->
                closing <- true
                Monitor.Pulse queueLock)
            writer.Join()
            handle.Dispose()

/// The latency of one fsync on a disk: `count` appends of `bytes` bytes to a new file in `directory`, each flushed to
/// disk on its own; gives the latencies in milliseconds, sorted.
let fsyncLatencies (directory: string) (count: int) (bytes: int) =
    let path = Path.Combine(directory, $"fsync-{Environment.ProcessId}.tmp")
    try
        use handle = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite, FileShare.None, FileOptions.None)
        let data = Array.create bytes 42uy
        let mutable at = 0L
        let latencies = Array.zeroCreate<float> count
        for i in -10 .. count - 1 do
            let started = Stopwatch.GetTimestamp()
            RandomAccess.Write(handle, ReadOnlySpan data, at)
            RandomAccess.FlushToDisk handle
            at <- at + int64 bytes
            if i >= 0 then latencies[i] <- Stopwatch.GetElapsedTime(started).TotalMilliseconds
        Array.sortInPlace latencies
        latencies
    finally
        File.Delete path
