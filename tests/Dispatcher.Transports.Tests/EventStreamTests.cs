using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;

namespace Dispatcher.Transports.Tests;

/// <summary><c>GET /events/dispatcher</c>: the dispatcher's events as Server-Sent Events (issue 16).</summary>
public sealed class EventStreamTests
{
    [Fact]
    public async Task Get_WithoutCredentials_Gets401WithTheErrorEnvelope()
    {
        await using var server = await TestServer.StartAsync();
        using var response = await server.Client.GetAsync("/events/dispatcher");
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Contains("Basic", response.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
        Assert.Equal("401", (string?)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["args"]!["code"]);
    }

    [Fact]
    public async Task Get_WithAWrongPassword_Gets401()
    {
        await using var server = await TestServer.StartAsync();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/events/dispatcher");
        request.Headers.Authorization = TestServer.Basic("reader", "wrong");
        using var response = await server.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
    }

    [Fact]
    public async Task Get_WithReadAccess_StreamsAJobsEventsLive_NumberedById()
    {
        await using var server = await TestServer.StartAsync();
        await using var sse = await SseReader.OpenAsync(server, TestServer.Basic("reader"));
        Assert.Equal("text/event-stream", sse.MediaType);

        await server.Dispatcher.EnqueueAsync(new JobRequest("live", ["echo hi"]));
        var events = await sse.ReadUntilAsync(e => e.State == "finished");
        Assert.Equal("pending", events[0].State);
        Assert.All(events, e => Assert.Equal("dispatcher", e.Event));
        Assert.All(events, e => Assert.Equal(e.Id, (string?)e.Data["seq"]!.ToString()));
        Assert.Equal("hi\n", (string?)events[^1].Data["args"]!["process_details"]!["echo hi"]);
    }

    [Fact]
    public async Task Get_WithLastEventId_ResumesAfterIt_EachEventOnce()
    {
        await using var server = await TestServer.StartAsync();
        List<SseEvent> all;
        await using (var sse = await SseReader.OpenAsync(server, TestServer.Basic("admin")))
        {
            for (var i = 0; i < 3; i++)
            {
                await server.Dispatcher.EnqueueAsync(new JobRequest($"j{i}", ["true"]));
            }

            var finished = 0;
            all = await sse.ReadUntilAsync(e => e.State == "finished" && ++finished == 3);
        }

        // Reconnect as a browser's EventSource would, with the id of the third event.
        await using var resumed = await SseReader.OpenAsync(server, TestServer.Basic("admin"), lastEventId: all[2].Id);
        var replay = new List<SseEvent>();
        for (var i = 3; i < all.Count; i++)
        {
            replay.Add(await resumed.ReadAsync());
        }

        Assert.Equal(all.Skip(3).Select(e => e.Id), replay.Select(e => e.Id));
        Assert.Equal(all.Skip(3).Select(e => e.Data.ToJsonString()), replay.Select(e => e.Data.ToJsonString()));
        await server.Dispatcher.EnqueueAsync(new JobRequest("next", ["true"]));
        var next = await resumed.ReadAsync();
        Assert.Equal(long.Parse(all[^1].Id!) + 1, long.Parse(next.Id!));
        Assert.Equal("next", (string?)next.Data["args"]!["process_id"]);
    }

    [Fact]
    public async Task Get_WithABadLastEventId_Gets400()
    {
        await using var server = await TestServer.StartAsync();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/events/dispatcher");
        request.Headers.Authorization = TestServer.Basic("reader");
        request.Headers.Add("Last-Event-ID", "abc");
        using var response = await server.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("Last-Event-ID", (string?)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["args"]!["message"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Get_WithABearerToken_EndsWhenTheTokenIsRevoked()
    {
        await using var server = await TestServer.StartAsync();
        await using var ws = await server.ConnectAsync();
        var token = (string)(await ws.RequestAsync("rpc", "auth", new JsonObject { ["username"] = "admin", ["password"] = "admin-secret" }))["args"]![0]!;
        await using var sse = await SseReader.OpenAsync(server, new AuthenticationHeaderValue("Bearer", token));
        await server.Dispatcher.EnqueueAsync(new JobRequest("before", ["true"]));
        await sse.ReadUntilAsync(e => e.State == "finished");

        // Revoke the token on the WebSocket that got it; the stream ends at its next event with an error event.
        Assert.Equal("response", (string?)(await ws.RequestAsync("rpc", "auth_clear", new JsonObject()))["name"]);

        await server.Dispatcher.EnqueueAsync(new JobRequest("after", ["true"]));
        var end = await sse.ReadAsync();
        Assert.Equal("error", end.Event);
        Assert.Equal("401", (string?)end.Data["code"]);
        Assert.Null(await sse.TryReadAsync());
    }
}

internal sealed record SseEvent(string? Id, string? Event, JsonNode Data)
{
    public string? State => (string?)Data["args"]?["state"];
}

/// <summary>A real HttpClient reading <c>text/event-stream</c> block by block.</summary>
internal sealed class SseReader : IAsyncDisposable
{
    private readonly HttpResponseMessage _response;
    private readonly StreamReader _reader;
    private readonly CancellationTokenSource _timeout = new(TestServer.Patience);

    private SseReader(HttpResponseMessage response, StreamReader reader)
    {
        _response = response;
        _reader = reader;
    }

    public string? MediaType => _response.Content.Headers.ContentType?.MediaType;

    public static async Task<SseReader> OpenAsync(TestServer server, AuthenticationHeaderValue auth, string? lastEventId = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/events/dispatcher");
        request.Headers.Authorization = auth;
        if (lastEventId is not null)
        {
            request.Headers.Add("Last-Event-ID", lastEventId);
        }

        var response = await server.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return new SseReader(response, new StreamReader(await response.Content.ReadAsStreamAsync()));
    }

    public async Task<SseEvent> ReadAsync() => await TryReadAsync() ?? throw new EndOfStreamException("The event stream ended.");

    /// <summary>The next event (comments skipped), or null at the end of the stream.</summary>
    public async Task<SseEvent?> TryReadAsync()
    {
        string? id = null, name = null, data = null;
        while (await _reader.ReadLineAsync(_timeout.Token) is { } line)
        {
            if (line.Length == 0)
            {
                if (data is not null)
                {
                    return new SseEvent(id, name, JsonNode.Parse(data)!);
                }

                continue;
            }

            if (line.StartsWith(':'))
            {
                continue;
            }

            var colon = line.IndexOf(':', StringComparison.Ordinal);
            var field = line[..colon];
            var value = line[(colon + 1)..].TrimStart(' ');
            switch (field)
            {
                case "id": id = value; break;
                case "event": name = value; break;
                case "data": data = data is null ? value : data + "\n" + value; break;
            }
        }

        return null;
    }

    public async Task<List<SseEvent>> ReadUntilAsync(Func<SseEvent, bool> last)
    {
        var events = new List<SseEvent>();
        while (true)
        {
            var e = await ReadAsync();
            events.Add(e);
            if (last(e))
            {
                return events;
            }
        }
    }

    public ValueTask DisposeAsync()
    {
        _reader.Dispose();
        _response.Dispose();
        _timeout.Dispose();
        return ValueTask.CompletedTask;
    }
}
