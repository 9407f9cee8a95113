using System.Buffers;
using System.Net.Http.Headers;
using Dispatcher.Protocol;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Dispatcher.Transports.Http.Internal;

/// <summary>Frames the protocol over REST: authentication headers, body limits, status codes. Everything else is the shared handler's.</summary>
internal sealed partial class HttpRequestHandler(ProtocolServer handler, IOptions<HttpTransportOptions> options, ILogger<HttpRequestHandler>? logger = null)
{
    private readonly HttpTransportOptions _options = options.Value;
    private readonly ILogger _logger = (ILogger?)logger ?? NullLogger.Instance;

    public async Task HandleAsync(HttpContext context)
    {
        var ns = context.Request.RouteValues["namespace"] as string ?? string.Empty;
        var name = context.Request.RouteValues["name"] as string ?? string.Empty;
        var address = context.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        using var session = new ProtocolConnection("http", address, context.User);
        var ct = context.RequestAborted;

        if (await handler.Authenticator.AuthenticateHeaderAsync(session, context.Request.Headers.Authorization.ToString(), ct) is { } denied)
        {
            await WriteAsync(context, ProtocolResponse.Error(denied.ErrorCode!.Value, denied.ErrorMessage!));
            return;
        }

        var request = context.Request;
        if (request.ContentLength > _options.MaxRequestBodyBytes)
        {
            await WriteAsync(context, ProtocolResponse.Error(ProtocolErrorCode.PayloadTooLarge, $"The body is larger than {_options.MaxRequestBodyBytes} bytes."));
            return;
        }

        var hasBody = request.ContentLength > 0 || (request.ContentLength is null && request.Headers.TransferEncoding.Count > 0);
        if (hasBody && !IsJson(request.ContentType))
        {
            await WriteAsync(context, ProtocolResponse.Error(ProtocolErrorCode.UnsupportedMediaType,
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
            await WriteAsync(context, ProtocolResponse.Error(ProtocolErrorCode.PayloadTooLarge, $"The body is larger than {_options.MaxRequestBodyBytes} bytes."));
            return;
        }

        await WriteAsync(context, await handler.HandleBodyAsync(session, ns, name, body, ct));
    }

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

    internal static async Task WriteAsync(HttpContext context, ProtocolResponse reply)
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
