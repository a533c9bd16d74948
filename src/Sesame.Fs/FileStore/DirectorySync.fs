namespace Sesame

open System
open System.Runtime.InteropServices

/// Flushing a directory, so that a rename in it survives a power cut.
module internal DirectorySync =

    [<DllImport("libc", EntryPoint = "open", SetLastError = true)>]
    extern int sysOpen(string path, int flags)

    [<DllImport("libc", EntryPoint = "fsync", SetLastError = true)>]
    extern int sysFsync(int fd)

    [<DllImport("libc", EntryPoint = "close", SetLastError = true)>]
    extern int sysClose(int fd)

    /// Flushes the directory's entries to disk: true when done, false where the platform has no way
    /// (Windows, whose NTFS journals the rename itself). An I/O error is an exception.
    let sync (directory: string) : bool =
        if OperatingSystem.IsWindows() then
            false
        else
            try
                // O_RDONLY: a directory can be opened for reading, and fsync on it flushes its entries.
                let fd = sysOpen (directory, 0)
                if fd < 0 then raise (IO.IOException $"Cannot open the directory '{directory}' to flush it (errno {Marshal.GetLastPInvokeError()}).")
                try
                    if sysFsync fd <> 0 then raise (IO.IOException $"Cannot flush the directory '{directory}' (errno {Marshal.GetLastPInvokeError()}).")
                    true
                finally
                    sysClose fd |> ignore
            with
            | :? DllNotFoundException
            | :? EntryPointNotFoundException -> false
