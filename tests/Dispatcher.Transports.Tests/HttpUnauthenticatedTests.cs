using System.Net;

namespace Dispatcher.Transports.Tests;

/// <summary>What a REST client without credentials is told: REST advice, not the WebSocket's in-band login.</summary>
public sealed class HttpUnauthenticatedTests
{
    [Fact]
    public async Task Put_WithoutCredentials_Gets401_ThatNamesBasicAndBearer()
    {
        await using var server = await TestServer.StartAsync();

        var (status, body, response) = await server.PutAsync("/rpc/dispatcher", """{"action":"list"}""", user: null);

        Assert.Equal(HttpStatusCode.Unauthorized, status);
        var message = (string?)body!["args"]!["message"];
        Assert.Contains("Authorization", message, StringComparison.Ordinal);
        Assert.Contains("Basic", message, StringComparison.Ordinal);
        Assert.Contains("Bearer", message, StringComparison.Ordinal);
        Assert.DoesNotContain("rpc/auth or rpc/auth_token first", message, StringComparison.Ordinal);
        Assert.Contains("Basic", response.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task WebSocket_WithoutLogin_IsStillToldToSendRpcAuth()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = await server.ConnectAsync();

        var reply = await client.DispatcherAsync(new System.Text.Json.Nodes.JsonObject { ["action"] = "list" });

        Assert.Equal("401", (string?)reply["args"]!["code"]);
        Assert.Contains("rpc/auth", (string?)reply["args"]!["message"], StringComparison.Ordinal);
    }
}
