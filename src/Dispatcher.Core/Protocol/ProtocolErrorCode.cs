namespace Dispatcher.Protocol;

/// <summary>
/// The codes of the protocol's error envelope (<c>{"namespace": "error", "name": "error", "args": {"code": "401", ...}}</c>). They are
/// HTTP status codes: the REST transport answers with the same status, and the envelope carries the number as a string, as the
/// sysadm server did.
/// </summary>
public enum ProtocolErrorCode
{
    /// <summary>Malformed, missing or wrong-typed input, or an unknown action.</summary>
    BadRequest = 400,

    /// <summary>Not authenticated, or a login failed.</summary>
    Unauthorized = 401,

    /// <summary>Authenticated without the access the request needs.</summary>
    Forbidden = 403,

    /// <summary>No route for the request's <c>namespace/name</c>.</summary>
    NotFound = 404,

    /// <summary>The request is larger than the transport accepts.</summary>
    PayloadTooLarge = 413,

    /// <summary>The REST body is not JSON.</summary>
    UnsupportedMediaType = 415,

    /// <summary>A handler failed; the details are in the server's log, never on the wire.</summary>
    InternalError = 500,

    /// <summary>The server is stopping and accepts no new jobs.</summary>
    ServiceUnavailable = 503,
}
