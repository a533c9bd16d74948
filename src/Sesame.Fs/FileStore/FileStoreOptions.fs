namespace Sesame

open System

/// <summary>Options of the file store.</summary>
[<AllowNullLiteral>]
type FileStoreOptions() =

    /// <summary>The default size below which the file is never compacted: 4 MiB.</summary>
    static member DefaultCompactionMinBytes = 4L * 1024L * 1024L

    /// <summary>The default ratio of file size to live size past which the file is compacted: 2 (half the file dead).</summary>
    static member DefaultCompactionRatio = 2.0

    /// <summary>The default interval between sweeps of expired sessions out of memory: one minute.</summary>
    static member DefaultSweepInterval = TimeSpan.FromMinutes 1.0

    /// <summary>The default lag after which a load's expiry slide is written to the file: one minute.</summary>
    static member DefaultSlideWriteInterval = TimeSpan.FromMinutes 1.0

    /// <summary>The default bound on live sessions: 100,000.</summary>
    static member DefaultMaxSessions = 100_000

    /// <summary>The default bound on the memory the live sessions take: 256 MiB.</summary>
    static member DefaultMaxTotalBytes = 256L * 1024L * 1024L

    /// <summary>
    /// The most live sessions kept, checked on every commit or move that creates one. Past it, sessions used by one
    /// request only are evicted first (least recently used first), sessions that came back only when no such session
    /// is left, as in the memory store. An evicted session gets a delete record (its records become dead bytes, left
    /// out by the next compaction), so it does not come back after a restart. Sessions replayed on open count as
    /// returning ones, and the bound applies to them too. At least 1. Default 100,000.
    /// </summary>
    member val MaxSessions = FileStoreOptions.DefaultMaxSessions with get, set

    /// <summary>
    /// The most memory the live sessions may take, checked on every commit or move that grows what is held. The store
    /// holds each session as compact UTF-8 JSON (its tree and its facts), as the memory store does; this bound counts
    /// that JSON plus about 350 bytes of bookkeeping per session, so it bounds memory whatever the sessions hold (the
    /// parsed trees of the sessions in use, up to 2 MiB of their JSON, are kept beside them and not counted). Eviction is in the same order as for
    /// <see cref="P:Sesame.FileStoreOptions.MaxSessions"/>. A session larger than this on its own is refused
    /// (<see cref="T:Sesame.SessionTooLargeException"/>). At least 1. Default 256 MiB.
    /// </summary>
    member val MaxTotalBytes = FileStoreOptions.DefaultMaxTotalBytes with get, set

    /// <summary>The file is never compacted while smaller than this many bytes. Default 4 MiB.</summary>
    member val CompactionMinBytes = FileStoreOptions.DefaultCompactionMinBytes with get, set

    /// <summary>
    /// The file is compacted when it is more than this many times the size a fresh file holding only the
    /// live sessions would have (and at least <see cref="P:Sesame.FileStoreOptions.CompactionMinBytes"/>).
    /// Must be more than 1. Default 2.
    /// </summary>
    member val CompactionRatio = FileStoreOptions.DefaultCompactionRatio with get, set

    /// <summary>
    /// How often expired sessions are dropped from memory (they are never served in between); once dropped,
    /// their bytes count as dead, so the next compaction leaves them out. Default one minute; at least 1 millisecond
    /// and at most about 49.7 days.
    /// </summary>
    member val SweepInterval = FileStoreOptions.DefaultSweepInterval with get, set

    /// <summary>
    /// A load slides the session's expiry in memory at once, but writes the slide to the file (without
    /// waiting for the disk) only when the expiry the file holds lags it by at least this much. Default one minute.
    /// </summary>
    /// <remarks>
    /// So after a restart a session that was only read, never changed, may expire up to this much earlier
    /// than it would have without the restart. It never lives longer. <c>TimeSpan.Zero</c> writes every slide.
    /// </remarks>
    member val SlideWriteInterval = FileStoreOptions.DefaultSlideWriteInterval with get, set

    /// Refuses values out of range, naming the option (the argument is the options object).
    member internal this.Check() =
        if Double.IsNaN this.CompactionRatio || this.CompactionRatio <= 1.0 then
            invalidArg "options" $"CompactionRatio must be more than 1 (it is {this.CompactionRatio})."
        if this.CompactionMinBytes < 0L then invalidArg "options" "CompactionMinBytes cannot be negative."
        if not (MemoryStoreOptions.TimerTakes this.SweepInterval) then
            invalidArg "options" $"SweepInterval must be at least 1 millisecond and at most about 49.7 days (it is {this.SweepInterval})."
        if this.SlideWriteInterval < TimeSpan.Zero then invalidArg "options" "SlideWriteInterval cannot be negative."
        if this.MaxSessions < 1 then invalidArg "options" $"MaxSessions must be at least 1 (it is {this.MaxSessions})."
        if this.MaxTotalBytes < 1L then invalidArg "options" $"MaxTotalBytes must be at least 1 (it is {this.MaxTotalBytes})."
