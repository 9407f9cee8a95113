using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Options;

namespace Dispatcher.Protocol.Routing;

/// <summary><c>rpc/identify</c>: answered before login; sysadm clients log in only once it says <c>"type": "server"</c>.</summary>
internal sealed class IdentifyHandler(IOptions<DispatcherProtocolOptions> options) : IProtocolHandler
{
    private readonly string _hostName = options.Value.HostName ?? Environment.MachineName;

    public ValueTask<ProtocolResult> HandleAsync(ProtocolRequest request, CancellationToken cancellationToken) =>
        ValueTask.FromResult(ProtocolResult.Ok(new JsonObject { ["type"] = "server", ["hostname"] = _hostName }));
}

/// <summary>
/// <c>rpc/query</c>: every listed route the connection may use, with <c>read/write</c> for a full-access connection and
/// <c>read</c> otherwise, as the sysadm server answered its clients' keep-alive query.
/// </summary>
internal sealed class QueryHandler(ProtocolRouteTable routes) : IProtocolHandler
{
    public ValueTask<ProtocolResult> HandleAsync(ProtocolRequest request, CancellationToken cancellationToken)
    {
        var access = request.Connection.Access;
        var result = new JsonObject();
        foreach (var route in routes.Routes)
        {
            if (route.ListedInQuery && access >= route.RequiredAccess && (!route.NeedsEvents || request.Connection.SupportsEvents))
            {
                result[route.Path] = access == DispatcherAccess.Full ? "read/write" : "read";
            }
        }

        return ValueTask.FromResult(ProtocolResult.Ok(result));
    }
}

/// <summary>
/// <c>events/subscribe</c> and <c>events/unsubscribe</c> with a channel name, an array of names, or the object form
/// <c>{"channels", "since", "stream", "shape"}</c> (<see cref="EventResume"/>). Unknown names, and channels the connection may not
/// read, are skipped; the reply names the last valid one (<c>{"subscribe": "system-state"}</c>, or <c>{}</c>), and a replaying
/// channel's last event goes out before the reply. The object form's reply also gives the <c>dispatcher</c> stream's id and head
/// (<c>"stream"</c>, <c>"seq"</c>), and its <c>dispatcher</c> events follow the reply (see <see cref="ProtocolConnection.CatchUpAsync"/>).
/// </summary>
internal sealed class EventsHandler(ProtocolEventHub hub, bool subscribe) : IProtocolHandler
{
    public ValueTask<ProtocolResult> HandleAsync(ProtocolRequest request, CancellationToken cancellationToken)
    {
        var verb = subscribe ? "subscribe" : "unsubscribe";
        var args = request.Args;
        string[] names;
        EventResume? form = null;
        if (args.ValueKind == JsonValueKind.Object)
        {
            if (EventResume.Parse(args, out var parsed) is { } problem)
            {
                return ValueTask.FromResult(ProtocolResult.Error(ProtocolErrorCode.BadRequest, $"events/{verb}: {problem}"));
            }

            form = parsed;
            names = parsed.Channels;
            if (subscribe && parsed.Shape is { } shape)
            {
                request.Connection.EventShape = shape;
            }
        }
        else if (!JsonArgs.TryGetStrings(args, out names) || names.Length == 0)
        {
            return ValueTask.FromResult(ProtocolResult.Error(ProtocolErrorCode.BadRequest,
                $"events/{verb} needs args that are a channel name, a non-empty array of channel names, or an object with \"channels\" (and \"since\", \"stream\", \"shape\"), not {Describe(args)}."));
        }

        var result = new JsonObject();
        if (!subscribe)
        {
            if (hub.Unsubscribe(request.Connection, names) is { } gone)
            {
                result[verb] = gone;
            }

            return ValueTask.FromResult(ProtocolResult.Ok(result));
        }

        // The object form starts the dispatcher channel where the reply says the stream stands (or at "since"), so that its
        // events follow the reply in order; the plain forms of sysadm clients get live events at once, as the original sent them.
        var log = hub.Log;
        long? head = null;
        DispatcherResume? resume = null;
        if (form is { } f && names.Contains(ProtocolEventHub.DispatcherChannel, StringComparer.Ordinal))
        {
            head = log.Head;
            resume = f.Since is { } since ? new DispatcherResume(since, f.Stream) : new DispatcherResume(head, log.Stream);
        }

        if (hub.Subscribe(request.Connection, names, resume) is { } last)
        {
            result[verb] = last;
        }

        if (head is { } h && request.Connection.IsSubscribed(ProtocolEventHub.DispatcherChannel))
        {
            result["stream"] = log.Stream;
            result["seq"] = h;
        }

        return ValueTask.FromResult(ProtocolResult.Ok(result));
    }

    private static string Describe(JsonElement args) =>
        args.ValueKind == JsonValueKind.Array ? "an empty array or an array with a non-string" : JsonArgs.Describe(args.ValueKind);
}

/// <summary>One <c>rpc/auth*</c> login request, run by the authenticator.</summary>
internal sealed class LoginHandler(ProtocolAuthenticator authenticator, IProtocolLoginMethod method) : IProtocolHandler
{
    public ValueTask<ProtocolResult> HandleAsync(ProtocolRequest request, CancellationToken cancellationToken) =>
        authenticator.LoginAsync(method, request, cancellationToken);
}

/// <summary><c>rpc/auth_token</c>.</summary>
internal sealed class TokenLoginHandler(ProtocolAuthenticator authenticator) : IProtocolHandler
{
    public ValueTask<ProtocolResult> HandleAsync(ProtocolRequest request, CancellationToken cancellationToken) =>
        ValueTask.FromResult(authenticator.LoginWithToken(request));
}

/// <summary><c>rpc/auth_clear</c>.</summary>
internal sealed class LogoutHandler(ProtocolAuthenticator authenticator) : IProtocolHandler
{
    public ValueTask<ProtocolResult> HandleAsync(ProtocolRequest request, CancellationToken cancellationToken) =>
        ValueTask.FromResult(authenticator.Logout(request.Connection));
}

/// <summary>
/// <c>rpc/settings</c>: the key actions of sysadm's settings class. <c>register_ssl_cert {pub_key, nickname, email}</c> registers a
/// key for the session's user; <c>list_ssl_certs</c> lists keys as <c>{user: {pub_key: "Nickname: …"}}</c> (everyone's for full
/// access, else the user's own); <c>revoke_ssl_cert {pub_key, user?}</c> removes one (another user's needs full access).
/// </summary>
internal sealed class SettingsHandler(PublicKeyStore keys) : IProtocolHandler
{
    public ValueTask<ProtocolResult> HandleAsync(ProtocolRequest request, CancellationToken cancellationToken) =>
        ValueTask.FromResult(Handle(request));

    private ProtocolResult Handle(ProtocolRequest request)
    {
        var user = request.Connection.User!;
        switch (request.Action)
        {
            case "register_ssl_cert":
            {
                if (!request.TryGetString("pub_key", out var pubKey) || pubKey.Length == 0)
                {
                    return Bad("register_ssl_cert needs \"pub_key\": base64 of a PEM RSA public key.");
                }

                request.TryGetString("nickname", out var nickname);
                request.TryGetString("email", out var email);
                try
                {
                    keys.Register(user, pubKey, nickname ?? string.Empty, email ?? string.Empty);
                }
                catch (Exception ex) when (ex is ArgumentException or InvalidOperationException)
                {
                    return Bad(ex.Message);
                }

                return ProtocolResult.Ok();
            }

            case "list_ssl_certs":
            {
                var result = new JsonObject();
                foreach (var (owner, list) in keys.List(user.Access == DispatcherAccess.Full ? null : user.Name))
                {
                    var entries = new JsonObject();
                    foreach (var (key, description) in list)
                    {
                        entries[key] = description;
                    }

                    result[owner] = entries;
                }

                return ProtocolResult.Ok(result);
            }

            case "revoke_ssl_cert":
            {
                if (!request.TryGetString("pub_key", out var pubKey) || pubKey.Length == 0)
                {
                    return Bad("revoke_ssl_cert needs \"pub_key\": the key as it was registered.");
                }

                var owner = request.TryGetString("user", out var named) && named.Length > 0 ? named : user.Name;
                if (owner != user.Name && user.Access != DispatcherAccess.Full)
                {
                    return Bad($"Revoking a key of user '{owner}' needs full access.");
                }

                return keys.Revoke(owner, pubKey) ? ProtocolResult.Ok() : Bad($"User '{owner}' has no such key.");
            }

            default:
                return Bad(request.Action is null
                    ? "rpc/settings needs an \"action\": register_ssl_cert, list_ssl_certs or revoke_ssl_cert."
                    : $"Unknown action '{request.Action}'; rpc/settings offers register_ssl_cert, list_ssl_certs and revoke_ssl_cert.");
        }
    }

    private static ProtocolResult Bad(string message) => ProtocolResult.Error(ProtocolErrorCode.BadRequest, message);
}
