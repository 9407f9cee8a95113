using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Dispatcher.Client.Internal;

/// <summary>Requests over REST: <c>PUT {Url}/{namespace}/{name}</c> with the args as the body and a bearer token.</summary>
internal sealed class HttpChannel(DispatcherClientOptions options, TokenState token) : IDisposable
{
    private readonly HttpClient _http = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(2) })
    {
        Timeout = Timeout.InfiniteTimeSpan, // the client's RequestTimeout applies through the cancellation token
    };

    public async Task<JsonNode?> RequestAsync(string ns, string name, JsonNode? args, CancellationToken cancellationToken)
    {
        var login = options.UserName is not null && !(ns == "rpc" && name is "auth" or "auth_token" or "identify");
        if (login && token.Current is null)
        {
            await LoginAsync(cancellationToken).ConfigureAwait(false);
        }

        var used = login ? token.Current : null;
        var (status, reply) = await SendAsync(ns, name, args, used, cancellationToken).ConfigureAwait(false);
        if (status == HttpStatusCode.Unauthorized && used is not null)
        {
            // The token expired (TokenLifetime after its last use): log in again and send once more; a 401 ran nothing.
            token.Clear(used);
            await LoginAsync(cancellationToken).ConfigureAwait(false);
            (status, reply) = await SendAsync(ns, name, args, token.Current, cancellationToken).ConfigureAwait(false);
        }

        if ((int)status is < 200 or > 299)
        {
            var error = Wire.Error(reply);
            throw error.Code == "?" ? new DispatcherClientException(((int)status).ToString(System.Globalization.CultureInfo.InvariantCulture), error.Message) : error;
        }

        return reply;
    }

    public void Dispose() => _http.Dispose();

    private async Task LoginAsync(CancellationToken cancellationToken)
    {
        var (status, reply) = await SendAsync("rpc", "auth", new JsonObject { ["username"] = options.UserName, ["password"] = options.Password }, null, cancellationToken)
            .ConfigureAwait(false);
        if (status != HttpStatusCode.OK)
        {
            throw Wire.Error(reply);
        }

        var (value, lifetime) = WebSocketSession.ReadToken(reply);
        token.Set(value, lifetime);
    }

    private async Task<(HttpStatusCode Status, JsonNode? Args)> SendAsync(string ns, string name, JsonNode? args, string? bearer, CancellationToken cancellationToken)
    {
        var uri = options.RestUri(ns, name);
        using var request = new HttpRequestMessage(HttpMethod.Put, uri)
        {
            Content = new StringContent(args?.ToJsonString() ?? "{}", Encoding.UTF8, "application/json"),
        };
        if (bearer is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        }

        try
        {
            using var response = await _http.SendAsync(request, cancellationToken).ConfigureAwait(false);
            var body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
            JsonNode? parsed;
            try
            {
                parsed = body.Length == 0 ? null : JsonNode.Parse(body);
            }
            catch (JsonException)
            {
                throw new DispatcherClientException(((int)response.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture),
                    $"{uri} answered {(int)response.StatusCode} with a body that is not JSON: {(body.Length > 200 ? body[..200] : body)}");
            }

            return (response.StatusCode, parsed is JsonObject o && o.ContainsKey("args") ? o["args"] : parsed);
        }
        catch (HttpRequestException ex)
        {
            throw new DispatcherClientException($"Cannot reach {uri}: {ex.Message}", ex);
        }
    }
}
