using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Dispatcher.Protocol;

/// <summary>
/// <c>rpc/auth {"username", "password"}</c>, and HTTP Basic: local login (an empty password from loopback, for the users
/// <see cref="LocalLoginOptions"/> lists, when enabled), else the host's <see cref="IDispatcherAuthenticator"/>.
/// </summary>
internal sealed class PasswordLoginMethod(IServiceProvider services, IOptionsMonitor<LocalLoginOptions> local) : IProtocolLoginMethod
{
    private readonly IDispatcherAuthenticator? _authenticator = services.GetService<IDispatcherAuthenticator>();

    public string RequestName => "auth";

    public async ValueTask<ProtocolLoginResult> LoginAsync(ProtocolRequest request, CancellationToken cancellationToken)
    {
        if (request.Args.ValueKind != JsonValueKind.Object)
        {
            return ProtocolLoginResult.Invalid("rpc/auth needs args {\"username\": \"...\", \"password\": \"...\"}.");
        }

        if (!JsonArgs.TryGetString(request.Args, "username", out var username, out var problem)
            || !JsonArgs.TryGetString(request.Args, "password", out var password, out problem))
        {
            return ProtocolLoginResult.Invalid(problem);
        }

        return await CheckAsync(request.Connection, username, password, cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask<ProtocolLoginResult> CheckAsync(ProtocolConnection connection, string username, string password, CancellationToken cancellationToken)
    {
        if (password.Length == 0 && local.CurrentValue is { Enabled: true } options)
        {
            if (connection.IsLoopback && options.Users.TryGetValue(username, out var access) && access != DispatcherAccess.None)
            {
                return ProtocolLoginResult.Succeeded(new DispatcherUser(username, access));
            }
        }

        if (_authenticator is null)
        {
            return ProtocolLoginResult.FailedFor(username, "Authentication by user name and password is not configured on this server.");
        }

        var user = await _authenticator.AuthenticateAsync(username, password, cancellationToken).ConfigureAwait(false);
        return user is { Access: not DispatcherAccess.None }
            ? ProtocolLoginResult.Succeeded(user)
            : ProtocolLoginResult.FailedFor(username, "Invalid user name or password.");
    }
}
