using System.Text.Json.Nodes;

namespace Dispatcher.Protocol;

/// <summary>
/// A way to log in over the in-band protocol: the <c>rpc/NAME</c> request it answers (<c>auth</c> for user name and password,
/// <c>auth_ssl</c> for the key challenge, or a host's own), and how it checks the request. <see cref="ProtocolAuthenticator"/> does
/// the rest for every method alike: the failed-login throttle, issuing the token, binding the user to the connection, and the
/// reply. Register one with <c>AddLoginMethod&lt;T&gt;()</c>.
/// </summary>
public interface IProtocolLoginMethod
{
    /// <summary>Gets the name of the <c>rpc</c> request this method answers, such as <c>auth_ssl</c>.</summary>
    string RequestName { get; }

    /// <summary>Checks one login request.</summary>
    /// <param name="request">The request; <see cref="ProtocolRequest.Connection"/> tells the client's address.</param>
    /// <param name="cancellationToken">Cancelled when the connection goes away.</param>
    /// <returns>The outcome.</returns>
    ValueTask<ProtocolLoginResult> LoginAsync(ProtocolRequest request, CancellationToken cancellationToken);
}

/// <summary>The outcome of a login request.</summary>
public sealed class ProtocolLoginResult
{
    private ProtocolLoginResult(DispatcherUser? user, JsonNode? challenge, string? message, bool invalid)
    {
        User = user;
        Challenge = challenge;
        Message = message;
        IsInvalid = invalid;
    }

    /// <summary>Gets the user who logged in, or <see langword="null"/>.</summary>
    public DispatcherUser? User { get; }

    /// <summary>Gets the reply of a first stage (a challenge the client must answer), or <see langword="null"/>.</summary>
    public JsonNode? Challenge { get; }

    /// <summary>Gets the message of a failure or an invalid request.</summary>
    public string? Message { get; }

    /// <summary>Gets a value indicating whether the request was malformed (a 400 that does not count as a failed login).</summary>
    public bool IsInvalid { get; }

    /// <summary>Gets the user name a failed login tried, when the method knows it: the throttle counts failures per user too.</summary>
    internal string? UserName { get; private init; }

    /// <summary>The user is logged in: the authenticator issues a token and replies <c>["TOKEN", seconds]</c>.</summary>
    /// <param name="user">The user; its access must not be <see cref="DispatcherAccess.None"/>.</param>
    /// <returns>The outcome.</returns>
    public static ProtocolLoginResult Succeeded(DispatcherUser user)
    {
        ArgumentNullException.ThrowIfNull(user);
        if (user.Access == DispatcherAccess.None)
        {
            throw new ArgumentException("A logged-in user needs Read or Full access.", nameof(user));
        }

        return new(user, null, null, false);
    }

    /// <summary>The credentials are wrong: a 401 that counts toward the failed-login throttle.</summary>
    /// <param name="message">What the client is told.</param>
    /// <returns>The outcome.</returns>
    public static ProtocolLoginResult Failed(string message) => new(null, null, message ?? throw new ArgumentNullException(nameof(message)), false);

    internal static ProtocolLoginResult FailedFor(string userName, string message) => new(null, null, message, false) { UserName = userName };

    /// <summary>The first stage of a two-stage login: reply with <paramref name="challenge"/> and wait for the answer.</summary>
    /// <param name="challenge">The reply's <c>args</c>.</param>
    /// <returns>The outcome.</returns>
    public static ProtocolLoginResult Continue(JsonNode challenge) => new(null, challenge ?? throw new ArgumentNullException(nameof(challenge)), null, false);

    /// <summary>The request is malformed: a 400.</summary>
    /// <param name="message">What was wrong.</param>
    /// <returns>The outcome.</returns>
    public static ProtocolLoginResult Invalid(string message) => new(null, null, message ?? throw new ArgumentNullException(nameof(message)), true);
}
