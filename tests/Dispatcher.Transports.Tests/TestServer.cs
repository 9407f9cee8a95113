using System.Net;
using System.Net.Sockets;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;
using Dispatcher.Protocol;
using Dispatcher.Transports.WebSocket;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Dispatcher.Transports.Tests;

/// <summary>A real Kestrel on 127.0.0.1 with a free port, serving both transports, with users admin (full) and reader (read).</summary>
internal sealed class TestServer : IAsyncDisposable
{
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private readonly WebApplication _app;

    private TestServer(WebApplication app, Uri http)
    {
        _app = app;
        Http = http;
        WebSocketUri = new Uri($"ws://{http.Authority}/");
        Client = new HttpClient { BaseAddress = http, Timeout = Patience };
    }

    public Uri Http { get; }

    public Uri WebSocketUri { get; }

    public HttpClient Client { get; }

    public IServiceProvider Services => _app.Services;

    public IDispatcher Dispatcher => _app.Services.GetRequiredService<IDispatcher>();

    public static async Task<TestServer> StartAsync(
        Action<WebSocketTransportOptions>? webSocket = null,
        Action<DispatcherProtocolOptions>? protocol = null,
        Action<IDispatcherBuilder>? dispatcher = null,
        Action<WebApplicationBuilder>? host = null,
        Action<WebApplication>? pipeline = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        host?.Invoke(builder);
        builder.WebHost.UseKestrel(o => o.Listen(IPAddress.Loopback, 0));
        if (Environment.GetEnvironmentVariable("DISPATCHER_TEST_LOG") == "1")
        {
            builder.Logging.AddConsole().SetMinimumLevel(LogLevel.Debug);
        }

        var d = builder.Services.AddDispatcher(o => o.KillGracePeriod = TimeSpan.FromSeconds(1))
            .AddWebSocketTransport(webSocket)
            .AddHttpTransport()
            .UseAuthenticator<TestAuthenticator>()
            .ConfigureProtocol(o =>
            {
                o.HostName = "testhost";

                // These tests check every job's events; the sysadm shape (the default) has its own tests.
                o.EventShape = DispatcherEventShape.Nested;
                o.EventUpdateInterval = TimeSpan.FromMilliseconds(100);
                protocol?.Invoke(o);
            });
        dispatcher?.Invoke(d);
        var app = builder.Build();
        pipeline?.Invoke(app);
        app.MapDispatcherWebSocket("/");
        app.MapDispatcherHttp();
        await app.StartAsync();
        return new TestServer(app, new Uri(app.Urls.First()));
    }

    public async Task<WsClient> ConnectAsync(string? user = null, int? receiveBufferBytes = null)
    {
        var client = await WsClient.ConnectAsync(WebSocketUri, receiveBufferBytes: receiveBufferBytes);
        if (user is not null)
        {
            var reply = await client.RequestAsync("rpc", "auth", new JsonObject { ["username"] = user, ["password"] = TestAuthenticator.PasswordOf(user) });
            Assert.Equal("response", (string?)reply["name"]);
        }

        return client;
    }

    public static AuthenticationHeaderValue Basic(string user, string? password = null) =>
        new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password ?? TestAuthenticator.PasswordOf(user)}")));

    public async Task<(HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response)> PutAsync(string path, string body, string? user = "admin",
        string contentType = "application/json", HttpMethod? method = null)
    {
        using var request = new HttpRequestMessage(method ?? HttpMethod.Put, path)
        {
            Content = new StringContent(body, Encoding.UTF8),
        };
        request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        if (user is not null)
        {
            request.Headers.Authorization = Basic(user);
        }

        var response = await Client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? null : JsonNode.Parse(text), response);
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

internal sealed class TestAuthenticator : IDispatcherAuthenticator
{
    public static string PasswordOf(string user) => user + "-secret";

    public ValueTask<DispatcherUser?> AuthenticateAsync(string username, string password, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult<DispatcherUser?>(password != PasswordOf(username) ? null : username switch
        {
            "admin" => new DispatcherUser("admin", DispatcherAccess.Full),
            "reader" => new DispatcherUser("reader", DispatcherAccess.Read),
            _ => null,
        });
}

/// <summary>A real ClientWebSocket speaking the envelope.</summary>
internal sealed class WsClient : IAsyncDisposable
{
    private readonly ClientWebSocket _socket;
    private int _nextId;

    private WsClient(ClientWebSocket socket) => _socket = socket;

    public ClientWebSocket Socket => _socket;

    /// <summary>Connects; <paramref name="receiveBufferBytes"/> fixes the TCP receive buffer (no autotuning: the network holds little).</summary>
    public static async Task<WsClient> ConnectAsync(Uri uri, (string Name, string Value)? header = null, int? receiveBufferBytes = null)
    {
        var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Origin", "sysadm-client");
        if (header is { } h)
        {
            socket.Options.SetRequestHeader(h.Name, h.Value);
        }

        using var timeout = new CancellationTokenSource(TestServer.Patience);
        if (receiveBufferBytes is { } size)
        {
            using var handler = new SocketsHttpHandler
            {
                ConnectCallback = async (context, ct) =>
                {
                    var tcp = new Socket(SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = size, NoDelay = true };
                    await tcp.ConnectAsync(context.DnsEndPoint, ct);
                    return new NetworkStream(tcp, ownsSocket: true);
                },
            };
            await socket.ConnectAsync(uri, new HttpMessageInvoker(handler, disposeHandler: false), timeout.Token);
        }
        else
        {
            await socket.ConnectAsync(uri, timeout.Token);
        }

        return new WsClient(socket);
    }

    public Task SendTextAsync(string text) =>
        _socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, CancellationToken.None);

    public Task SendBinaryAsync(byte[] data) =>
        _socket.SendAsync(data, WebSocketMessageType.Binary, true, CancellationToken.None);

    /// <summary>Sends a request with a fresh id and returns the first frame that carries that id (events are skipped).</summary>
    public async Task<JsonNode> RequestAsync(string ns, string name, JsonNode? args)
    {
        var id = $"req-{Interlocked.Increment(ref _nextId)}";
        var envelope = new JsonObject { ["namespace"] = ns, ["name"] = name, ["id"] = id, ["args"] = args };
        await SendTextAsync(envelope.ToJsonString());
        return await ReceiveAsync(frame => (string?)frame["id"] == id);
    }

    public Task<JsonNode> DispatcherAsync(JsonObject args) => RequestAsync("rpc", "dispatcher", args);

    /// <summary>Receives frames until one matches, answering a server close with CloseOutputAsync.</summary>
    public async Task<JsonNode> ReceiveAsync(Func<JsonNode, bool>? match = null)
    {
        using var cts = new CancellationTokenSource(TestServer.Patience);
        while (true)
        {
            var text = await ReceiveTextAsync(cts.Token) ?? throw new WebSocketException($"closed by the server: {_socket.CloseStatus} {_socket.CloseStatusDescription}");
            var frame = JsonNode.Parse(text)!;
            if (match is null || match(frame))
            {
                return frame;
            }
        }
    }

    /// <summary>One whole message, or null when the server closed the connection.</summary>
    public async Task<string?> ReceiveTextAsync(CancellationToken cancellationToken)
    {
        var buffer = new byte[64 * 1024];
        using var message = new MemoryStream();
        while (true)
        {
            var result = await _socket.ReceiveAsync(buffer, cancellationToken);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                if (_socket.State == WebSocketState.CloseReceived)
                {
                    await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
                }

                return null;
            }

            message.Write(buffer, 0, result.Count);
            if (result.EndOfMessage)
            {
                return Encoding.UTF8.GetString(message.ToArray());
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_socket.State == WebSocketState.Open)
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                await _socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException)
        {
        }

        _socket.Dispose();
    }
}

internal static class JsonAssert
{
    /// <summary>Equal as JSON values: object members in any order (JsonNode.DeepEquals needs .NET 9; the tests also run on .NET 8).</summary>
    public static void Equal(JsonNode? expected, JsonNode? actual) =>
        Assert.True(Canonical(expected) == Canonical(actual), $"Expected:\n{expected?.ToJsonString()}\nActual:\n{actual?.ToJsonString()}");

    private static string Canonical(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject o => "{" + string.Join(",", o.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => JsonValue.Create(kv.Key).ToJsonString() + ":" + Canonical(kv.Value))) + "}",
        JsonArray a => "[" + string.Join(",", a.Select(Canonical)) + "]",
        _ => node.ToJsonString(),
    };

    public static JsonNode Golden(string name) => JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Golden", name)))!;

    public static void IsError(JsonNode reply, int code)
    {
        Assert.Equal("error", (string?)reply["namespace"]);
        Assert.Equal("error", (string?)reply["name"]);
        Assert.Equal(code.ToString(System.Globalization.CultureInfo.InvariantCulture), (string?)reply["args"]!["code"]);
        Assert.False(string.IsNullOrWhiteSpace((string?)reply["args"]!["message"]));
    }
}

/// <summary>A directory with a fake <c>pkg</c> program that sleeps, so the spec's example command runs for real.</summary>
internal sealed class FakePkg : IDisposable
{
    public FakePkg()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("fake-pkg-").FullName;
        var pkg = Path.Combine(Directory, "pkg");
        File.WriteAllText(pkg, "#!/bin/sh\necho \"pkg $*\"\nexec sleep 300\n");
        File.SetUnixFileMode(pkg, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    public string Directory { get; }

    public IReadOnlyDictionary<string, string> Environment => new Dictionary<string, string>
    {
        ["PATH"] = $"{Directory}:{System.Environment.GetEnvironmentVariable("PATH")}",
    };

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);
}
