namespace Sesame

open System
open System.Buffers.Text
open System.Security.Cryptography

/// <summary>
/// Bytes from the operating system's CSPRNG (<see cref="T:System.Security.Cryptography.RandomNumberGenerator"/>),
/// drawn a block at a time per thread and handed out in order: what new session ids are made of.
/// </summary>
/// <remarks>
/// <para><b>Why.</b> On Linux every call into the CSPRNG goes through OpenSSL, which costs about 2 µs a call whatever its
/// size (its locks and its fork check): as much as a whole returning visit to the memory store, paid by every new
/// session for 24 bytes. One call for a block of <c>BlockBytes</c> serves 85 ids at about 0.1 µs each.</para>
/// <para><b>Why it is as safe.</b> The bytes are the CSPRNG's own, each handed out once, and zeroed in the block as they
/// are: what the block still holds is only what later ids will be made of, in this process's memory, beside the Data
/// Protection keys and the sessions themselves. A session id alone opens nothing: the client holds it only inside a
/// ticket sealed under a key those keys protect, or protected with them.</para>
/// <para>Each thread has its block, so no lock; a .NET process does not fork, so no two processes share one.</para>
/// </remarks>
[<Sealed; AbstractClass>]
type internal BufferedRandom =

    /// The bytes one CSPRNG call draws for a thread.
    static member BlockBytes = 2048

    [<ThreadStatic; DefaultValue>]
    static val mutable private block: byte[]

    /// How much of the thread's block has been handed out.
    [<ThreadStatic; DefaultValue>]
    static val mutable private used: int

    /// <summary>Fills <paramref name="destination"/> with CSPRNG bytes: from the thread's block, or straight from the
    /// CSPRNG when more than a block is asked for.</summary>
    static member Fill(destination: Span<byte>) =
        if destination.Length > BufferedRandom.BlockBytes then
            RandomNumberGenerator.Fill destination
        else
            let mutable block = BufferedRandom.block
            if isNull block || BufferedRandom.used + destination.Length > block.Length then
                if isNull block then
                    block <- Array.zeroCreate BufferedRandom.BlockBytes
                    BufferedRandom.block <- block
                RandomNumberGenerator.Fill(Span block)
                BufferedRandom.used <- 0
            let bytes = Span(block, BufferedRandom.used, destination.Length)
            bytes.CopyTo destination
            bytes.Clear()
            BufferedRandom.used <- BufferedRandom.used + destination.Length

    /// <summary>The given number of CSPRNG bytes as base64url (<c>-</c> and <c>_</c>, no padding).</summary>
    static member Base64Url(count: int) : string =
        let bytes = Array.zeroCreate<byte> count
        BufferedRandom.Fill(Span bytes)
        Base64Url.EncodeToString(ReadOnlySpan bytes)
