/// The sections of docs/performance.md that runs other than the load test write (the flood run, Redis memory per
/// session), each between two markers, so that a run rewrites only its own section and the load test keeps them.
module Sesame.LoadTest.DocSections

open System.IO

/// How a section begins (with the run that writes it) and ends.
let startMarker (name: string) (writtenBy: string) = $"<!-- {name}:start (written by {writtenBy}) -->"

let endMarker (name: string) = $"<!-- {name}:end -->"

/// Writes a run's section into the file: in place of its earlier text, else before the analysis written by hand (the
/// micro-benchmarks onward), else at the end.
let write (path: string) (name: string) (writtenBy: string) (section: string) =
    let startMarker, endMarker = startMarker name writtenBy, endMarker name
    let text = if File.Exists path then File.ReadAllText path else "# Performance\n"
    let block = $"{startMarker}\n{section.TrimEnd()}\n{endMarker}\n"
    let updated =
        match text.IndexOf startMarker, text.IndexOf endMarker with
        | start, finish when start >= 0 && finish > start -> text.Substring(0, start) + block + text.Substring(finish + endMarker.Length).TrimStart('\n')
        | _ ->
            match text.IndexOf "\n<!-- analysis:start" with
            | i when i >= 0 -> text.Substring(0, i + 1) + block + "\n" + text.Substring(i + 1)
            | _ -> text.TrimEnd() + "\n\n" + block
    File.WriteAllText(path, updated)
