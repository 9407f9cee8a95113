using System.Text.Json;
using Dispatcher.Protocol.Routing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Dispatcher.Protocol;

/// <summary>
/// The protocol, independent of the transport: reads a request envelope, finds its route, checks the connection's access, calls the
/// route's handler, and writes the reply or the error envelope. Transports frame bytes and call this; hosts add routes, channels and
/// login methods. Resolve it from dependency injection (<c>AddDispatcher</c> registers it).
/// </summary>
public sealed class ProtocolServer
{
    private readonly ProtocolAuthenticator _authenticator;
    private readonly DispatcherProtocolOptions _options;
    private readonly ILogger _logger;

    internal ProtocolServer(ProtocolRouteTable routes, ProtocolAuthenticator authenticator, IOptions<DispatcherProtocolOptions> options,
        ILogger<ProtocolServer>? logger = null)
    {
        Routes = routes;
        _authenticator = authenticator;
        _options = options.Value;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>Gets the route table.</summary>
    public ProtocolRouteTable Routes { get; }

    /// <summary>Gets the authenticator (HTTP transports apply <c>Authorization</c> headers through it).</summary>
    public ProtocolAuthenticator Authenticator => _authenticator;

    /// <summary>Handles one whole request envelope (a WebSocket text frame).</summary>
    /// <param name="connection">The client's connection.</param>
    /// <param name="utf8">The frame.</param>
    /// <param name="cancellationToken">Cancelled when the connection goes away.</param>
    /// <returns>The reply.</returns>
    public async ValueTask<ProtocolResponse> HandleMessageAsync(ProtocolConnection connection, ReadOnlyMemory<byte> utf8, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        if (!EnvelopeReader.TryParse(utf8, _options.MaxJsonDepth, out var document, out var invalid))
        {
            return Log(connection, "?", "?", null, ProtocolResponse.Error(ProtocolErrorCode.BadRequest, invalid));
        }

        using (document)
        {
            if (!EnvelopeReader.TryRead(document.RootElement, out var id, out var ns, out var name, out var args, out var problem))
            {
                return Log(connection, "?", "?", null, ProtocolResponse.Error(ProtocolErrorCode.BadRequest, problem, id));
            }

            return await HandleAsync(connection, ns, name, id, args, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Handles a REST request: namespace and name come from the URI; the body is the args object, or a whole envelope whose
    /// <c>args</c> member is used.
    /// </summary>
    /// <param name="connection">The request's connection.</param>
    /// <param name="namespace">The namespace from the URI.</param>
    /// <param name="name">The name from the URI.</param>
    /// <param name="utf8">The body.</param>
    /// <param name="cancellationToken">Cancelled when the request is aborted.</param>
    /// <returns>The reply.</returns>
    public async ValueTask<ProtocolResponse> HandleBodyAsync(ProtocolConnection connection, string @namespace, string name, ReadOnlyMemory<byte> utf8,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(@namespace);
        ArgumentNullException.ThrowIfNull(name);
        if (utf8.IsEmpty)
        {
            return Log(connection, @namespace, name, null,
                ProtocolResponse.Error(ProtocolErrorCode.BadRequest, "The request needs a JSON body, for example {\"action\": \"list\"}."));
        }

        if (!EnvelopeReader.TryParse(utf8, _options.MaxJsonDepth, out var document, out var problem))
        {
            return Log(connection, @namespace, name, null, ProtocolResponse.Error(ProtocolErrorCode.BadRequest, problem));
        }

        using (document)
        {
            if (!EnvelopeReader.TryReadBody(document.RootElement, out var args, out problem))
            {
                return Log(connection, @namespace, name, null, ProtocolResponse.Error(ProtocolErrorCode.BadRequest, problem));
            }

            return await HandleAsync(connection, @namespace, name, null, args, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Handles one request whose envelope is already taken apart.</summary>
    internal async ValueTask<ProtocolResponse> HandleAsync(ProtocolConnection connection, string @namespace, string name, string? id, JsonElement args,
        CancellationToken cancellationToken)
    {
        var ns = @namespace.ToLowerInvariant();
        var n = name.ToLowerInvariant();
        ProtocolResponse reply;
        try
        {
            reply = await RouteAsync(connection, ns, n, name, id, args, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex)
        {
            // Never leak exception details to the remote side; the log has them.
            ServerLog.Failed(_logger, ns, n, ex);
            reply = ProtocolResponse.Error(ProtocolErrorCode.InternalError, "The server failed to handle the request.", id);
        }

        return Log(connection, ns, n, args, reply);
    }

    /// <summary>
    /// Says how this client can authenticate: in-band requests where the connection takes them (a WebSocket), an Authorization
    /// header otherwise (REST, and a server-sent event stream, which takes no requests); and why the host's own login, if the
    /// client has one, was not enough.
    /// </summary>
    private string NotAuthenticated(ProtocolConnection connection)
    {
        var how = connection.SupportsEvents && connection.Transport != "sse"
            ? "send rpc/auth, rpc/auth_ssl or rpc/auth_token first"
            : "send an Authorization header, Basic with a user name and password, or Bearer with a token from rpc/auth";
        if (connection.Principal?.Identity is not { IsAuthenticated: true } identity)
        {
            return $"Not authenticated: {how}.";
        }

        var why = _options.PrincipalAccess is null
            ? "is not used by the dispatcher (DispatcherProtocolOptions.PrincipalAccess is not set)"
            : "gives no dispatcher access (DispatcherProtocolOptions.PrincipalAccess maps it to None)";
        return $"Not authenticated for the dispatcher: the host's login '{identity.Name}' {why}; {how}.";
    }

    private async ValueTask<ProtocolResponse> RouteAsync(ProtocolConnection connection, string ns, string n, string name, string? id, JsonElement args,
        CancellationToken cancellationToken)
    {
        if (!Routes.TryGetRoute(ns, n, out var route) || (route.NeedsEvents && !connection.SupportsEvents))
        {
            return ProtocolResponse.Error(ProtocolErrorCode.NotFound,
                $"Unknown namespace/name '{EnvelopeReader.Short(ns)}/{EnvelopeReader.Short(n)}'. rpc/query lists the classes this server offers.", id);
        }

        if (route.RequiredAccess != DispatcherAccess.None)
        {
            var access = _authenticator.Refresh(connection);
            if (access == DispatcherAccess.None)
            {
                return ProtocolResponse.Error(ProtocolErrorCode.Unauthorized, NotAuthenticated(connection), id);
            }

            if (access < route.RequiredAccess)
            {
                return ProtocolResponse.Error(ProtocolErrorCode.Forbidden,
                    $"Forbidden: {route.Path} needs full access; user '{connection.User?.Name}' has read access.", id);
            }
        }

        var handler = Routes.HandlerOf(route);
        var result = await handler.HandleAsync(new ProtocolRequest(ns, n, id, args, connection), cancellationToken).ConfigureAwait(false)
            ?? throw new InvalidOperationException($"The handler of {route.Path} returned null; return ProtocolResult.Ok() or ProtocolResult.Error().");
        if (result.ErrorCode is { } code)
        {
            var error = new ProtocolResponse(WireFormat.Envelope("error", "error", id, WireFormat.ErrorArgs((int)code, result.ErrorMessage!)), (int)code,
                closeReason: result.CloseReason);
            return error;
        }

        var envelope = WireFormat.Envelope(ns, id is null ? name : "response", id, result.RawArgs is null ? result.Args : null);
        return new ProtocolResponse(envelope, 200, result.RawArgs);
    }

    private ProtocolResponse Log(ProtocolConnection connection, string ns, string name, JsonElement? args, ProtocolResponse reply)
    {
        if (_logger.IsEnabled(LogLevel.Information))
        {
            var action = args is { ValueKind: JsonValueKind.Object } a && a.TryGetProperty("action", out var act) && act.ValueKind == JsonValueKind.String
                ? act.GetString()
                : null;
            ServerLog.Request(_logger, connection.Transport, connection.RemoteAddress, EnvelopeReader.Short(connection.User?.Name ?? "-"), EnvelopeReader.Short(ns),
                EnvelopeReader.Short(name), EnvelopeReader.Short(action ?? "-"), reply.Status, reply.ErrorMessage ?? "ok");
        }

        return reply;
    }
}

internal static partial class ServerLog
{
    [LoggerMessage(EventId = 201, EventName = "Request", Level = LogLevel.Information, Message = "{Transport} {Address} user={User} {Namespace}/{Name} action={Action} -> {Status} {Detail}")]
    public static partial void Request(ILogger logger, string transport, string address, string user, string @namespace, string name, string action, int status, string detail);

    [LoggerMessage(EventId = 202, EventName = "RequestFailed", Level = LogLevel.Error, Message = "Handling {Namespace}/{Name} failed")]
    public static partial void Failed(ILogger logger, string @namespace, string name, Exception exception);
}
