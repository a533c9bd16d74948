/// Line charts over time, written as SVG text (no package: the repository's other chart is written the same way).
module Sesame.FloodBench.Chart

open System
open System.Text
open Sesame.LoadTest.Figures

/// One line: its name, colour, dash pattern ("" for solid) and points (seconds, value).
type Series = { Name: string; Colour: string; Dash: string; Points: (float * float) list }

/// One panel: a title, the unit of its values, its lines, and horizontal marks (value, label).
type Panel = { Title: string; Unit: string; Series: Series list; Marks: (float * string) list }

let private escape (s: string) = s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;")

/// A tick step of 1, 2 or 5 times a power of ten giving about five ticks up to the top.
let private step (top: float) =
    let raw = top / 5.0
    let magnitude = Math.Pow(10.0, Math.Floor(Math.Log10 raw))
    [ 1.0; 2.0; 5.0; 10.0 ] |> List.map (fun m -> m * magnitude) |> List.find (fun s -> s >= raw)

/// The panels stacked, sharing the time axis, with a legend and a subtitle.
let svg (title: string) (subtitle: string) (panels: Panel list) =
    let left, right, panelHeight, gap, top = 70.0, 190.0, 230.0, 60.0, 70.0
    let plotWidth = 560.0
    let width = left + plotWidth + right
    let height = top + float panels.Length * (panelHeight + gap) + 10.0
    let maxSeconds = panels |> List.collect (fun p -> p.Series |> List.collect (fun s -> s.Points |> List.map fst)) |> List.fold max 1.0
    let s = StringBuilder()
    let add (line: string) = s.AppendLine line |> ignore
    add
        $"""<svg xmlns="http://www.w3.org/2000/svg" width="{inv "F0" width}" height="{inv "F0" height}" viewBox="0 0 {inv "F0" width} {inv "F0" height}" font-family="sans-serif" font-size="12">"""
    add """<rect width="100%" height="100%" fill="white"/>"""
    add $"""<text x="10" y="24" font-size="16" font-weight="bold">{escape title}</text>"""
    add $"""<text x="10" y="44" fill="#555">{escape subtitle}</text>"""
    panels
    |> List.iteri (fun index panel ->
        let y0 = top + float index * (panelHeight + gap)
        let values = (panel.Series |> List.collect (fun s -> s.Points |> List.map snd)) @ (panel.Marks |> List.map fst)
        let maxValue = (List.fold max 1.0 values) * 1.08
        let tick = step maxValue
        let x (seconds: float) = left + seconds / maxSeconds * plotWidth
        let y (value: float) = y0 + 20.0 + panelHeight - 20.0 - value / maxValue * (panelHeight - 20.0)
        add $"""<text x="{inv "F0" left}" y="{inv "F0" (y0 + 12.0)}" font-weight="bold">{escape panel.Title}</text>"""
        let mutable t = 0.0
        while t <= maxValue do
            add $"""<line x1="{inv "F1" left}" y1="{inv "F1" (y t)}" x2="{inv "F1" (left + plotWidth)}" y2="{inv "F1" (y t)}" stroke="#eee"/>"""
            add $"""<text x="{inv "F1" (left - 6.0)}" y="{inv "F1" (y t + 4.0)}" text-anchor="end" fill="#555">{inv "F0" t}</text>"""
            t <- t + tick
        add
            $"""<text x="14" y="{inv "F1" (y0 + 20.0 + (panelHeight - 20.0) / 2.0)}" fill="#555" transform="rotate(-90 14 {inv "F1" (y0 + 20.0 + (panelHeight - 20.0) / 2.0)})" text-anchor="middle">{escape panel.Unit}</text>"""
        let mutable seconds = 0.0
        while seconds <= maxSeconds do
            add $"""<text x="{inv "F1" (x seconds)}" y="{inv "F1" (y 0.0 + 16.0)}" text-anchor="middle" fill="#555">{inv "F0" seconds} s</text>"""
            seconds <- seconds + 10.0
        add $"""<line x1="{inv "F1" left}" y1="{inv "F1" (y 0.0)}" x2="{inv "F1" (left + plotWidth)}" y2="{inv "F1" (y 0.0)}" stroke="#333"/>"""
        for value, label in panel.Marks do
            add
                $"""<line x1="{inv "F1" left}" y1="{inv "F1" (y value)}" x2="{inv "F1" (left + plotWidth)}" y2="{inv "F1" (y value)}" stroke="#c00" stroke-dasharray="6 4"/>"""
            add $"""<text x="{inv "F1" (left + plotWidth - 4.0)}" y="{inv "F1" (y value - 4.0)}" text-anchor="end" fill="#c00">{escape label}</text>"""
        panel.Series
        |> List.iteri (fun i series ->
            if not series.Points.IsEmpty then
                let points = series.Points |> List.map (fun (sec, v) -> $"""{inv "F1" (x sec)},{inv "F1" (y v)}""") |> String.concat " "
                let dash = if series.Dash = "" then "" else " stroke-dasharray=\"" + series.Dash + "\""
                add $"""<polyline fill="none" stroke="{series.Colour}" stroke-width="2"{dash} points="{points}"/>"""
                let ly = y0 + 30.0 + float i * 18.0
                add
                    $"""<line x1="{inv "F1" (left + plotWidth + 14.0)}" y1="{inv "F1" ly}" x2="{inv "F1" (left + plotWidth + 40.0)}" y2="{inv "F1" ly}" stroke="{series.Colour}" stroke-width="2"{dash}/>"""
                add $"""<text x="{inv "F1" (left + plotWidth + 46.0)}" y="{inv "F1" (ly + 4.0)}">{escape series.Name}</text>"""))
    add "</svg>"
    s.ToString()
