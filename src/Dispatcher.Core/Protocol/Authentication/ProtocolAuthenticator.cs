using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Options;

namespace Dispatcher.Protocol;

/// <summary>
/// Owns authentication for every transport: the login methods (<c>rpc/auth</c>, <c>rpc/auth_ssl</c>, a host's own), tokens
/// (<c>rpc/auth_token</c> and HTTP Bearer), HTTP Basic, the host's principal mapping, and the failed-login throttle they all share.
/// </summary>
public sealed class ProtocolAuthenticator
{
    /// <summary>The message (and WebSocket close reason) of an address blocked after too many failed logins, as sysadm sent it.</summary>
    public const string TooManyFailures = "Too Many Authorization Failures - Try again later";

    private readonly TokenService _tokens;
    private readonly LoginThrottle _throttle;
    private readonly PasswordLoginMethod _password;
    private readonly DispatcherProtocolOptions _options;

    internal ProtocolAuthenticator(TokenService tokens, LoginThrottle throttle, PasswordLoginMethod password, IOptions<DispatcherProtocolOptions> options)
    {
        _tokens = tokens;
        _throttle = throttle;
        _password = password;
        _options = options.Value;
    }

    /// <summary>
    /// Applies an HTTP <c>Authorization</c> header (Basic or Bearer) to a connection. Returns <see langword="null"/> to go on (also when
    /// there is no header: requests that need a user then get 401), or the error to answer.
    /// </summary>
    /// <param name="connection">The request's connection.</param>
    /// <param name="authorization">The header's value, or <see langword="null"/>.</param>
    /// <param name="cancellationToken">Cancelled when the request is aborted.</param>
    /// <returns>The error, or <see langword="null"/>.</returns>
    public async ValueTask<ProtocolResult?> AuthenticateHeaderAsync(ProtocolConnection connection, string? authorization, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        if (string.IsNullOrEmpty(authorization))
        {
            return null;
        }

        if (_throttle.IsBlocked(connection.RemoteAddress))
        {
            return Blocked();
        }

        if (!AuthenticationHeaderValue.TryParse(authorization, out var value) || string.IsNullOrEmpty(value.Parameter))
        {
            return Fail(connection, "Malformed Authorization header.", null);
        }

        if (value.Scheme.Equals("Basic", StringComparison.OrdinalIgnoreCase))
        {
            string decoded;
            try
            {
                decoded = new UTF8Encoding(false, true).GetString(Convert.FromBase64String(value.Parameter));
            }
            catch (Exception ex) when (ex is FormatException or ArgumentException)
            {
                return Fail(connection, "Malformed Basic credentials: not base64 of UTF-8 'user:password'.", null);
            }

            var colon = decoded.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0)
            {
                return Fail(connection, "Malformed Basic credentials: no ':' between user and password.", null);
            }

            var name = decoded[..colon];
            if (_throttle.IsBlocked(connection.RemoteAddress, name))
            {
                return Blocked();
            }

            var outcome = await _password.CheckAsync(connection, name, decoded[(colon + 1)..], cancellationToken).ConfigureAwait(false);
            if (outcome.User is not { } user)
            {
                return Fail(connection, outcome.Message ?? "Invalid user name or password.", name);
            }

            // A success erases no failure: one valid login between guesses would otherwise lift the limit.
            connection.User = user;
            return null;
        }

        if (value.Scheme.Equals("Bearer", StringComparison.OrdinalIgnoreCase))
        {
            if (!_tokens.TryUse(value.Parameter, out var user))
            {
                return Fail(connection, "Invalid or expired token.", null);
            }

            connection.User = user;
            connection.Token = value.Parameter;
            return null;
        }

        return ProtocolResult.Error(ProtocolErrorCode.Unauthorized, $"Unsupported Authorization scheme '{value.Scheme}'; use Basic or Bearer.");
    }

    /// <summary>What the connection may do now: its token's user while the token lives, else the host's principal mapping.</summary>
    internal DispatcherAccess Refresh(ProtocolConnection connection)
    {
        if (connection.User is { } user)
        {
            if (connection.Token is null || _tokens.TryUse(connection.Token, out _))
            {
                return user.Access;
            }

            connection.User = null;
            connection.Token = null;
        }

        if (_options.PrincipalAccess is { } map && connection.Principal?.Identity?.IsAuthenticated == true)
        {
            var access = map(connection.Principal);
            if (access != DispatcherAccess.None)
            {
                connection.User = new DispatcherUser(connection.Principal.Identity.Name ?? "(principal)", access);
                return access;
            }
        }

        return DispatcherAccess.None;
    }

    /// <summary>Runs a login method with the throttle, and binds the user and a new token to the connection.</summary>
    internal async ValueTask<ProtocolResult> LoginAsync(IProtocolLoginMethod method, ProtocolRequest request, CancellationToken cancellationToken)
    {
        var connection = request.Connection;
        if (_throttle.IsBlocked(connection.RemoteAddress))
        {
            return Blocked();
        }

        var outcome = await method.LoginAsync(request, cancellationToken).ConfigureAwait(false);
        if (outcome.IsInvalid)
        {
            return ProtocolResult.Error(ProtocolErrorCode.BadRequest, outcome.Message!);
        }

        if (outcome.Challenge is { } challenge)
        {
            return ProtocolResult.Ok(challenge);
        }

        if (outcome.User is not { } user)
        {
            EndSession(connection);
            return Fail(connection, outcome.Message ?? "Login failed.", outcome.UserName);
        }

        if (_throttle.IsBlocked(connection.RemoteAddress, user.Name))
        {
            // Even the right credentials wait out the window: guesses spread over many addresses must not lift the limit.
            EndSession(connection);
            return Blocked();
        }

        return Authenticated(connection, user, _tokens.Issue(user));
    }

    /// <summary><c>rpc/auth_token {"token"}</c>: resume a session with a token from an earlier login.</summary>
    internal ProtocolResult LoginWithToken(ProtocolRequest request)
    {
        var connection = request.Connection;
        if (_throttle.IsBlocked(connection.RemoteAddress))
        {
            return Blocked();
        }

        if (request.Args.ValueKind != JsonValueKind.Object || !JsonArgs.TryGetString(request.Args, "token", out var token, out _))
        {
            return ProtocolResult.Error(ProtocolErrorCode.BadRequest, "rpc/auth_token needs args {\"token\": \"...\"}.");
        }

        if (_tokens.TryUse(token, out var user))
        {
            return Authenticated(connection, user, token);
        }

        EndSession(connection);
        return Fail(connection, "Invalid or expired token.", null);
    }

    /// <summary><c>rpc/auth_clear</c>: forget the connection's login (its token is revoked) and its subscriptions.</summary>
    internal ProtocolResult Logout(ProtocolConnection connection)
    {
        _tokens.Revoke(connection.Token);
        EndSession(connection);
        return ProtocolResult.Ok(new JsonObject { ["auth_clear"] = "success" });
    }

    /// <summary>
    /// Gets whether a subscribed connection may still receive events: it has a user, and its token (when it has one) is neither
    /// expired nor revoked. Does not extend the token's life; called for every event, so it is a dictionary lookup.
    /// </summary>
    /// <param name="connection">The connection.</param>
    /// <returns><see langword="true"/> while the connection's login holds.</returns>
    public bool MayReceiveEvents(ProtocolConnection connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return connection.User is not null && (connection.Token is not { } token || _tokens.IsValid(token));
    }

    /// <summary>A failed login, or a logout, ends whatever the connection had: its user, its token and its event subscriptions.</summary>
    private static void EndSession(ProtocolConnection connection)
    {
        connection.User = null;
        connection.Token = null;
        connection.Dispose();
    }

    private ProtocolResult Authenticated(ProtocolConnection connection, DispatcherUser user, string token)
    {
        // A success erases no failure (see LoginThrottle).
        if (connection.Token is not null && connection.Token != token)
        {
            _tokens.Revoke(connection.Token);
        }

        connection.User = user;
        connection.Token = token;
        return ProtocolResult.Ok(new JsonArray(token, (int)_tokens.Lifetime.TotalSeconds));
    }

    private ProtocolResult Fail(ProtocolConnection connection, string message, string? user) =>
        _throttle.Fail(connection.RemoteAddress, user) ? Blocked() : ProtocolResult.Error(ProtocolErrorCode.Unauthorized, message);

    private static ProtocolResult Blocked() => ProtocolResult.ErrorAndClose(ProtocolErrorCode.Unauthorized, TooManyFailures);
}
