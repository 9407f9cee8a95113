using System.Net;
using System.Net.WebSockets;
using System.Security.Claims;
using System.Text.Encodings.Web;
using System.Text.Json.Nodes;
using Dispatcher.Protocol;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Dispatcher.Transports.Tests;

/// <summary>The host's own ASP.NET Core authentication, mapped to dispatcher access by DispatcherProtocolOptions.PrincipalAccess.</summary>
public sealed class HostAuthenticationTests
{
    private static Task<TestServer> StartAsync() => TestServer.StartAsync(
        protocol: o => o.PrincipalAccess = user =>
            user.IsInRole("admin") ? DispatcherAccess.Full : user.Identity?.Name == "guest" ? DispatcherAccess.None : DispatcherAccess.Read,
        host: b => b.Services.AddAuthentication("Header").AddScheme<AuthenticationSchemeOptions, HeaderAuthenticationHandler>("Header", null));

    [Theory]
    [InlineData(null, HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized)]
    [InlineData("pleb", HttpStatusCode.OK, HttpStatusCode.Forbidden)]
    [InlineData("boss", HttpStatusCode.OK, HttpStatusCode.OK)]
    public async Task Http_UsesThePrincipal(string? user, HttpStatusCode list, HttpStatusCode run)
    {
        await using var server = await StartAsync();
        if (user is not null)
        {
            server.Client.DefaultRequestHeaders.Add("X-Test-User", user);
        }

        Assert.Equal(list, (await server.PutAsync("/rpc/dispatcher", """{"action":"list"}""", user: null)).Status);
        Assert.Equal(run, (await server.PutAsync("/rpc/dispatcher", """{"action":"run","p":"true"}""", user: null)).Status);
    }

    [Theory]
    [InlineData("pleb", "read", false)]
    [InlineData("boss", "read/write", true)]
    public async Task WebSocket_UsesThePrincipal_WithoutInBandAuthentication(string user, string query, bool full)
    {
        await using var server = await StartAsync();
        await using var ws = await WsClient.ConnectAsync(server.WebSocketUri, ("X-Test-User", user));
        Assert.Equal(query, (string?)(await ws.RequestAsync("rpc", "query", ""))["args"]!["rpc/dispatcher"]);
        var run = await ws.DispatcherAsync(new JsonObject { ["action"] = "run", ["w"] = "true" });
        if (full)
        {
            JsonAssert.Equal(new JsonArray("w"), run["args"]!["started"]);
        }
        else
        {
            JsonAssert.IsError(run, 403);
        }
    }

    [Theory]
    [InlineData("/rpc/dispatcher")]
    [InlineData("/events/dispatcher")]
    public async Task Http_APrincipalWithNoAccess_Gets401NamingTheHostsLogin(string path)
    {
        // The host signed the client in, but its PrincipalAccess gives that login nothing. The server-sent events stream
        // answered with the WebSocket's wording ("send rpc/auth, rpc/auth_ssl or rpc/auth_token first"), which an SSE
        // client cannot do.
        await using var server = await StartAsync();
        using var request = new HttpRequestMessage(path.StartsWith("/events", StringComparison.Ordinal) ? HttpMethod.Get : HttpMethod.Put, path);
        request.Headers.Add("X-Test-User", "guest");
        if (request.Method == HttpMethod.Put)
        {
            request.Content = new StringContent("""{"action":"list"}""", System.Text.Encoding.UTF8, "application/json");
        }

        using var response = await server.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        var message = (string?)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["args"]!["message"];
        Assert.Contains("'guest'", message, StringComparison.Ordinal);
        Assert.DoesNotContain("rpc/auth_ssl", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WebSocket_APrincipalWithNoAccess_CanStillAuthenticateInBand()
    {
        await using var server = await StartAsync();
        await using var ws = await WsClient.ConnectAsync(server.WebSocketUri, ("X-Test-User", "guest"));
        var denied = await ws.DispatcherAsync(new JsonObject { ["action"] = "list" });
        JsonAssert.IsError(denied, 401);
        Assert.Contains("'guest'", (string?)denied["args"]!["message"], StringComparison.Ordinal);
        Assert.Contains("rpc/auth", (string?)denied["args"]!["message"], StringComparison.Ordinal);
    }

    private sealed class HeaderAuthenticationHandler(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder)
        : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
    {
        protected override Task<AuthenticateResult> HandleAuthenticateAsync()
        {
            if (!Request.Headers.TryGetValue("X-Test-User", out var name) || string.IsNullOrEmpty(name))
            {
                return Task.FromResult(AuthenticateResult.NoResult());
            }

            var claims = new List<Claim> { new(ClaimTypes.Name, name!) };
            if (name == "boss")
            {
                claims.Add(new Claim(ClaimTypes.Role, "admin"));
            }

            var principal = new ClaimsPrincipal(new ClaimsIdentity(claims, Scheme.Name));
            return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(principal, Scheme.Name)));
        }
    }
}
