namespace Sesame

/// <summary>
/// How Sesame protects the session ticket (the session id and when the session was created) in the cookie or header
/// that carries it. Either way a client can neither forge a ticket nor change one, and a request that sends anything
/// else gets no session. Sesame reads both formats whichever it writes.
/// </summary>
type TicketFormat =
    /// <summary>
    /// The default: the ticket in clear, sealed with HMAC-SHA256 (128-bit tag) under a random 256-bit key of the app's.
    /// The key travels with every ticket it sealed, protected by Data Protection, so any instance that shares the key
    /// ring opens it; a key is opened once (and checked again each minute) and then each ticket costs one MAC, about
    /// 1 µs, where Data Protection costs about 10 µs to protect a ticket and 8 µs to open one. A key seals for an hour,
    /// then the next ticket gets a new one. Revoking the Data Protection key that protects a seal key refuses every
    /// ticket it sealed within a minute of Data Protection refusing the key on an instance (Data Protection reloads
    /// its key ring in the background). The client can read its ticket: its session id, when the session was created,
    /// and for a signed-in session the id's first character, which is 6 bits of the SHA-256 of the user id. A Sesame
    /// from before this format reads only protected tickets: during a rolling upgrade from one, choose
    /// <see cref="F:Sesame.TicketFormat.Protected"/> until no instance of it is left; an app that may roll back to
    /// one should choose it first, as such a Sesame starts a new session for every sealed ticket.
    /// </summary>
    | Sealed = 0
    /// <summary>Each ticket encrypted and signed by Data Protection on its own (its text starts with <c>CfDJ8</c>,
    /// Data Protection's header): the only format a Sesame from before sealed tickets reads. Its id is not visible in
    /// it.</summary>
    | Protected = 1
