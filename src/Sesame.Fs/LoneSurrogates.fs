namespace Sesame

open System
open System.Buffers

/// <summary>
/// Finding a UTF-16 surrogate that is not half of a pair: JSON text cannot hold one, so Sesame refuses such a key or
/// string before it is recorded.
/// </summary>
module internal LoneSurrogates =

    /// Every UTF-16 surrogate: a long text is searched for the first one vectorized.
    let private surrogates = SearchValues.Create(ReadOnlySpan<char>(Array.init 0x800 (fun i -> char (0xD800 + i))))

    /// The first surrogate of a short text, or -1: a plain scan, cheaper than a vectorized search's set-up there.
    let private firstInShort (text: string) =
        let mutable i = 0
        while i < text.Length && uint32 text[i] - 0xD800u >= 0x800u do
            i <- i + 1
        if i = text.Length then -1 else i

    /// Whether a string holds a UTF-16 surrogate that is not half of a pair. Checked for every string of every update,
    /// so it allocates nothing, and most texts hold no surrogate at all: the first is found (a short text scanned, a
    /// long one searched vectorized), and only from there is the text walked pair by pair.
    let has (text: string) =
        let first = if text.Length < 32 then firstInShort text else text.AsSpan().IndexOfAny surrogates
        if first < 0 then
            false
        else
            let mutable i = first
            let mutable lone = false
            while not lone && i < text.Length do
                let c = text[i]
                if not (Char.IsSurrogate c) then i <- i + 1
                elif Char.IsHighSurrogate c && i + 1 < text.Length && Char.IsLowSurrogate text[i + 1] then i <- i + 2
                else lone <- true
            lone
