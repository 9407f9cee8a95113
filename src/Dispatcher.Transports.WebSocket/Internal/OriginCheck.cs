using Microsoft.AspNetCore.Http;

namespace Dispatcher.Transports.WebSocket.Internal;

/// <summary>
/// Refuses WebSocket requests from other sites' browser pages (cross-site WebSocket hijacking): browsers send the page's origin
/// and let any page open a WebSocket anywhere, with the user's cookies.
/// </summary>
internal static class OriginCheck
{
    /// <summary>True when the request may go on: no origin, a non-web origin, the request's own origin, or an allowed one.</summary>
    public static bool IsAllowed(HttpRequest request, IList<string> allowed)
    {
        var origin = request.Headers.Origin.ToString();
        if (string.IsNullOrEmpty(origin))
        {
            return true;
        }

        foreach (var entry in allowed)
        {
            if (entry == "*" || string.Equals(entry.TrimEnd('/'), origin, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        // "null" is what a browser sends from a sandboxed frame or a file: page; it is a browser, and not this host.
        if (string.Equals(origin, "null", StringComparison.Ordinal))
        {
            return false;
        }

        if (!Uri.TryCreate(origin, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
        {
            // Not a web origin: a program, not a browser page (sysadm clients send "sysadm-client").
            return true;
        }

        // Same origin: the page was served by this host, under the host name and port the request was sent to.
        var host = request.Host;
        return host.HasValue
            && string.Equals(uri.Host, host.Host, StringComparison.OrdinalIgnoreCase)
            && uri.Port == (host.Port ?? (request.IsHttps ? 443 : 80));
    }
}
