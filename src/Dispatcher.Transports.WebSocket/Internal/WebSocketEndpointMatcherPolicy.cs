using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Matching;

namespace Dispatcher.Transports.WebSocket.Internal;

/// <summary>Marks the endpoint mapped by <c>MapDispatcherWebSocket</c>.</summary>
internal sealed class DispatcherWebSocketEndpointMetadata
{
    public static readonly DispatcherWebSocketEndpointMetadata Instance = new();

    private DispatcherWebSocketEndpointMetadata()
    {
    }
}

/// <summary>
/// Sends WebSocket requests to the dispatcher's endpoint when another endpoint shares its path. Without it the web template's
/// <c>app.MapGet("/", …)</c> wins every GET to <c>/</c>, the upgrade included (routing prefers an endpoint that names its
/// method), and a sysadm client gets <c>200 Hello World!</c> instead of a WebSocket. Plain requests are left to routing as before.
/// </summary>
internal sealed class WebSocketEndpointMatcherPolicy : MatcherPolicy, IEndpointSelectorPolicy
{
    // After the HTTP method policy, so an endpoint it rejected stays rejected.
    public override int Order => 1000;

    public bool AppliesToEndpoints(IReadOnlyList<Endpoint> endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        return endpoints.Any(e => e.Metadata.GetMetadata<DispatcherWebSocketEndpointMetadata>() is not null);
    }

    public Task ApplyAsync(HttpContext httpContext, CandidateSet candidates)
    {
        ArgumentNullException.ThrowIfNull(httpContext);
        ArgumentNullException.ThrowIfNull(candidates);
        if (!IsWebSocketRequest(httpContext))
        {
            return Task.CompletedTask;
        }

        var dispatcher = -1;
        for (var i = 0; i < candidates.Count; i++)
        {
            if (candidates.IsValidCandidate(i) && candidates[i].Endpoint.Metadata.GetMetadata<DispatcherWebSocketEndpointMetadata>() is not null)
            {
                dispatcher = i;
                break;
            }
        }

        if (dispatcher >= 0)
        {
            for (var i = 0; i < candidates.Count; i++)
            {
                if (i != dispatcher && candidates.IsValidCandidate(i))
                {
                    candidates.SetValidity(i, false);
                }
            }
        }

        return Task.CompletedTask;
    }

    /// <summary>An HTTP/1.1 upgrade to <c>websocket</c> or an HTTP/2 extended CONNECT for it (the WebSocket middleware's own test runs too late: after routing).</summary>
    private static bool IsWebSocketRequest(HttpContext context)
    {
        if (context.Features.Get<IHttpExtendedConnectFeature>() is { IsExtendedConnect: true } connect)
        {
            return string.Equals(connect.Protocol, "websocket", StringComparison.OrdinalIgnoreCase);
        }

        if (!HttpMethods.IsGet(context.Request.Method))
        {
            return false;
        }

        foreach (var value in context.Request.Headers.Upgrade)
        {
            if (value is not null && value.Contains("websocket", StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }
}
