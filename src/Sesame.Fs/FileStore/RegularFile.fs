namespace Sesame

open System
open System.Runtime.InteropServices
open Microsoft.Win32.SafeHandles

/// Telling a regular file from a device, a pipe or a socket. A store writes its header into the file and renames
/// compacted files over it: on <c>/dev/null</c> (or a link to it) that would replace the device with a file. .NET's
/// file attributes do not tell a device apart, so Linux asks the kernel (<c>statx</c>, whose layout is the same on every
/// architecture); elsewhere, and where the C library has no <c>statx</c>, the store checks the header it wrote stayed.
module internal RegularFile =

    [<DllImport("libc", EntryPoint = "statx", SetLastError = true)>]
    extern int private sysStatx(int dirfd, string pathname, int flags, uint32 mask, byte[] buffer)

    /// statx's flag for "the file descriptor itself", and its request for the file type.
    let private AtEmptyPath = 0x1000
    let private StatxType = 0x1u
    /// Where the 16-bit st_mode sits in struct statx, and its file-type bits.
    let private ModeOffset = 28
    let private TypeMask = 0xF000
    let private Regular = 0x8000

    /// Whether the handle is on a regular file: <c>ValueNone</c> when the platform cannot tell this way.
    let check (handle: SafeFileHandle) : bool voption =
        if not (OperatingSystem.IsLinux()) then
            ValueNone
        else
            try
                // struct statx is 256 bytes.
                let buffer = Array.zeroCreate<byte> 256
                let added = ref false
                handle.DangerousAddRef added
                try
                    if sysStatx (int (handle.DangerousGetHandle()), "", AtEmptyPath, StatxType, buffer) <> 0 then
                        ValueNone
                    else
                        let mode = int (BitConverter.ToUInt16(buffer, ModeOffset))
                        ValueSome(mode &&& TypeMask = Regular)
                finally
                    if added.Value then handle.DangerousRelease()
            with
            | :? DllNotFoundException
            | :? EntryPointNotFoundException -> ValueNone

    /// What opening a file that is not a regular one fails with: the path given, and where its links lead if elsewhere;
    /// <c>inner</c> is the error that told (null when none did).
    let notRegular (given: string) (resolved: string) (inner: exn) =
        let named = if given = resolved then $"'{given}'" else $"'{given}' (a link to '{resolved}')"
        SessionStoreException(
            $"The session file {named} is not a regular file (a device, a pipe or a socket): a file store writes the file and renames compacted files over it. For sessions kept in memory only, use the MemoryStore.",
            inner
        )
