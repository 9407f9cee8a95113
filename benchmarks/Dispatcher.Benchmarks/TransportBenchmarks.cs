using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;
using Dispatcher.Protocol;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static Dispatcher.Benchmarks.Stats;

namespace Dispatcher.Benchmarks;

/// <summary>A real Kestrel on 127.0.0.1 serving both transports, and real clients.</summary>
internal sealed class BenchServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private BenchServer(WebApplication app)
    {
        _app = app;
        var url = app.Urls.First();
        Http = new HttpClient { BaseAddress = new Uri(url) };
        Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes("bench:bench")));
        WebSocketUri = new Uri(url.Replace("http://", "ws://", StringComparison.Ordinal) + "/");
    }

    public HttpClient Http { get; }

    public Uri WebSocketUri { get; }

    public IDispatcher Dispatcher => _app.Services.GetRequiredService<IDispatcher>();

    public static async Task<BenchServer> StartAsync(Action<IDispatcherBuilder>? configure = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseKestrel(o => o.Listen(IPAddress.Loopback, 0));
        builder.Logging.ClearProviders();
        var d = builder.Services.AddDispatcher(o =>
            {
                o.RetainedJobCount = 100_000;
                o.Queues["bench8"] = new QueueOptions { MaxConcurrency = 8 };
            })
            .AddWebSocketTransport()
            .AddHttpTransport()
            .UseAuthenticator<BenchAuthenticator>();
        configure?.Invoke(d);
        var app = builder.Build();
        app.MapDispatcherWebSocket("/");
        app.MapDispatcherHttp();
        await app.StartAsync();
        return new BenchServer(app);
    }

    public async Task<ClientWebSocket> ConnectAsync()
    {
        var ws = new ClientWebSocket();
        await ws.ConnectAsync(WebSocketUri, CancellationToken.None);
        await SendAsync(ws, """{"namespace":"rpc","name":"auth","id":"a","args":{"username":"bench","password":"bench"}}""");
        await ReceiveAsync(ws);
        return ws;
    }

    public static Task SendAsync(ClientWebSocket ws, string text) =>
        ws.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, CancellationToken.None);

    public static async Task<string> ReceiveAsync(ClientWebSocket ws, byte[]? buffer = null)
    {
        buffer ??= new byte[1 << 20];
        var count = 0;
        while (true)
        {
            if (count == buffer.Length)
            {
                Array.Resize(ref buffer, buffer.Length * 2);
            }

            var r = await ws.ReceiveAsync(buffer.AsMemory(count), CancellationToken.None);
            count += r.Count;
            if (r.EndOfMessage)
            {
                return Encoding.UTF8.GetString(buffer, 0, count);
            }
        }
    }

    /// <summary>One whole message into <paramref name="buffer"/> (which must hold it), its length in bytes: no string per frame.</summary>
    public static async Task<int> ReceiveBytesAsync(ClientWebSocket ws, byte[] buffer)
    {
        var count = 0;
        while (true)
        {
            var r = await ws.ReceiveAsync(buffer.AsMemory(count), CancellationToken.None);
            count += r.Count;
            if (r.EndOfMessage)
            {
                return count;
            }

            if (count == buffer.Length)
            {
                throw new InvalidOperationException($"A frame over {buffer.Length} bytes.");
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Dispatcher.KillAsync(Dispatcher.List().Select(j => j.Id));
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private sealed class BenchAuthenticator : IDispatcherAuthenticator
    {
        public ValueTask<DispatcherUser?> AuthenticateAsync(string username, string password, CancellationToken cancellationToken = default) =>
            ValueTask.FromResult<DispatcherUser?>(username == "bench" && password == "bench" ? new DispatcherUser("bench", DispatcherAccess.Full) : null);
    }
}

internal static class TransportBenchmarks
{
    /// <summary>`list` round trips with 10 000 pending jobs, over WebSocket and over HTTP, against an empty `list`.</summary>
    public static async Task ListAsync(Report report, int samples)
    {
        await using var server = await BenchServer.StartAsync();
        using var ws = await server.ConnectAsync();
        var empty = (Ws: await SampleAsync(() => WsListAsync(ws), samples), Http: await SampleAsync(() => HttpListAsync(server.Http), samples));

        await server.Dispatcher.EnqueueAsync(new JobRequest("blocker", ["sleep 3600"]) { Queue = DispatcherQueues.PkgQueue });
        for (var i = 0; i < 10_000; i++)
        {
            await server.Dispatcher.EnqueueAsync(new JobRequest($"p{i}", ["pkg install -y misc/pcbsd-meta-mate"]) { Queue = DispatcherQueues.PkgQueue });
        }

        var full = (Ws: await SampleAsync(() => WsListAsync(ws), samples), Http: await SampleAsync(() => HttpListAsync(server.Http), samples));
        var bytes = (await HttpListAsync(server.Http)).Length;
        report.Add("`list` over WebSocket, 10 000 pending jobs", $"p50 {F(Median(full.Ws), 2)} ms, p99 {F(Percentile(full.Ws, 99), 2)} ms",
            $"empty `list` p50 {F(Median(empty.Ws), 2)} ms", $"{F(Median(full.Ws) / Median(empty.Ws), 1)}×", "≤ 10 ms p50", Median(full.Ws) <= 10,
            $"reply {bytes / 1024} KiB; {samples} round trips");
        report.Add("`list` over HTTP, 10 000 pending jobs", $"p50 {F(Median(full.Http), 2)} ms, p99 {F(Percentile(full.Http, 99), 2)} ms",
            $"empty `list` p50 {F(Median(empty.Http), 2)} ms", $"{F(Median(full.Http) / Median(empty.Http), 1)}×", "≤ 10 ms p50", Median(full.Http) <= 10,
            $"{samples} round trips");
        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
    }

    private static async Task<List<double>> SampleAsync(Func<Task<string>> call, int samples)
    {
        for (var i = 0; i < 10; i++)
        {
            await call(); // warm up
        }

        var times = new List<double>(samples);
        for (var i = 0; i < samples; i++)
        {
            var t0 = Stopwatch.GetTimestamp();
            await call();
            times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
        }

        return times;
    }

    private static readonly byte[] Buffer = new byte[4 << 20];

    private static async Task<string> WsListAsync(ClientWebSocket ws)
    {
        await BenchServer.SendAsync(ws, """{"namespace":"rpc","name":"dispatcher","id":"l","args":{"action":"list"}}""");
        return await BenchServer.ReceiveAsync(ws, Buffer);
    }

    private static async Task<string> HttpListAsync(HttpClient http)
    {
        using var response = await http.PutAsync("/rpc/dispatcher", new StringContent("""{"action":"list"}""", Encoding.UTF8, "application/json"));
        return await response.Content.ReadAsStringAsync();
    }

    /// <summary>100 WebSocket subscribers, 1 000 jobs: every pending and finished event reaches every subscriber, and how late.</summary>
    public static async Task EventsAsync(Report report, int subscribers, int jobs)
    {
        // A first round that is not reported warms the server and the clients up (JIT tiers): the figure is the
        // steady state of a server that has been running, not its first two seconds.
        await EventsRoundAsync(null, subscribers, jobs, jobsPerSecond: null);
        await EventsRoundAsync(report, subscribers, jobs, jobsPerSecond: null);
        await EventsRoundAsync(report, subscribers, jobs, jobsPerSecond: 250);
        await EventsRoundAsync(report, subscribers, jobs, jobsPerSecond: 500);
    }

    /// <summary>
    /// Every subscriber must see every pending and finished event; latency is measured on finished events. The jobs are enqueued
    /// all at once (<paramref name="jobsPerSecond"/> null: 1 000 pending events reach each subscriber before the first finished
    /// one), or at a steady rate.
    /// </summary>
    private static async Task EventsRoundAsync(Report? report, int subscribers, int jobs, int? jobsPerSecond)
    {
        await using var server = await BenchServer.StartAsync();
        var clients = new List<ClientWebSocket>();
        for (var i = 0; i < subscribers; i++)
        {
            var ws = await server.ConnectAsync();
            await BenchServer.SendAsync(ws, """{"namespace":"events","name":"subscribe","id":"s","args":{"channels":["dispatcher"],"shape":"nested"}}""");
            await BenchServer.ReceiveAsync(ws);
            clients.Add(ws);
        }

        var latencies = new List<double>[subscribers];
        var pending = new int[subscribers];
        var finished = new int[subscribers];
        var readers = clients.Select((ws, c) => Task.Run(async () =>
        {
            latencies[c] = new List<double>(jobs);
            var buffer = new byte[1 << 20];
            while (finished[c] < jobs)
            {
                // A subscriber as light as a real client that only watches states: no JSON tree and no string per frame, just the
                // two markers it needs in the bytes received (100 subscribers share this process, and its garbage collector, with
                // the server: a string per frame was 200 000 strings a round, and the collections they caused paused the server
                // inside the measured latency).
                var frame = buffer.AsSpan(0, await BenchServer.ReceiveBytesAsync(ws, buffer));
                var now = DateTimeOffset.UtcNow;
                if (frame.StartsWith("{\"args\":{\"state\":\"pending\""u8))
                {
                    pending[c]++;
                }
                else if (frame.StartsWith("{\"args\":{\"state\":\"finished\""u8))
                {
                    finished[c]++;
                    var at = frame.IndexOf("\"time_finished\":\""u8) + 17;
                    var end = frame[at..].IndexOf((byte)'"');
                    latencies[c].Add((now - DateTimeOffset.Parse(Encoding.ASCII.GetString(frame.Slice(at, end)), CultureInfo.InvariantCulture)).TotalMilliseconds);
                }
            }
        })).ToArray();

        var pause0 = GC.GetTotalPauseDuration();
        var sw = Stopwatch.StartNew();
        for (var i = 0; i < jobs; i++)
        {
            if (jobsPerSecond is { } rate && TimeSpan.FromSeconds((double)i / rate) - sw.Elapsed is { Ticks: > 0 } wait)
            {
                await Task.Delay(wait);
            }

            await server.Dispatcher.EnqueueAsync(new JobRequest($"e{i}", ["true"]) { Queue = "bench8" });
        }

        try
        {
            await Task.WhenAll(readers).WaitAsync(TimeSpan.FromMinutes(1));
        }
        catch (TimeoutException)
        {
            // Some subscriber never got all its events: the count below says how many were lost.
        }

        sw.Stop();
        var paused = GC.GetTotalPauseDuration() - pause0;
        var all = latencies.SelectMany(l => l).ToList();
        var lost = (subscribers * jobs * 2) - pending.Sum() - finished.Sum();
        report?.Add($"events: {subscribers} WebSocket subscribers, {jobs} jobs " + (jobsPerSecond is { } r ? $"enqueued at {r}/s" : "enqueued at once"), $"{lost} lost; delivery p50 {F(Median(all), 1)} ms, p99 {F(Percentile(all, 99), 1)} ms",
            "—", "—", "zero lost, p99 ≤ 50 ms", lost == 0 && Percentile(all, 99) <= 50,
            $"{subscribers * jobs * 2} pending+finished frames checked, plus running frames; {F(sw.Elapsed.TotalSeconds, 1)} s; the process's GC (server and clients) paused {F(paused.TotalMilliseconds, 0)} ms; latency = receipt − `time_finished` (ms clock)");
        foreach (var ws in clients)
        {
            ws.Abort();
            ws.Dispose();
        }
    }
}
