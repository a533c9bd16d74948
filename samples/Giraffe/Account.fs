/// <summary>
/// Login, logout and a "your devices" page, with Sesame's own sign-in.
/// </summary>
/// <remarks>
/// A DEMO: any user name signs in, and no password is asked or stored. A real app checks the credentials first and
/// then calls the same <c>Session.signInAsync</c> with the user's stable id (never a display name).
///
/// The forms post without antiforgery tokens. Sesame's cookie is SameSite=Lax, so a browser does not send it with a
/// cross-site POST, which blocks the classic forged form; a real app still adds antiforgery tokens (Giraffe has them
/// through ASP.NET Core's IAntiforgery) to protect older browsers and same-site attackers.
/// </remarks>
module Sesame.Samples.Giraffe.Account

open System
open System.Net
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open Sesame
open Sesame.Samples.Giraffe.GiraffeShape

let private encode (text: string) = WebUtility.HtmlEncode text

/// A whole HTML page.
let private page (title: string) (body: string) : HttpHandler =
    htmlString
        $"""<!doctype html>
<html><head><meta charset="utf-8"><title>{encode title}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}} tr.current{{background:#efe}}</style>
</head><body><h1>{encode title}</h1>
{body}
</body></html>"""

/// A form that posts to a path with one button (and hidden fields).
let private postButton (action: string) (hidden: (string * string) list) (label: string) =
    let fields = hidden |> List.map (fun (name, value) -> $"""<input type="hidden" name="{encode name}" value="{encode value}">""") |> String.concat ""
    $"""<form method="post" action="{encode action}" style="display:inline">{fields}<button type="submit">{encode label}</button></form>"""

/// Runs the handler <paramref name="f"/> makes of the posted form (an empty one when the request has none). A form that
/// cannot be read (malformed, cut short, more fields than ASP.NET Core reads) is answered 400, not a server error.
let private withForm (f: IFormCollection -> HttpHandler) : HttpHandler =
    fun next ctx -> task {
        let! form = task {
            if not ctx.Request.HasFormContentType then
                return Some(FormCollection.Empty :> IFormCollection)
            else
                try
                    let! form = ctx.Request.ReadFormAsync ctx.RequestAborted
                    return Some form
                with
                | :? IO.InvalidDataException
                | :? IO.IOException -> return None
        }
        match form with
        | Some form -> return! f form next ctx
        | None -> return! (setStatusCode 400 >=> page "Bad request" "<p>The form could not be read.</p>") next ctx
    }

/// A field of the form, trimmed, or "".
let private field (name: string) (form: IFormCollection) = (string form[name]).Trim()

/// Runs the handler <paramref name="f"/> makes of the signed-in user and the session; sends anyone else to the login page.
let private signedIn (f: string -> SessionHandle -> HttpHandler) : HttpHandler =
    Session.handler (fun session ->
        match Session.userId session with
        | Some user -> f user session
        | None -> redirectTo false "/login")

/// GET /login: the login form, or who is signed in.
let loginForm: HttpHandler =
    Session.handler (fun session ->
        match Session.userId session with
        | Some user -> page "Sign in" $"""<p>You are already signed in as <b id="user">{encode user}</b>. <a href="/me">Your account</a></p>"""
        | None ->
            page
                "Sign in"
                """<p id="status">Not signed in.</p>
<form method="post" action="/login">
<p><label>User name <input name="user" required maxlength="64" autofocus></label></p>
<p><label><input type="checkbox" name="fresh" value="on"> Start with an empty session (drop what this browser's session holds)</label></p>
<p><button type="submit">Sign in</button></p>
</form>
<p>This is a demo: any user name signs in, and there are no passwords.</p>""")

/// POST /login: signs the session in as the posted user name (a demo: no password).
let login: HttpHandler =
    withForm (fun form ->
        Session.handler (fun session next ctx -> task {
            let user = field "user" form
            let fresh = field "fresh" form
            if user = "" || user.Length > 64 then
                return!
                    (setStatusCode 400 >=> page "Sign in" """<p>A user name (at most 64 characters) is needed. <a href="/login">Try again</a></p>""") next ctx
            else
                // Signing in moves the session to a new id (against fixation) and keeps its data. Data planted in it
                // before the login (a fixated session, a shared computer) would then follow the user in: a login that
                // must start clean destroys the session first, and signs in a new, empty one in the same request.
                if fresh = "on" then do! Session.destroyAsync session
                match! Session.signInAsync user session with
                | SignInResult.SignedIn -> return! redirectTo false "/me" next ctx
                | _ ->
                    let message = $"""<p>{encode user} is signed in on too many devices. <a href="/login">Back</a></p>"""
                    return! (setStatusCode 409 >=> page "Sign in" message) next ctx
        }))

/// GET /me: who is signed in.
let me: HttpHandler =
    Session.handler (fun session ->
        match Session.userId session with
        | Some user ->
            page
                "Your account"
                $"""<p>Signed in as <b id="user">{encode user}</b>.</p>
<p><a href="/devices">Your devices</a> · <a href="/">Counter</a> · <a href="/session">Session data</a></p>
<p>{postButton "/logout" [] "Sign out"}</p>"""
        | None -> page "Your account" """<p id="status">Not signed in.</p><p><a href="/login">Sign in</a></p>""")

/// POST /logout: destroys the session (it leaves the user's device list in the same store step) and expires the cookie.
let logout: HttpHandler =
    Session.handler (fun session next ctx -> task {
        do! Session.signOutAsync session
        return! redirectTo false "/login" next ctx
    })

let private fact (name: string) (device: Json option) =
    match device |> Option.bind (SessionPath.tryGet (SessionPath.parse name)) with
    | Some(Json.String text) -> text
    | Some(Json.Number ms) ->
        match ms.TryGetInt64() with
        | true, value -> DateTimeOffset.FromUnixTimeMilliseconds(value).ToString "u"
        | _ -> ""
    | _ -> ""

/// GET /devices: the user's sessions with their device facts, the current one marked, with buttons to end them.
let devices: HttpHandler =
    signedIn (fun user session next ctx -> task {
        let! sessions = Sessions.ofUserAsync user ctx
        // Pages show a session's handle (a hash of its id), never the id itself: the id is the key to the session.
        let current = SessionSummary.HandleOf session.Id
        let rows =
            sessions
            |> List.map (fun s ->
                let device = SessionPath.tryGet (SessionPath.parse SessionMeta.Device) s.Meta
                let isCurrent = s.Handle = current
                let action = if isCurrent then "<b>This device</b>" else postButton "/devices/end" [ "handle", s.Handle ] "Sign out"
                $"""<tr class="{(if isCurrent then "device current" else "device")}" data-handle="{encode s.Handle}">
<td>{encode (fact "userAgent" device)}</td><td>{encode (fact "ip" device)}</td><td>{encode (fact "signedIn" device)}</td>
<td>{s.LastSeen.ToString "u"}</td><td>{action}</td></tr>""")
            |> String.concat "\n"
        let others = if sessions.Length > 1 then $"""<p>{postButton "/devices/end-others" [] "Sign out all other devices"}</p>""" else ""
        let body =
            $"""<p>Signed in as <b id="user">{encode user}</b> on {sessions.Length} device(s).</p>
<table><thead><tr><th>Browser</th><th>Address</th><th>Signed in</th><th>Last seen</th><th></th></tr></thead>
<tbody>
{rows}
</tbody></table>
{others}
<p><a href="/me">Your account</a></p>"""
        return! page "Your devices" body next ctx
    })

/// POST /devices/end: ends one of the user's sessions, by the handle the devices page sent. Ending this device's own
/// session is a sign-out.
let endDevice: HttpHandler =
    withForm (fun form ->
        signedIn (fun user session next ctx -> task {
            let handle = field "handle" form
            if handle = SessionSummary.HandleOf session.Id then
                do! Session.signOutAsync session
                return! redirectTo false "/login" next ctx
            else
                // The user's id scopes the lookup: a handle of someone else's session ends nothing.
                let! _ = Sessions.endByHandleAsync user handle ctx
                return! redirectTo false "/devices" next ctx
        }))

/// POST /devices/end-others: ends every session of the user but this one ("sign out other devices").
let endOthers: HttpHandler =
    signedIn (fun _ session next ctx -> task {
        let! _ = Sessions.endOthersAsync session ctx
        return! redirectTo false "/devices" next ctx
    })

/// The account routes.
let routes: HttpHandler list = [
    GET >=> route "/login" >=> loginForm
    POST >=> route "/login" >=> login
    GET >=> route "/me" >=> me
    POST >=> route "/logout" >=> logout
    GET >=> route "/devices" >=> devices
    POST >=> route "/devices/end" >=> endDevice
    POST >=> route "/devices/end-others" >=> endOthers
]
