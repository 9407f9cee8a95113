using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Dispatcher.Transports.Tests;

/// <summary>The web template's <c>app.MapGet("/", …)</c> and <c>MapDispatcherWebSocket("/")</c> on one path, in either order.</summary>
public sealed class WebSocketEndpointRoutingTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task MapGetOnTheSamePath_UpgradeRequestsReachTheDispatcher_PlainGetsReachTheMapGet(bool mapGetFirst)
    {
        // Arrange: a real Kestrel with both endpoints on "/".
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseKestrel(o => o.Listen(IPAddress.Loopback, 0));
        builder.Logging.ClearProviders();
        builder.Services.AddDispatcher().AddWebSocketTransport().UseAuthenticator<TestAuthenticator>();
        await using var app = builder.Build();
        if (mapGetFirst)
        {
            app.MapGet("/", () => "Hello World!");
            app.MapDispatcherWebSocket("/");
        }
        else
        {
            app.MapDispatcherWebSocket("/");
            app.MapGet("/", () => "Hello World!");
        }

        await app.StartAsync();
        try
        {
            var http = new Uri(app.Urls.First());

            // Act and assert: the upgrade speaks the protocol...
            await using (var ws = await WsClient.ConnectAsync(new Uri($"ws://{http.Authority}/")))
            {
                var identify = await ws.RequestAsync("rpc", "identify", "");
                Assert.Equal("server", (string?)identify["args"]!["type"]);
            }

            // ...and a plain GET still gets the page.
            using var client = new HttpClient { BaseAddress = http, Timeout = TestServer.Patience };
            Assert.Equal("Hello World!", await client.GetStringAsync("/"));
        }
        finally
        {
            await app.StopAsync();
        }
    }
}
