using Dispatcher.Transports.WebSocket;
using Dispatcher.Transports.WebSocket.Internal;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Maps the dispatcher's WebSocket endpoint.</summary>
public static class DispatcherWebSocketEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Serves the sysadm dispatcher protocol over WebSockets at <paramref name="pattern"/> (sysadm clients connect to <c>/</c>).
    /// The endpoint brings its own WebSocket middleware; a plain HTTP request to it gets 400. Another endpoint may share the
    /// path (the web template's <c>app.MapGet("/", …)</c>, in either order): WebSocket requests come here, plain requests go
    /// to the other endpoint. A browser page of another origin than this host's and those in
    /// <see cref="WebSocketTransportOptions.AllowedOrigins"/> gets 403.
    /// </summary>
    /// <param name="endpoints">The endpoint route builder.</param>
    /// <param name="pattern">The route pattern.</param>
    /// <returns>A builder to add authorization, CORS or rate limiting to the endpoint.</returns>
    /// <exception cref="InvalidOperationException"><c>AddDispatcher().AddWebSocketTransport()</c> was not called.</exception>
    public static IEndpointConventionBuilder MapDispatcherWebSocket(this IEndpointRouteBuilder endpoints, string pattern = "/")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(pattern);
        if (endpoints.ServiceProvider.GetService<DispatcherWebSocketServer>() is null)
        {
            throw new InvalidOperationException(
                "Unable to find the dispatcher's WebSocket services. Call 'services.AddDispatcher().AddWebSocketTransport()' when configuring the services.");
        }

        var app = endpoints.CreateApplicationBuilder();
        app.UseWebSockets();
        app.Run(static async context =>
            {
                if (!context.WebSockets.IsWebSocketRequest)
                {
                    context.Response.StatusCode = StatusCodes.Status400BadRequest;
                    await context.Response.WriteAsync("This endpoint speaks the dispatcher protocol over WebSocket only.", context.RequestAborted);
                    return;
                }

                if (!OriginCheck.IsAllowed(context.Request, context.RequestServices.GetRequiredService<IOptions<WebSocketTransportOptions>>().Value.AllowedOrigins))
                {
                    context.Response.StatusCode = StatusCodes.Status403Forbidden;
                    await context.Response.WriteAsync("Cross-origin WebSocket request refused: add the page's origin to Dispatcher:WebSocket:AllowedOrigins to allow it.", context.RequestAborted);
                    return;
                }

                var server = context.RequestServices.GetRequiredService<DispatcherWebSocketServer>();
                var (socket, stream) = await WebSocketUpgrade.AcceptAsync(context);
                using (socket)
                {
                    await server.RunCorkedAsync(socket, stream, context.Connection.RemoteIpAddress?.ToString() ?? "unknown", context.User, context.RequestAborted);
                }
            });
        return endpoints.Map(pattern, app.Build())
            .WithDisplayName("Dispatcher WebSocket")
            .WithMetadata(DispatcherWebSocketEndpointMetadata.Instance);
    }
}
