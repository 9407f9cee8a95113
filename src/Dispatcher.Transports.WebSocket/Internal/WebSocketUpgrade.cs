using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.Timeouts;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Dispatcher.Transports.WebSocket.Internal;

/// <summary>
/// Accepts a WebSocket request. An HTTP/1.1 upgrade is completed here (RFC 6455 §4.2.2: three response headers) so that the
/// socket is built over a <see cref="CorkingStream"/>; anything else (WebSockets over HTTP/2) goes through ASP.NET Core's own
/// accept. Either way the request was validated by the WebSocket middleware (method, headers, version, allowed origins), and
/// its keep-alive options apply.
/// </summary>
internal static class WebSocketUpgrade
{
    private const string AcceptGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

    public static async Task<(System.Net.WebSockets.WebSocket Socket, CorkingStream? Stream)> AcceptAsync(HttpContext context)
    {
        var upgrade = context.Features.Get<IHttpUpgradeFeature>();
        if (upgrade is not { IsUpgradableRequest: true } || !HttpProtocol.IsHttp11(context.Request.Protocol))
        {
            return (await context.WebSockets.AcceptWebSocketAsync().ConfigureAwait(false), null);
        }

        var options = context.RequestServices.GetService<IOptions<WebSocketOptions>>()?.Value ?? new WebSocketOptions();
        var key = context.Request.Headers.SecWebSocketKey.ToString().Trim();
        context.Response.Headers.Connection = "Upgrade";
        context.Response.Headers.Upgrade = "websocket";
        context.Response.Headers.SecWebSocketAccept = AcceptKey(key);

        // As ASP.NET Core's own accept does: a request timeout policy must not end a long-lived connection.
        context.Features.Get<IHttpRequestTimeoutFeature>()?.DisableTimeout();
        var transport = await upgrade.UpgradeAsync().ConfigureAwait(false);
        var stream = new CorkingStream(transport);
        var socket = System.Net.WebSockets.WebSocket.CreateFromStream(stream, new System.Net.WebSockets.WebSocketCreationOptions
        {
            IsServer = true,
            KeepAliveInterval = options.KeepAliveInterval,
#if NET9_0_OR_GREATER
            KeepAliveTimeout = options.KeepAliveTimeout,
#endif
        });
        return (socket, stream);
    }

    /// <summary>The <c>Sec-WebSocket-Accept</c> value for a client's key.</summary>
    internal static string AcceptKey(string key)
    {
#pragma warning disable CA5350 // SHA-1 is what RFC 6455 prescribes for the handshake; it protects nothing
        return Convert.ToBase64String(SHA1.HashData(Encoding.ASCII.GetBytes(key + AcceptGuid)));
#pragma warning restore CA5350
    }
}
