using System.Buffers.Binary;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;
using Dispatcher.Transports.WebSocket.Internal;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http.Timeouts;
using Microsoft.Extensions.DependencyInjection;

namespace Dispatcher.Transports.Tests;

/// <summary>The endpoint's own HTTP/1.1 upgrade, seen by a client that checks every byte, and frames sent in batches.</summary>
public sealed class WebSocketUpgradeTests
{
    [Fact]
    public void AcceptKey_IsTheRfc6455Example() =>
        Assert.Equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", WebSocketUpgrade.AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="));

    [Fact]
    public async Task RawClient_GetsA101WithTheAcceptKey_AnswersToMaskedFrames_AndKeepAliveFrames()
    {
        await using var server = await TestServer.StartAsync(host: b => b.Services.Configure<WebSocketOptions>(o => o.KeepAliveInterval = TimeSpan.FromMilliseconds(200)));
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(server.Http.Host, server.Http.Port);
        var stream = tcp.GetStream();
        var request = $"GET / HTTP/1.1\r\nHost: {server.Http.Authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request));

        var head = await ReadHeadAsync(stream);
        Assert.StartsWith("HTTP/1.1 101 ", head, StringComparison.Ordinal);
        Assert.Contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", head, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("\r\nUpgrade: websocket\r\n", head, StringComparison.OrdinalIgnoreCase);

        await WriteMaskedTextAsync(stream, """{"namespace":"rpc","name":"identify","id":"raw","args":""}""");
        // On a loaded machine the 200 ms keep-alive frame can come before the reply: control frames are skipped here
        // and counted, and one must come in any case.
        var keepAlives = 0;
        var (opcode, payload) = await ReadFrameAsync(stream);
        while (opcode is 0x9 or 0xA)
        {
            keepAlives++;
            (opcode, payload) = await ReadFrameAsync(stream);
        }
        Assert.Equal(1, opcode);
        Assert.Equal("raw", (string?)JsonNode.Parse(payload)!["id"]);

        // Nothing more is asked: the server's keep-alive frame (a ping or an unsolicited pong) still comes, not held back.
        if (keepAlives == 0)
        {
            var (keepAlive, _) = await ReadFrameAsync(stream).AsTask().WaitAsync(TestServer.Patience);
            Assert.True(keepAlive is 0x9 or 0xA, $"expected a ping or pong frame, got opcode {keepAlive}");
        }
    }

    [Fact]
    public async Task HostRequestTimeoutPolicy_DoesNotEndTheConnection()
    {
        await using var server = await TestServer.StartAsync(
            host: b => b.Services.AddRequestTimeouts(o => o.DefaultPolicy = new RequestTimeoutPolicy { Timeout = TimeSpan.FromMilliseconds(100) }),
            pipeline: app => app.UseRequestTimeouts());
        await using var client = await server.ConnectAsync("admin");

        // Well past the host's request timeout, the connection still answers.
        await Task.Delay(TimeSpan.FromMilliseconds(600));
        var reply = await client.RequestAsync("rpc", "identify", "");

        Assert.Equal("response", (string?)reply["name"]);
    }

    [Fact]
    public async Task BurstOfEvents_ArrivesWhole_InOrder_ForEverySubscriber()
    {
        await using var server = await TestServer.StartAsync();
        var clients = new List<WsClient>();
        for (var i = 0; i < 3; i++)
        {
            var client = await server.ConnectAsync("admin");
            await client.RequestAsync("events", "subscribe", "dispatcher");
            clients.Add(client);
        }

        const int Jobs = 150;
        for (var i = 0; i < Jobs; i++)
        {
            await server.Dispatcher.EnqueueAsync(new JobRequest($"burst{i}", ["true"]));
        }

        await Task.WhenAll(clients.Select(async client =>
        {
            var pending = new List<string>();
            var finished = new HashSet<string>();
            while (finished.Count < Jobs)
            {
                // Each frame parses on its own: batching never merged or split messages.
                var frame = await client.ReceiveAsync(f => (string?)f["name"] == "dispatcher");
                var args = frame["args"]!;
                var id = (string)args["process_id"]!;
                switch ((string?)args["state"])
                {
                    case "pending":
                        pending.Add(id);
                        break;
                    case "finished":
                        Assert.Contains(id, pending);
                        Assert.True(finished.Add(id), $"{id} finished twice");
                        break;
                }
            }

            Assert.Equal(Enumerable.Range(0, Jobs).Select(i => $"burst{i}"), pending);
            await client.DisposeAsync();
        }));
    }

    private static async Task<string> ReadHeadAsync(NetworkStream stream)
    {
        var head = new List<byte>();
        var one = new byte[1];
        while (head.Count < 4 || !head.TakeLast(4).SequenceEqual("\r\n\r\n"u8.ToArray()))
        {
            Assert.Equal(1, await stream.ReadAsync(one).AsTask().WaitAsync(TestServer.Patience));
            head.Add(one[0]);
        }

        return Encoding.ASCII.GetString([.. head]);
    }

    private static async Task WriteMaskedTextAsync(NetworkStream stream, string text)
    {
        var payload = Encoding.UTF8.GetBytes(text);
        Assert.True(payload.Length < 126);
        var mask = new byte[] { 0x12, 0x34, 0x56, 0x78 };
        var frame = new byte[2 + 4 + payload.Length];
        frame[0] = 0x81;
        frame[1] = (byte)(0x80 | payload.Length);
        mask.CopyTo(frame, 2);
        for (var i = 0; i < payload.Length; i++)
        {
            frame[6 + i] = (byte)(payload[i] ^ mask[i % 4]);
        }

        await stream.WriteAsync(frame);
    }

    private static async ValueTask<(int Opcode, byte[] Payload)> ReadFrameAsync(NetworkStream stream)
    {
        var header = new byte[2];
        await stream.ReadExactlyAsync(header);
        Assert.Equal(0x80, header[0] & 0x80); // FIN: the server sends whole messages
        Assert.Equal(0, header[1] & 0x80);    // server frames are not masked
        long length = header[1] & 0x7F;
        if (length == 126)
        {
            var extended = new byte[2];
            await stream.ReadExactlyAsync(extended);
            length = BinaryPrimitives.ReadUInt16BigEndian(extended);
        }
        else if (length == 127)
        {
            var extended = new byte[8];
            await stream.ReadExactlyAsync(extended);
            length = (long)BinaryPrimitives.ReadUInt64BigEndian(extended);
        }

        var payload = new byte[length];
        await stream.ReadExactlyAsync(payload);
        return (header[0] & 0x0F, payload);
    }
}
