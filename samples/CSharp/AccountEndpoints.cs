using System.Net;
using System.Text;

namespace Sesame.Samples.CSharp;

/// <summary>
/// Login, logout and a "your devices" page, with Sesame's own sign-in.
/// </summary>
/// <remarks>
/// <para>A DEMO: any user name signs in, and no password is asked or stored. A real app checks the credentials first and
/// then calls the same <see cref="SesameSession.SignInAsync"/> with the user's stable id (never a display name).</para>
/// <para>The forms post without antiforgery tokens (the handlers read the form themselves, so minimal APIs add no
/// antiforgery check). Sesame's cookie is SameSite=Lax, so a browser does not send it with a cross-site POST, which
/// blocks the classic forged form; a real app still adds <c>AddAntiforgery</c>/<c>UseAntiforgery</c> and a token in
/// each form, against older browsers and same-site attackers.</para>
/// </remarks>
public static class AccountEndpoints
{
    /// <summary>Maps <c>/login</c>, <c>/me</c>, <c>/logout</c> and the <c>/devices</c> endpoints.</summary>
    public static IEndpointRouteBuilder MapAccount(this IEndpointRouteBuilder app)
    {
        app.MapGet("/login", LoginForm);
        app.MapPost("/login", Login);
        app.MapGet("/me", Me);
        app.MapPost("/logout", Logout);
        app.MapGet("/devices", Devices);
        app.MapPost("/devices/end", EndDevice);
        app.MapPost("/devices/end-others", EndOthers);
        return app;
    }

    private static string Encode(string? text) => WebUtility.HtmlEncode(text ?? "");

    private static IResult Page(string title, string body, int status = 200) =>
        Results.Content(
            $$"""
            <!doctype html>
            <html><head><meta charset="utf-8"><title>{{Encode(title)}}</title>
            <style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left} tr.current{background:#efe}</style>
            </head><body><h1>{{Encode(title)}}</h1>
            {{body}}
            </body></html>
            """,
            "text/html; charset=utf-8",
            Encoding.UTF8,
            status);

    /// <summary>A form that posts to a path with one button (and hidden fields).</summary>
    private static string PostButton(string action, string label, params (string Name, string Value)[] hidden)
    {
        var fields = string.Concat(hidden.Select(field => $"""<input type="hidden" name="{Encode(field.Name)}" value="{Encode(field.Value)}">"""));
        return $"""<form method="post" action="{Encode(action)}" style="display:inline">{fields}<button type="submit">{Encode(label)}</button></form>""";
    }

    /// <summary>A field of the posted form, trimmed, or "" (also when the request has no form).</summary>
    private static async Task<string> FormValue(HttpContext context, string name)
    {
        if (!context.Request.HasFormContentType)
        {
            return "";
        }

        var form = await context.Request.ReadFormAsync(context.RequestAborted);
        return form[name].ToString().Trim();
    }

    /// <summary>GET /login: the login form, or who is signed in.</summary>
    private static IResult LoginForm(SesameSession session) =>
        session.UserId is { } user
            ? Page("Sign in", $"""<p>You are already signed in as <b id="user">{Encode(user)}</b>. <a href="/me">Your account</a></p>""")
            : Page("Sign in", """
                <p id="status">Not signed in.</p>
                <form method="post" action="/login">
                <p><label>User name <input name="user" required maxlength="64" autofocus></label></p>
                <p><label><input type="checkbox" name="fresh" value="on"> Start with an empty session (drop what this browser's session holds)</label></p>
                <p><button type="submit">Sign in</button></p>
                </form>
                <p>This is a demo: any user name signs in, and there are no passwords.</p>
                """);

    /// <summary>POST /login: signs the session in as the posted user name (a demo: no password).</summary>
    private static async Task<IResult> Login(HttpContext context, SesameSession session)
    {
        var user = await FormValue(context, "user");
        if (user.Length is 0 or > 64)
        {
            return Page("Sign in", """<p>A user name (at most 64 characters) is needed. <a href="/login">Try again</a></p>""", 400);
        }

        // Signing in moves the session to a new id (against fixation) and keeps its data. Data planted in it before
        // the login (a fixated session, a shared computer) would then follow the user in: a login that must start
        // clean destroys the session first, and signs in a new, empty one in the same request.
        if (await FormValue(context, "fresh") == "on")
        {
            await session.DestroyAsync();
        }

        return await session.SignInAsync(user) == SignInResult.SignedIn
            ? Results.Redirect("/me")
            : Page("Sign in", $"""<p>{Encode(user)} is signed in on too many devices. <a href="/login">Back</a></p>""", 409);
    }

    /// <summary>GET /me: who is signed in.</summary>
    private static IResult Me(SesameSession session) =>
        session.UserId is { } user
            ? Page("Your account", $"""
                <p>Signed in as <b id="user">{Encode(user)}</b>.</p>
                <p><a href="/devices">Your devices</a> · <a href="/">Counter</a> · <a href="/session">Session data</a></p>
                <p>{PostButton("/logout", "Sign out")}</p>
                """)
            : Page("Your account", """<p id="status">Not signed in.</p><p><a href="/login">Sign in</a></p>""");

    /// <summary>POST /logout: destroys the session (it leaves the user's device list in the same store step) and expires the cookie.</summary>
    private static async Task<IResult> Logout(SesameSession session)
    {
        await session.SignOutAsync();
        return Results.Redirect("/login");
    }

    /// <summary>A device fact (<c>userAgent</c>, <c>ip</c>, <c>signedIn</c>) of a session, as text.</summary>
    private static string Fact(SessionSummary summary, string name)
    {
        var value = JsonModule.toJsonNode(summary.Meta)?[SessionMeta.Device]?[name];
        if (value is null)
        {
            return "";
        }

        return value.GetValueKind() switch
        {
            System.Text.Json.JsonValueKind.String => value.GetValue<string>(),
            System.Text.Json.JsonValueKind.Number => DateTimeOffset.FromUnixTimeMilliseconds(value.GetValue<long>()).ToString("u"),
            _ => "",
        };
    }

    /// <summary>GET /devices: the user's sessions with their device facts, the current one marked, with buttons to end them.</summary>
    private static async Task<IResult> Devices(HttpContext context, SesameSession session)
    {
        if (session.UserId is not { } user)
        {
            return Results.Redirect("/login");
        }

        var sessions = await context.GetUserSessionsAsync(user);
        // Pages show a session's handle (a hash of its id), never the id itself: the id is the key to the session.
        var current = SessionSummary.HandleOf(session.Id!);
        var rows = new StringBuilder();
        foreach (var s in sessions)
        {
            var isCurrent = s.Handle == current;
            var action = isCurrent ? "<b>This device</b>" : PostButton("/devices/end", "Sign out", ("handle", s.Handle));
            rows.Append($"""
                <tr class="{(isCurrent ? "device current" : "device")}" data-handle="{Encode(s.Handle)}">
                <td>{Encode(Fact(s, "userAgent"))}</td><td>{Encode(Fact(s, "ip"))}</td><td>{Encode(Fact(s, "signedIn"))}</td>
                <td>{s.LastSeen:u}</td><td>{action}</td></tr>

                """);
        }

        var others = sessions.Count > 1 ? $"<p>{PostButton("/devices/end-others", "Sign out all other devices")}</p>" : "";
        return Page("Your devices", $"""
            <p>Signed in as <b id="user">{Encode(user)}</b> on {sessions.Count} device(s).</p>
            <table><thead><tr><th>Browser</th><th>Address</th><th>Signed in</th><th>Last seen</th><th></th></tr></thead>
            <tbody>
            {rows}
            </tbody></table>
            {others}
            <p><a href="/me">Your account</a></p>
            """);
    }

    /// <summary>POST /devices/end: ends one of the user's sessions, by the handle the devices page sent. Ending this
    /// device's own session is a sign-out.</summary>
    private static async Task<IResult> EndDevice(HttpContext context, SesameSession session)
    {
        if (session.UserId is not { } user)
        {
            return Results.Redirect("/login");
        }

        var handle = await FormValue(context, "handle");
        if (handle == SessionSummary.HandleOf(session.Id!))
        {
            await session.SignOutAsync();
            return Results.Redirect("/login");
        }

        // The user's id scopes the lookup: a handle of someone else's session ends nothing.
        await context.EndUserSessionAsync(user, handle);
        return Results.Redirect("/devices");
    }

    /// <summary>POST /devices/end-others: ends every session of the user but this one ("sign out other devices").</summary>
    private static async Task<IResult> EndOthers(HttpContext context, SesameSession session)
    {
        if (session.UserId is null)
        {
            return Results.Redirect("/login");
        }

        await context.EndOtherSessionsAsync();
        return Results.Redirect("/devices");
    }
}
