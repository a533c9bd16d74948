namespace Sesame

open System
open System.Collections.Generic
open System.Security.Claims
open System.Threading.Tasks
open Microsoft.AspNetCore.Authentication
open Microsoft.AspNetCore.Authentication.Cookies
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.Logging
open Microsoft.Extensions.Options

/// <summary>
/// How <c>BindToAuthentication</c> ties Sesame sessions to ASP.NET Core cookie authentication.
/// </summary>
/// <remarks>
/// Defaults: the user id is the principal's <see cref="F:System.Security.Claims.ClaimTypes.NameIdentifier"/> claim;
/// the bound scheme is the one that authenticates requests (<c>AuthenticationOptions.DefaultAuthenticateScheme</c>, else
/// <c>DefaultScheme</c>; with neither set, every cookie scheme); an auth cookie whose session has ended is rejected.
/// </remarks>
[<Sealed; AllowNullLiteral>]
type SesameAuthenticationOptions() =

    /// <summary>The default claim type of the user id: <see cref="F:System.Security.Claims.ClaimTypes.NameIdentifier"/>.</summary>
    static member DefaultUserIdClaimType = ClaimTypes.NameIdentifier

    /// <summary>The claim whose value the session is bound to at sign-in (the user id <c>Sessions.ofUserAsync</c> and
    /// <c>Sessions.endAllAsync</c> take). Default <see cref="F:System.Security.Claims.ClaimTypes.NameIdentifier"/>.</summary>
    member val UserIdClaimType = SesameAuthenticationOptions.DefaultUserIdClaimType with get, set

    /// <summary>The cookie authentication schemes to bind. Empty (the default): the scheme that authenticates requests,
    /// <c>AuthenticationOptions.DefaultAuthenticateScheme</c>, else <c>DefaultScheme</c> (<c>"Cookies"</c> after
    /// <c>AddAuthentication("Cookies")</c>, <c>"Identity.Application"</c> with ASP.NET Core Identity, never Identity's
    /// external or two-factor cookies); when the app sets neither, every cookie scheme.</summary>
    member val Schemes: ICollection<string> = List<string>() with get

    /// <summary>Whether an auth cookie issued with a session is rejected (and signed out) once that session has ended:
    /// signed out elsewhere, ended by <c>Sessions.endAllAsync</c> ("sign out everywhere"), expired or evicted.
    /// Default <c>true</c>.</summary>
    member val RejectEndedSessions = true with get, set

/// <summary>
/// A sign-in that would pass <see cref="P:Sesame.SesameOptions.MaxSessionsPerUser"/> while
/// <see cref="P:Sesame.SesameOptions.UserLimitPolicy"/> is <c>Refuse</c>: the sign-in fails (no auth cookie is issued,
/// the session is as it was). Catch it around <c>HttpContext.SignInAsync</c> to tell the user to sign out a device.
/// </summary>
type SessionUserLimitException(userId: string, limit: int) =
    inherit
        InvalidOperationException(
            $"The user already has {limit} sessions (SesameOptions.MaxSessionsPerUser) and the policy refuses more: the sign-in was refused."
        )

    /// <summary>The user whose sign-in was refused.</summary>
    member _.UserId = userId

    /// <summary>The most sessions a user may have.</summary>
    member _.Limit = limit

/// What the bound cookie events do with the request's session, shared by every bound scheme.
[<Sealed>]
type internal SesameAuthenticationBinding(options: IOptions<SesameAuthenticationOptions>, sesame: IOptions<SesameOptions>, loggers: ILoggerFactory) =
    let logger = loggers.CreateLogger "Sesame.Authentication"

    static let sessionEnded =
        LoggerMessage.Define<string>(
            LogLevel.Information,
            EventId(40, "AuthenticationSessionEnded"),
            "The {Scheme} cookie was issued with a session that has ended (signed out elsewhere, ended, expired or evicted): the principal is rejected and the cookie signed out."
        )

    /// The auth ticket's property that records the user its session was bound to at sign-in.
    static member BoundUserKey = ".sesame.user"

    member _.Options = options.Value

    static member private SessionOf(context: HttpContext, what: string) =
        match RequestFeatures.get<SessionHandle> context.Features with
        | null ->
            raise (
                InvalidOperationException(
                    $"Cannot {what}: the request has no Sesame session, which BindToAuthentication ties to the auth cookie. Call app.UseSesame() before app.UseAuthentication() (and before the endpoints that sign in and out)."
                )
            )
        | session -> session

    /// Signing in: the session moves to a new id bound to the user (against fixation), and the ticket records the user.
    member this.SigningInAsync(context: CookieSigningInContext) : Task =
        let claimType = this.Options.UserIdClaimType
        let userId =
            match context.Principal with
            | null -> null
            | principal ->
                match principal.FindFirst claimType with
                | null -> null
                | claim -> claim.Value
        if String.IsNullOrEmpty userId then
            raise (
                InvalidOperationException(
                    $"Cannot bind the session to the principal signing in with scheme '{context.Scheme.Name}': it has no '{claimType}' claim (SesameAuthenticationOptions.UserIdClaimType). Add the user's id as that claim, or set the claim type the user id is in."
                )
            )
        let session = SesameAuthenticationBinding.SessionOf(context.HttpContext, "sign in")
        task {
            do! session.LoadAsync()
            let undoSwitch =
                match session.UserId with
                // Another user's data never carries over to this one (a shared device, an account switch): not the tree,
                // not the flash values earlier requests left, not the ISession id an app may key rows by.
                | Some bound when bound <> userId ->
                    let flash = FlashState.Of session
                    let undoSession, undoFlash = session.Savepoint(), flash.Savepoint()
                    session.Clear()
                    flash.EndIncoming()
                    SesameAspNetSession.RenewId session
                    // Only while the handle still holds bob's session: one that ended meanwhile stays ended.
                    fun () -> if undoSession () then undoFlash ()
                | _ -> ignore
            match! session.SignInAsync userId with
            | SignInResult.LimitReached ->
                // Refused: the user still signed in keeps the session as it was, should the app catch the exception.
                undoSwitch ()
                raise (SessionUserLimitException(userId, sesame.Value.MaxSessionsPerUser))
            | _ -> context.Properties.Items[SesameAuthenticationBinding.BoundUserKey] <- userId
        }

    /// Signing out: the session ends with the auth cookie.
    member _.SigningOutAsync(context: CookieSigningOutContext) : Task =
        let session = SesameAuthenticationBinding.SessionOf(context.HttpContext, "sign out")
        // Not loaded first: a load the client's hang-up cancels would stop the sign-out; the id is all it needs.
        session.DestroyAsync()

    /// Validating a cookie issued with a session: the session must still be the signed-in one of the same user.
    member this.ValidateAsync(context: CookieValidatePrincipalContext) : Task =
        match context.Properties.Items.TryGetValue SesameAuthenticationBinding.BoundUserKey with
        | true, boundUser when this.Options.RejectEndedSessions && not (String.IsNullOrEmpty boundUser) && not (isNull context.Principal) ->
            let session = SesameAuthenticationBinding.SessionOf(context.HttpContext, "validate the auth cookie")
            task {
                // Loaded without counting as a use: a request that leaves its session alone gets no no-cache headers.
                do! session.PreloadAsync()
                if session.UserId <> Some boundUser then
                    sessionEnded.Invoke(logger, context.Scheme.Name, null)
                    context.RejectPrincipal()
                    // Also expires the session cookie, through SigningOut: the stale id is dropped.
                    do! context.HttpContext.SignOutAsync(context.Scheme.Name)
            }
        | _ -> Task.CompletedTask

/// <summary>The cookie events of a bound scheme: the app's own (<paramref name="inner"/>) first, then Sesame's, so that
/// a principal the app changes while signing in is the one bound.</summary>
type internal SesameCookieEvents(inner: CookieAuthenticationEvents, binding: SesameAuthenticationBinding) =
    inherit CookieAuthenticationEvents()

    /// The app's events this wraps.
    member _.Inner = inner

    // The app's events run first; then this object's own callbacks (no-ops unless something set them on it after
    // Sesame wrapped the events); then Sesame's step.
    override this.ValidatePrincipal(context) = task {
        do! inner.ValidatePrincipal context
        do! this.OnValidatePrincipal.Invoke context
        if not (isNull context.Principal) then do! binding.ValidateAsync context
    }

    override this.SigningIn(context) = task {
        do! inner.SigningIn context
        do! this.OnSigningIn.Invoke context
        do! binding.SigningInAsync context
    }

    override this.SigningOut(context) = task {
        do! inner.SigningOut context
        do! this.OnSigningOut.Invoke context
        do! binding.SigningOutAsync context
    }

    override this.SignedIn(context) = task {
        do! inner.SignedIn context
        do! this.OnSignedIn.Invoke context
    }

    override this.CheckSlidingExpiration(context) = task {
        do! inner.CheckSlidingExpiration context
        do! this.OnCheckSlidingExpiration.Invoke context
    }

    // Redirects are the app's alone: this object's default callbacks would redirect a second time.
    override _.RedirectToLogin(context) = inner.RedirectToLogin context
    override _.RedirectToLogout(context) = inner.RedirectToLogout context
    override _.RedirectToReturnUrl(context) = inner.RedirectToReturnUrl context
    override _.RedirectToAccessDenied(context) = inner.RedirectToAccessDenied context

/// <summary>The bound events of a scheme whose events the app gives as a type (<c>EventsType</c>): resolved from the
/// request's services, as the app's own type would have been, wrapping an instance of it.</summary>
type internal ResolvedSesameCookieEvents<'events when 'events :> CookieAuthenticationEvents>(inner: 'events, binding: SesameAuthenticationBinding) =
    inherit SesameCookieEvents(inner :> CookieAuthenticationEvents, binding)

/// Wraps the events of each bound cookie scheme, after the app has configured them (whatever the order of its calls).
[<Sealed>]
type internal SesameCookieBindingSetup(authentication: IOptions<AuthenticationOptions>, binding: SesameAuthenticationBinding) =

    let binds (scheme: string) =
        let explicitSchemes = binding.Options.Schemes
        if explicitSchemes.Count > 0 then
            explicitSchemes.Contains scheme
        else
            let app = authentication.Value
            match Option.ofObj app.DefaultAuthenticateScheme |> Option.orElse (Option.ofObj app.DefaultScheme) with
            | Some chosen -> String.Equals(chosen, scheme, StringComparison.Ordinal)
            | None -> true

    interface IPostConfigureOptions<CookieAuthenticationOptions> with
        member _.PostConfigure(name, options) =
            if not (isNull name) && binds name then
                match options.EventsType with
                | null ->
                    match options.Events with
                    | :? SesameCookieEvents -> ()
                    | null -> options.Events <- SesameCookieEvents(CookieAuthenticationEvents(), binding)
                    | events -> options.Events <- SesameCookieEvents(events, binding)
                | eventsType when typeof<SesameCookieEvents>.IsAssignableFrom eventsType -> ()
                | eventsType when not (typeof<CookieAuthenticationEvents>.IsAssignableFrom eventsType) ->
                    raise (
                        InvalidOperationException(
                            $"The cookie scheme '{name}' has EventsType {eventsType.FullName}, which is not a CookieAuthenticationEvents: Sesame cannot bind the session to it."
                        )
                    )
                | eventsType -> options.EventsType <- typedefof<ResolvedSesameCookieEvents<CookieAuthenticationEvents>>.MakeGenericType eventsType

namespace Microsoft.Extensions.DependencyInjection

open System
open System.Runtime.CompilerServices
open Microsoft.AspNetCore.Authentication.Cookies
open Microsoft.Extensions.DependencyInjection.Extensions
open Microsoft.Extensions.Options
open Sesame

/// <summary>Binding Sesame sessions to ASP.NET Core cookie authentication.</summary>
[<Extension; AbstractClass; Sealed>]
type SesameAuthenticationExtensions =

    /// <summary>
    /// Binds the request's session to cookie authentication, so that the app needs no session code at sign-in and
    /// sign-out: <c>HttpContext.SignInAsync</c> moves the session to a new id bound to the user (against session
    /// fixation; its data is kept, but a session bound to another user is emptied first: its tree, the flash values
    /// earlier requests left, and its ISession id, which is renewed) and lists it among the user's
    /// sessions; <c>HttpContext.SignOutAsync</c> destroys it; and an auth cookie issued with a session that has since
    /// ended (<c>Sessions.endAllAsync</c>, "sign out everywhere", a sign-out on the device, expiry, eviction) is
    /// rejected and signed out on its next request.
    /// </summary>
    /// <remarks>
    /// <para>It is an extension of Sesame's builder rather than of <c>AddCookie</c>, because it is Sesame's behaviour the
    /// app opts into, it works whatever the order of <c>AddSesame</c> and <c>AddAuthentication</c>, and one call binds the
    /// right scheme by default (the one that authenticates requests; see
    /// <see cref="P:Sesame.SesameAuthenticationOptions.Schemes"/>). It changes no cookie options: it wraps each bound
    /// scheme's events (<c>options.Events</c>, or the app's <c>EventsType</c>, which it still resolves from the request's
    /// services) when the options are built, and the app's own handlers run first.</para>
    /// <para>The pipeline must give requests a session before authentication runs: <c>app.UseSesame()</c> before
    /// <c>app.UseAuthentication()</c>; otherwise signing in, out, or validating a bound cookie throws
    /// <see cref="T:System.InvalidOperationException"/> saying so. Validating a bound cookie loads the session (one store
    /// read per authenticated request, shared with the handler's). A signed-in user stays signed in only as long as the
    /// session lives: set <see cref="P:Sesame.SesameOptions.IdleTimeout"/> to the sign-in lifetime the app wants. Auth
    /// cookies issued before the binding was turned on carry no session and are left alone.</para>
    /// <para>A sign-in past <see cref="P:Sesame.SesameOptions.MaxSessionsPerUser"/> with the <c>Refuse</c> policy throws
    /// <see cref="T:Sesame.SessionUserLimitException"/> from <c>SignInAsync</c>, and no auth cookie is issued.</para>
    /// </remarks>
    /// <param name="builder">Sesame's registration.</param>
    /// <param name="configure">Sets the user id's claim type, the bound schemes, whether ended sessions reject their
    /// auth cookie; may be null.</param>
    /// <returns>This builder, for chaining.</returns>
    [<Extension>]
    static member BindToAuthentication(builder: SesameBuilder, configure: Action<SesameAuthenticationOptions>) : SesameBuilder =
        if obj.ReferenceEquals(builder, null) then nullArg (nameof builder)
        let services = builder.Services
        services.AddOptions<SesameAuthenticationOptions>() |> ignore
        if not (isNull configure) then services.Configure<SesameAuthenticationOptions>(configure) |> ignore
        services.TryAddSingleton<SesameAuthenticationBinding>()
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IPostConfigureOptions<CookieAuthenticationOptions>, SesameCookieBindingSetup>())
        // The wrapper of an app's EventsType, resolved per request as that type is.
        services.TryAddTransient(typedefof<ResolvedSesameCookieEvents<CookieAuthenticationEvents>>)
        builder

    /// <summary>Binds the request's session to cookie authentication with the default settings: the
    /// <c>NameIdentifier</c> claim, the scheme that authenticates requests (see the other overload).</summary>
    /// <param name="builder">Sesame's registration.</param>
    /// <returns>This builder, for chaining.</returns>
    [<Extension>]
    static member BindToAuthentication(builder: SesameBuilder) : SesameBuilder = SesameAuthenticationExtensions.BindToAuthentication(builder, null)
