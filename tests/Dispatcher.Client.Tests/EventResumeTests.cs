using System.Diagnostics;
using Dispatcher.Samples.Tests;

namespace Dispatcher.Client.Tests;

/// <summary>Events that survive a reconnect (issue 16): resume with "since", a gap when the server no longer holds them, SSE.</summary>
public sealed class EventResumeTests
{
    private const int Jobs = 1000;
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(3);

    [Fact]
    public async Task SubscribeAsync_DisconnectedDuringA1000JobBurst_EndsWithEveryEventExactlyOnce()
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var host = await SampleHost.StartAsync();
        var (events, before) = await BurstWithADisconnectAsync(host, cts.Token);

        Assert.DoesNotContain(events, e => e.Kind == RemoteEventKind.Gap);
        Assert.Contains(events, e => e.Kind == RemoteEventKind.Reconnected);
        Assert.True(before < Jobs, $"the subscriber had all {Jobs} finished events before the cut");
        var jobEvents = events.Where(e => e.Kind is RemoteEventKind.JobPending or RemoteEventKind.JobRunning or RemoteEventKind.JobFinished).ToList();
        foreach (var kind in new[] { RemoteEventKind.JobPending, RemoteEventKind.JobFinished })
        {
            var ids = jobEvents.Where(e => e.Kind == kind && e.JobId!.StartsWith("burst-", StringComparison.Ordinal)).Select(e => e.JobId).ToList();
            Assert.Equal(Jobs, ids.Count);
            Assert.Equal(Jobs, ids.Distinct().Count());
        }

        // Every numbered event once, none missing: the sequence numbers are consecutive across the reconnect.
        var seqs = jobEvents.Select(e => e.Sequence!.Value).ToList();
        Assert.Equal(Enumerable.Range(0, seqs.Count).Select(i => seqs[0] + i), seqs);
    }

    [Fact]
    public async Task SubscribeAsync_DisconnectedLongerThanTheBufferHolds_GetsAnExplicitGap_ThenCompleteEvents()
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var host = await SampleHost.StartAsync(null, "--Dispatcher:Protocol:EventReplayCapacity=100");
        var (events, _) = await BurstWithADisconnectAsync(host, cts.Token, expectGap: true);

        var gapIndex = events.FindIndex(e => e.Kind == RemoteEventKind.Gap);
        Assert.True(gapIndex > 0, "no gap event");
        var gap = events[gapIndex];
        Assert.Equal("relist", (string?)gap.Args["action"]);
        Assert.Null(gap.JobId);

        // No event is yielded twice, and after the gap the numbers run on without a hole.
        var seqs = events.Where(e => e.Sequence is not null && e.Kind != RemoteEventKind.Reconnected).Select(e => e.Sequence!.Value).ToList();
        Assert.Equal(seqs.Count, seqs.Distinct().Count());
        var after = events.Skip(gapIndex).Where(e => e.Sequence is not null).Select(e => e.Sequence!.Value).ToList();
        Assert.Equal(Enumerable.Range(0, after.Count).Select(i => after[0] + i), after);
        Assert.Contains(events.Skip(gapIndex), e => e is { Kind: RemoteEventKind.JobFinished, JobId: "after-gap" });
    }

    [Fact]
    public async Task Curl_OnTheEventStream_ShowsAJobsEventsLive()
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var host = await SampleHost.StartAsync();
        await using var client = host.Client();
        var gate = Path.Combine(Path.GetTempPath(), "dispatcher-sse-" + Guid.NewGuid().ToString("N"));
        using var curl = Process.Start(new ProcessStartInfo("curl", ["-N", "-s", "-u", $"{SampleHost.User}:{SampleHost.Password}", $"{host.Url}events/dispatcher"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        })!;
        try
        {
            // curl is connected once it shows the event of a first job.
            var lines = new List<string>();
            await client.RunAsync(new RemoteJobSpec { Id = "curl-probe", Commands = ["true"] }, cts.Token);
            await ReadUntilAsync(curl, lines, l => l.Contains("\"finished\"", StringComparison.Ordinal) && l.Contains("curl-probe", StringComparison.Ordinal), cts.Token);

            // The job prints, then waits for the test: its output must reach curl while it still runs.
            await client.RunAsync(new RemoteJobSpec { Id = "curl-job", Commands = [$"sh -c \"echo started; while [ ! -e {gate} ]; do sleep 0.05; done; echo ended\""] }, cts.Token);
            await ReadUntilAsync(curl, lines, l => l.Contains("\"running\"", StringComparison.Ordinal) && l.Contains("started\\n", StringComparison.Ordinal), cts.Token);
            Assert.DoesNotContain(lines, l => l.Contains("curl-job", StringComparison.Ordinal) && l.Contains("\"finished\"", StringComparison.Ordinal));
            await File.WriteAllTextAsync(gate, string.Empty, cts.Token);
            await ReadUntilAsync(curl, lines, l => l.Contains("\"finished\"", StringComparison.Ordinal) && l.Contains("curl-job", StringComparison.Ordinal), cts.Token);

            Assert.Contains(lines, l => l.StartsWith("id: ", StringComparison.Ordinal));
            Assert.Contains(lines, l => l == "event: dispatcher");
            Assert.Contains(lines, l => l.StartsWith("data: ", StringComparison.Ordinal) && l.Contains("\"pending\"", StringComparison.Ordinal) && l.Contains("curl-job", StringComparison.Ordinal));
        }
        finally
        {
            curl.Kill();
            await curl.WaitForExitAsync(CancellationToken.None);
            File.Delete(gate);
        }
    }

    [Fact]
    public async Task HistoryAsync_WhenTheServerPagesTheHistory_ReadsEveryPage()
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var host = await SampleHost.StartAsync(null, "--Dispatcher:Protocol:HistoryPageSize=5");
        await using var client = host.Client();
        var ids = Enumerable.Range(0, 12).Select(i => $"h{i}").ToArray();
        await client.RunAsync(ids.Select(id => new RemoteJobSpec { Id = id, Commands = ["true"] }), cts.Token);
        foreach (var id in ids)
        {
            await client.WaitAsync(id, cts.Token);
        }

        Assert.Equal(ids.Order(StringComparer.Ordinal), (await client.HistoryAsync(null, cts.Token)).Select(r => r.Id).Order(StringComparer.Ordinal));
        Assert.Equal(7, (await client.HistoryAsync(ids.Skip(5), cts.Token)).Count);
    }

    /// <summary>
    /// Subscribes through a proxy, runs <see cref="Jobs"/> jobs, cuts the subscriber's connection in the middle of the burst and
    /// keeps it down until every job finished, then lets it reconnect and collects until a job run after the reconnect finished
    /// (with <paramref name="expectGap"/>, after the gap came).
    /// </summary>
    private static async Task<(List<RemoteEvent> Events, int FinishedBeforeCut)> BurstWithADisconnectAsync(SampleHost host, CancellationToken ct, bool expectGap = false)
    {
        await using var proxy = new TcpProxy(host.Port);
        await using var direct = host.Client();
        await using var subscriber = new DispatcherClient(new DispatcherClientOptions
        {
            Url = proxy.Url,
            UserName = SampleHost.User,
            Password = SampleHost.Password,
            ReconnectDelay = TimeSpan.FromMilliseconds(100),
            MaxReconnectDelay = TimeSpan.FromMilliseconds(500),
        });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var collector = new Collector(subscriber.SubscribeAsync(cancellationToken: stop.Token));
        try
        {
            await direct.RunAsync(new RemoteJobSpec { Id = "probe", Commands = ["true"] }, ct);
            await collector.WaitForAsync(e => e.Any(x => x is { Kind: RemoteEventKind.JobFinished, JobId: "probe" }), ct);

            var burst = Task.Run(async () =>
            {
                for (var batch = 0; batch < Jobs / 100; batch++)
                {
                    await direct.RunAsync(Enumerable.Range(batch * 100, 100).Select(i => new RemoteJobSpec { Id = $"burst-{i}", Commands = ["true"] }), ct);
                }
            }, ct);

            await collector.WaitForAsync(e => e.Count(x => x.JobId?.StartsWith("burst-", StringComparison.Ordinal) == true) >= 300, ct);
            proxy.Cut();
            var finishedBeforeCut = collector.Snapshot().Count(x => x.Kind == RemoteEventKind.JobFinished && x.JobId!.StartsWith("burst-", StringComparison.Ordinal));
            await burst;
            while ((await direct.ListAsync(ct)).Count > 0)
            {
                await Task.Delay(100, ct);
            }

            proxy.Allow();
            if (expectGap)
            {
                await collector.WaitForAsync(e => e.Any(x => x.Kind == RemoteEventKind.Gap), ct);
                await direct.RunAsync(new RemoteJobSpec { Id = "after-gap", Commands = ["true"] }, ct);
                await collector.WaitForAsync(e => e.Any(x => x is { Kind: RemoteEventKind.JobFinished, JobId: "after-gap" }), ct);
            }
            else
            {
                // Once subscribed again, one more job: the server sends the backlog before live events, so everything it
                // replays comes before this job's events.
                await collector.WaitForAsync(e => e.Any(x => x.Kind == RemoteEventKind.Reconnected), ct);
                await direct.RunAsync(new RemoteJobSpec { Id = "last", Commands = ["true"] }, ct);
                await collector.WaitForAsync(e => e.Any(x => x is { Kind: RemoteEventKind.JobFinished, JobId: "last" }), ct);
            }

            Assert.True(proxy.Forwarded >= 2, "the subscriber did not reconnect through the proxy");
            return (collector.Snapshot(), finishedBeforeCut);
        }
        finally
        {
            await stop.CancelAsync();
            await collector.DisposeAsync();
        }
    }

    private static async Task ReadUntilAsync(Process process, List<string> lines, Func<string, bool> match, CancellationToken ct)
    {
        while (await process.StandardOutput.ReadLineAsync(ct) is { } line)
        {
            lines.Add(line);
            if (match(line))
            {
                return;
            }
        }

        throw new InvalidOperationException($"curl ended (exit {(process.HasExited ? process.ExitCode : -1)}: {await process.StandardError.ReadToEndAsync(ct)}) after:\n{string.Join('\n', lines)}");
    }

    /// <summary>Consumes a subscription in the background, letting a test await a condition on what arrived so far.</summary>
    private sealed class Collector : IAsyncDisposable
    {
        private readonly List<RemoteEvent> _events = [];
        private readonly SemaphoreSlim _arrived = new(0);
        private readonly Task _consuming;

        public Collector(IAsyncEnumerable<RemoteEvent> events) => _consuming = Task.Run(async () =>
        {
            await foreach (var e in events)
            {
                lock (_events)
                {
                    _events.Add(e);
                }

                _arrived.Release();
            }
        });

        public List<RemoteEvent> Snapshot()
        {
            lock (_events)
            {
                return [.. _events];
            }
        }

        public async Task WaitForAsync(Func<List<RemoteEvent>, bool> condition, CancellationToken ct)
        {
            while (!condition(Snapshot()))
            {
                if (_consuming.IsCompleted)
                {
                    await _consuming; // surfaces the subscription's exception
                    throw new InvalidOperationException("The subscription ended.");
                }

                await _arrived.WaitAsync(TimeSpan.FromSeconds(1), ct);
            }
        }

        public async ValueTask DisposeAsync()
        {
            try
            {
                await _consuming;
            }
            catch (OperationCanceledException)
            {
            }

            _arrived.Dispose();
        }
    }
}
