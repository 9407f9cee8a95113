using System.Security.Claims;
using Dispatcher.Protocol;
using Dispatcher.Transports.WebSocket.Internal;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Dispatcher.Transports.WebSocket;

/// <summary>
/// Serves the sysadm dispatcher protocol over any <see cref="System.Net.WebSockets.WebSocket"/>: requests, replies, events and
/// in-band authentication. Register it with <c>AddWebSocketTransport()</c>; ASP.NET Core hosts map it with
/// <c>MapDispatcherWebSocket</c>, other hosts call <see cref="RunAsync"/> with a socket they accepted.
/// </summary>
public sealed class DispatcherWebSocketServer
{
    private readonly ProtocolServer _handler;
    private readonly WebSocketTransportOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly CancellationToken _stopping;

    internal DispatcherWebSocketServer(ProtocolServer handler, IOptions<WebSocketTransportOptions> options,
        TimeProvider timeProvider, ILogger<DispatcherWebSocketServer>? logger = null, CancellationToken stopping = default)
    {
        _stopping = stopping;
        _handler = handler;
        _options = options.Value;
        _time = timeProvider;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    internal static DispatcherWebSocketServer Create(IServiceProvider services) => new(
        services.GetRequiredService<ProtocolServer>(),
        services.GetRequiredService<IOptions<WebSocketTransportOptions>>(),
        services.GetRequiredService<TimeProvider>(),
        services.GetService<ILogger<DispatcherWebSocketServer>>(),
        services.GetService<IHostApplicationLifetime>()?.ApplicationStopping ?? CancellationToken.None);

    /// <summary>
    /// Runs one client connection until it closes, is closed by the server (idle, oversize message, too many failed logins, a full
    /// send queue, the host stopping: status 1001), or <paramref name="cancellationToken"/> fires. The socket is not disposed: the caller owns it.
    /// </summary>
    /// <param name="socket">An open WebSocket.</param>
    /// <param name="remoteAddress">The client's address, for login throttling and logs.</param>
    /// <param name="user">The principal of the host's own authentication, or <see langword="null"/>; mapped by <see cref="DispatcherProtocolOptions.PrincipalAccess"/>.</param>
    /// <param name="cancellationToken">Ends the connection.</param>
    /// <returns>A task that completes when the connection is over.</returns>
    public Task RunAsync(System.Net.WebSockets.WebSocket socket, string remoteAddress, ClaimsPrincipal? user = null,
        CancellationToken cancellationToken = default) => RunCorkedAsync(socket, stream: null, remoteAddress, user, cancellationToken);

    /// <summary>Runs a connection whose socket writes through <paramref name="stream"/>, which lets the send loop batch frames.</summary>
    internal async Task RunCorkedAsync(System.Net.WebSockets.WebSocket socket, CorkingStream? stream, string remoteAddress, ClaimsPrincipal? user,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentNullException.ThrowIfNull(remoteAddress);
        using var connection = new WebSocketConnection(socket, stream, remoteAddress, user, _handler, _options, _time, _logger, _stopping);
        await connection.RunAsync(cancellationToken).ConfigureAwait(false);
    }
}
