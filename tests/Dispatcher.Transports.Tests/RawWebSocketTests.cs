using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;
using Dispatcher.Transports.WebSocket;
using Microsoft.Extensions.DependencyInjection;

namespace Dispatcher.Transports.Tests;

/// <summary>The WebSocket session without ASP.NET Core: any System.Net.WebSockets.WebSocket, here over a plain TCP connection.</summary>
public sealed class RawWebSocketTests
{
    [Fact]
    public async Task Server_RunsOverAnyWebSocket_AndDoesNotDisposeIt()
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddDispatcher().AddWebSocketTransport().UseAuthenticator<TestAuthenticator>();
        await using var provider = services.BuildServiceProvider();
        var server = provider.GetRequiredService<DispatcherWebSocketServer>();

        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var clientTcp = new TcpClient();
        await clientTcp.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
        using var serverTcp = await listener.AcceptTcpClientAsync();
        using var serverSocket = System.Net.WebSockets.WebSocket.CreateFromStream(serverTcp.GetStream(), isServer: true, subProtocol: null, TimeSpan.FromMinutes(1));
        using var clientSocket = System.Net.WebSockets.WebSocket.CreateFromStream(clientTcp.GetStream(), isServer: false, subProtocol: null, TimeSpan.FromMinutes(1));
        var session = server.RunAsync(serverSocket, "127.0.0.1");

        var auth = await RequestAsync(clientSocket, """{"namespace":"rpc","name":"auth","id":"a","args":{"username":"admin","password":"admin-secret"}}""");
        Assert.Equal("response", (string?)auth["name"]);
        var list = await RequestAsync(clientSocket, """{"namespace":"rpc","name":"dispatcher","id":"l","args":{"action":"list"}}""");
        Assert.Equal("""{"jobs":{}}""", list["args"]!.ToJsonString());

        await clientSocket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
        await session.WaitAsync(TestServer.Patience);

        // The session ended with the close handshake and left the socket to its owner: still usable, not disposed.
        Assert.Equal(WebSocketState.Closed, serverSocket.State);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, serverSocket.CloseStatus);
        Assert.Equal("bye", serverSocket.CloseStatusDescription);
    }

    private static async Task<JsonNode> RequestAsync(System.Net.WebSockets.WebSocket socket, string request)
    {
        await socket.SendAsync(Encoding.UTF8.GetBytes(request), WebSocketMessageType.Text, true, CancellationToken.None);
        var buffer = new byte[64 * 1024];
        var result = await socket.ReceiveAsync(buffer, new CancellationTokenSource(TestServer.Patience).Token);
        return JsonNode.Parse(buffer.AsSpan(0, result.Count))!;
    }
}
