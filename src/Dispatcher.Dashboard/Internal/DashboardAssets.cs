using System.Collections.Frozen;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.StaticFiles;
using Microsoft.Extensions.Options;

namespace Dispatcher.Dashboard.Internal;

/// <summary>
/// The page's files, read once from the assembly's resources (about 60 KB in all) and served from memory with a strong ETag.
/// <c>index.html</c> gets the configured WebSocket URL and title filled in.
/// </summary>
internal sealed class DashboardAssets
{
    private const string ResourcePrefix = "Dispatcher.Dashboard.wwwroot.";

    // The page needs nothing from elsewhere: scripts, styles and the socket are its own (a WebSocket on another host is added).
    private const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'";

    private const string ContentSecurityPolicyEnd = "; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    private readonly FrozenDictionary<string, Asset> _assets;
    private readonly string _contentSecurityPolicy;

    public DashboardAssets(IOptions<DispatcherDashboardOptions> options)
    {
        var o = options.Value;
        var types = new FileExtensionContentTypeProvider();
        var assembly = typeof(DashboardAssets).Assembly;
        var assets = new Dictionary<string, Asset>(StringComparer.Ordinal);
        foreach (var resource in assembly.GetManifestResourceNames())
        {
            if (!resource.StartsWith(ResourcePrefix, StringComparison.Ordinal))
            {
                continue;
            }

            var name = resource[ResourcePrefix.Length..];
            using var stream = assembly.GetManifestResourceStream(resource)!;
            using var buffer = new MemoryStream();
            stream.CopyTo(buffer);
            var bytes = buffer.ToArray();
            if (name == "index.html")
            {
                var html = Encoding.UTF8.GetString(bytes)
                    .Replace("%WEBSOCKET_URL%", HtmlEncoder.Default.Encode(o.WebSocketUrl), StringComparison.Ordinal)
                    .Replace("%TITLE%", HtmlEncoder.Default.Encode(o.Title), StringComparison.Ordinal);
                bytes = Encoding.UTF8.GetBytes(html);
            }

            var type = types.TryGetContentType(name, out var t) ? t : "application/octet-stream";
            if (type.StartsWith("text/", StringComparison.Ordinal) || type == "application/javascript" || type == "text/javascript")
            {
                type += "; charset=utf-8";
            }

            var etag = "\"" + Convert.ToHexString(SHA256.HashData(bytes), 0, 16) + "\"";
            assets[name] = new Asset(bytes, type, etag);
        }

        _assets = assets.ToFrozenDictionary(StringComparer.Ordinal);
        // Only a ws:// or wss:// URL names another host ("/" parses as an absolute file:/// URI on Unix).
        var other = o.WebSocketUrl.StartsWith('/') || !Uri.TryCreate(o.WebSocketUrl, UriKind.Absolute, out var uri)
            ? string.Empty
            : " " + uri.GetLeftPart(UriPartial.Authority);
        _contentSecurityPolicy = ContentSecurityPolicy + other + ContentSecurityPolicyEnd;
    }

    /// <summary>The names of the files the dashboard serves.</summary>
    public IEnumerable<string> Names => _assets.Keys;

    /// <summary>Serves <c>{pattern}/{file}</c>: the page at the folder's address, each file by its name, 404 otherwise.</summary>
    public Task ServeAsync(HttpContext context)
    {
        var file = context.Request.RouteValues["file"] as string;
        var path = context.Request.Path.Value ?? string.Empty;
        if (string.IsNullOrEmpty(file) && !path.EndsWith('/'))
        {
            // The page loads its files by relative address, so it must be served from the folder: "/dashboard" → "/dashboard/".
            context.Response.StatusCode = StatusCodes.Status301MovedPermanently;
            context.Response.Headers.Location = context.Request.PathBase + path + "/" + context.Request.QueryString;
            return Task.CompletedTask;
        }

        if (!_assets.TryGetValue(string.IsNullOrEmpty(file) ? "index.html" : file, out var asset))
        {
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return Task.CompletedTask;
        }

        var headers = context.Response.Headers;
        headers.ETag = asset.ETag;
        // Revalidate every time (a 304 costs one round trip), so a host upgrade is never served stale assets.
        headers.CacheControl = "no-cache";
        headers.XContentTypeOptions = "nosniff";
        headers["Referrer-Policy"] = "no-referrer";
        if (asset.ContentType.StartsWith("text/html", StringComparison.Ordinal))
        {
            headers.ContentSecurityPolicy = _contentSecurityPolicy;
        }

        if (context.Request.Headers.IfNoneMatch.Any(v => v is not null && (v.Contains(asset.ETag, StringComparison.Ordinal) || v == "*")))
        {
            context.Response.StatusCode = StatusCodes.Status304NotModified;
            return Task.CompletedTask;
        }

        context.Response.ContentType = asset.ContentType;
        context.Response.ContentLength = asset.Content.Length;
        return HttpMethods.IsHead(context.Request.Method)
            ? Task.CompletedTask
            : context.Response.Body.WriteAsync(asset.Content, context.RequestAborted).AsTask();
    }

    private sealed record Asset(byte[] Content, string ContentType, string ETag);
}
