using System.Buffers;
using System.Net.Http.Headers;
using System.Text;
using Dispatcher.Protocol;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Dispatcher.Transports.Http.Internal;

/// <summary>Frames the protocol over REST: authentication headers, body limits, status codes. Everything else is the shared handler's.</summary>
internal sealed partial class HttpRequestHandler(ProtocolHandler handler, IOptions<HttpTransportOptions> options, ILogger<HttpRequestHandler>? logger = null)
{
    private readonly HttpTransportOptions _options = options.Value;
    private readonly ILogger _logger = (ILogger?)logger ?? NullLogger.Instance;

    public async Task HandleAsync(HttpContext context)
    {
        var ns = context.Request.RouteValues["namespace"] as string ?? string.Empty;
        var name = context.Request.RouteValues["name"] as string ?? string.Empty;
        var address = context.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        var session = new ProtocolSession("http", address, context.User, supportsEvents: false);
        var ct = context.RequestAborted;

        if (await AuthenticateAsync(context, session, ct) is { } denied)
        {
            await WriteAsync(context, denied);
            return;
        }

        var request = context.Request;
        if (request.ContentLength > _options.MaxRequestBodyBytes)
        {
            await WriteAsync(context, ProtocolHandler.Error(null, 413, $"The body is larger than {_options.MaxRequestBodyBytes} bytes."));
            return;
        }

        var hasBody = request.ContentLength > 0 || (request.ContentLength is null && request.Headers.TransferEncoding.Count > 0);
        if (hasBody && !IsJson(request.ContentType))
        {
            await WriteAsync(context, ProtocolHandler.Error(null, 415,
                $"The body must be JSON (Content-Type: application/json), not '{request.ContentType ?? "(none)"}'."));
            return;
        }

        byte[]? body;
        try
        {
            body = await ReadBodyAsync(request, ct);
        }
        catch (BadHttpRequestException ex)
        {
            // Kestrel's minimum body data rate, or a body cut short: the client's fault, and Kestrel answers it (408/400) itself.
            // One debug line, not an unhandled exception with a stack trace per slow client.
            Log.BadBody(_logger, address, ex.StatusCode, ex.Message);
            return;
        }

        if (body is null)
        {
            await WriteAsync(context, ProtocolHandler.Error(null, 413, $"The body is larger than {_options.MaxRequestBodyBytes} bytes."));
            return;
        }

        await WriteAsync(context, await handler.HandleBodyAsync(session, ns, name, body, ct));
    }

    /// <summary>Applies Basic or Bearer credentials; returns the error to send, or null to go on (unauthenticated requests reach the handler, which answers 401 where needed).</summary>
    internal async Task<ProtocolReply?> AuthenticateAsync(HttpContext context, ProtocolSession session, CancellationToken ct)
    {
        var header = context.Request.Headers.Authorization.ToString();
        if (string.IsNullOrEmpty(header))
        {
            return null;
        }

        if (handler.Throttle.IsBlocked(session.RemoteAddress))
        {
            return ProtocolHandler.Error(null, 401, ProtocolHandler.TooManyFailures);
        }

        if (!AuthenticationHeaderValue.TryParse(header, out var value) || string.IsNullOrEmpty(value.Parameter))
        {
            return Fail(session, "Malformed Authorization header.");
        }

        if (value.Scheme.Equals("Basic", StringComparison.OrdinalIgnoreCase))
        {
            string decoded;
            try
            {
                decoded = new UTF8Encoding(false, true).GetString(Convert.FromBase64String(value.Parameter));
            }
            catch (Exception ex) when (ex is FormatException or ArgumentException)
            {
                return Fail(session, "Malformed Basic credentials: not base64 of UTF-8 'user:password'.");
            }

            var colon = decoded.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0)
            {
                return Fail(session, "Malformed Basic credentials: no ':' between user and password.");
            }

            var name = decoded[..colon];
            if (handler.Throttle.IsBlocked(session.RemoteAddress, name))
            {
                return ProtocolHandler.Error(null, 401, ProtocolHandler.TooManyFailures);
            }

            var user = await handler.CheckPasswordAsync(name, decoded[(colon + 1)..], ct);
            if (user is null)
            {
                return Fail(session, "Invalid user name or password.", name);
            }

            // A success erases no failure (see LoginThrottle).
            session.User = user;
            return null;
        }

        if (value.Scheme.Equals("Bearer", StringComparison.OrdinalIgnoreCase))
        {
            if (!handler.Tokens.TryUse(value.Parameter, out var user))
            {
                return Fail(session, "Invalid or expired token.");
            }

            session.User = user;
            session.Token = value.Parameter;
            return null;
        }

        return ProtocolHandler.Error(null, 401, $"Unsupported Authorization scheme '{value.Scheme}'; use Basic or Bearer.");
    }

    private ProtocolReply Fail(ProtocolSession session, string message, string? user = null) =>
        ProtocolHandler.Error(null, 401, handler.Throttle.Fail(session.RemoteAddress, user) ? ProtocolHandler.TooManyFailures : message);

    private static bool IsJson(string? contentType)
    {
        if (contentType is null)
        {
            // Old REST clients sent no content type; the body is still parsed as JSON.
            return true;
        }

        if (!MediaTypeHeaderValue.TryParse(contentType, out var media) || media.MediaType is null)
        {
            return false;
        }

        return media.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase)
            || media.MediaType.EndsWith("+json", StringComparison.OrdinalIgnoreCase)
            || media.MediaType.Equals("text/json", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Reads at most the limit; null when the body is longer (the rest is never read).</summary>
    private async Task<byte[]?> ReadBodyAsync(HttpRequest request, CancellationToken ct)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Min(_options.MaxRequestBodyBytes + 1, 64 * 1024));
        try
        {
            using var body = new MemoryStream();
            int read;
            while ((read = await request.Body.ReadAsync(buffer, ct)) > 0)
            {
                if (body.Length + read > _options.MaxRequestBodyBytes)
                {
                    return null;
                }

                body.Write(buffer, 0, read);
            }

            return body.ToArray();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    internal static async Task WriteAsync(HttpContext context, ProtocolReply reply)
    {
        var response = context.Response;
        response.StatusCode = reply.Status;
        if (reply.Status == StatusCodes.Status401Unauthorized)
        {
            response.Headers.WWWAuthenticate = "Basic realm=\"dispatcher\", Bearer";
        }

        response.ContentType = "application/json; charset=utf-8";
        await response.Body.WriteAsync(reply.ToBody(), context.RequestAborted);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 401, EventName = "HttpSlowBody", Level = LogLevel.Debug, Message = "HTTP client {Address}: the request body was not received ({Status}: {Reason})")]
        public static partial void BadBody(ILogger logger, string address, int status, string reason);
    }
}
