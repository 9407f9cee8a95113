using System.Text;
using System.Text.Json.Nodes;
using Dispatcher.Samples.Tests;

namespace Dispatcher.Client.Tests;

/// <summary>One sample host process for the tests of this class; each test uses its own job ids.</summary>
public sealed class SampleHostFixture : IAsyncLifetime
{
    internal SampleHost Host { get; private set; } = null!;

    public async Task InitializeAsync() => Host = await SampleHost.StartAsync();

    public async Task DisposeAsync() => await Host.DisposeAsync();
}

public sealed class DispatcherClientTests(SampleHostFixture fixture) : IClassFixture<SampleHostFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private SampleHost Host => fixture.Host;

    [Theory]
    [InlineData(DispatcherClientTransport.WebSocket)]
    [InlineData(DispatcherClientTransport.Http)]
    public async Task RunWaitHistory_OverEitherTransport_ReportTheJob(DispatcherClientTransport transport)
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var client = Host.Client(transport);
        var id = "rwh-" + transport;

        Assert.Equal("server", (await client.IdentifyAsync(cts.Token)).Type);
        var run = await client.RunAsync(new RemoteJobSpec
        {
            Id = id,
            Commands = ["sh -c \"echo $GREETING\"", "sh -c \"exit 3\""],
            Queue = "iocage_queue",
            Environment = new Dictionary<string, string> { ["GREETING"] = "hello from env" },
        }, cts.Token);
        Assert.Equal([id], run.Started);
        Assert.Empty(run.Rejected);

        var result = await client.WaitAsync(id, cts.Token);
        Assert.Equal("failed", result.Outcome);
        Assert.False(result.Succeeded);
        Assert.Equal(["hello from env\n", ""], result.Results.Select(r => r.Output));
        Assert.Equal([0, 3], result.Results.Select(r => r.ExitCode));

        var history = Assert.Single(await client.HistoryAsync([id], cts.Token));
        Assert.Equal("iocage_queue", history.Queue);
        Assert.NotNull(history.StartedAt);
        Assert.DoesNotContain(await client.ListAsync(cts.Token), j => j.Id == id);
    }

    [Fact]
    public async Task ListAndKill_APendingAndARunningJob_KillBoth()
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var client = Host.Client();
        await client.RunAsync([
            new RemoteJobSpec { Id = "lk-running", Commands = ["sleep 60"], Queue = "pkg_queue" },
            new RemoteJobSpec { Id = "lk-pending", Commands = ["sleep 60"], Queue = "pkg_queue" }], cts.Token);

        var jobs = (await client.ListAsync(cts.Token)).Where(j => j.Id.StartsWith("lk-", StringComparison.Ordinal)).ToArray();
        Assert.Equal(["lk-running", "lk-pending"], jobs.Select(j => j.Id));
        Assert.Equal(["running", "pending"], jobs.Select(j => j.State));
        Assert.Equal([0, 1], jobs.Select(j => j.QueuePosition));
        Assert.Equal(["sleep 60"], jobs[0].Commands);

        var killed = await client.KillAsync(["lk-running", "lk-pending", "lk-unknown"], cts.Token);
        Assert.Equal(["lk-pending", "lk-running"], killed.Order());
        Assert.Equal("killed", (await client.WaitAsync("lk-running", cts.Token)).Outcome);
        Assert.Equal("killed", (await client.WaitAsync("lk-pending", cts.Token)).Outcome);
    }

    [Fact]
    public async Task FollowAsync_JoinedWhilePending_StreamsOutputLiveAndWhole()
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var client = Host.Client();
        var gate = Path.Combine(Path.GetTempPath(), $"dispatcher-follow-{Guid.NewGuid():N}");
        await client.RunAsync([
            new RemoteJobSpec { Id = "fl-blocker", Commands = ["sleep 60"], Queue = "pkg_queue" },
            new RemoteJobSpec { Id = "fl-job", Queue = "pkg_queue", Commands = [$"sh -c \"echo one; while [ ! -e {gate} ]; do sleep 0.05; done; echo two\"", "echo three"] }],
            cts.Token);

        // The follower logs in as the viewer, so its list request (made once it has subscribed) shows in the host's log.
        const string FollowerListed = "user=viewer rpc/dispatcher action=list";
        var before = Count(Host.Process.Output, FollowerListed);
        await using var viewer = Host.Client(DispatcherClientTransport.WebSocket, SampleHost.Viewer, SampleHost.ViewerPassword);
        var chunks = new List<RemoteOutputChunk>();
        var follow = Task.Run(async () =>
        {
            await foreach (var chunk in viewer.FollowAsync("fl-job", cts.Token))
            {
                lock (chunks)
                {
                    chunks.Add(chunk);
                }

                if (chunk.Text.Contains("one", StringComparison.Ordinal))
                {
                    // Live: the job cannot print "two" before this file exists.
                    await File.WriteAllTextAsync(gate, "", cts.Token);
                }
            }
        });
        try
        {
            while (Count(Host.Process.Output, FollowerListed) == before)
            {
                Assert.False(follow.IsCompleted, "The follower ended before it listed.");
                await Task.Delay(20, cts.Token);
            }

            Assert.Equal(["fl-blocker"], await client.KillAsync(["fl-blocker"], cts.Token));
            await follow;
        }
        finally
        {
            File.Delete(gate);
        }

        Assert.Equal("one\ntwo\n", string.Concat(chunks.Where(c => c.Command.StartsWith("sh", StringComparison.Ordinal)).Select(c => c.Text)));
        Assert.Equal("three\n", string.Concat(chunks.Where(c => c.Command == "echo three").Select(c => c.Text)));
        Assert.True((await client.WaitAsync("fl-job", cts.Token)).Succeeded);
    }

    [Fact]
    public async Task FollowAsync_JoinedWhileRunning_YieldsTheWholeOutputWhenItEnds()
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var client = Host.Client();
        var gate = Path.Combine(Path.GetTempPath(), $"dispatcher-follow-{Guid.NewGuid():N}");
        await using var events = client.SubscribeAsync(cancellationToken: cts.Token).GetAsyncEnumerator(cts.Token);
        var subscribed = events.MoveNextAsync();
        await client.RunAsync(new RemoteJobSpec { Id = "fr-job", Commands = [$"sh -c \"echo one; while [ ! -e {gate} ]; do sleep 0.05; done; echo two\"", "echo three"] }, cts.Token);
        Assert.True(await subscribed);
        while (events.Current is not { Kind: RemoteEventKind.JobRunning, JobId: "fr-job", Details.Results: [{ Output: "one\n" }, ..] })
        {
            Assert.True(await events.MoveNextAsync());
        }

        // "one" went out before the follower joined; the server cannot send it again, so it comes, in order, at the end.
        const string FollowerListed = "user=viewer rpc/dispatcher action=list";
        var before = Count(Host.Process.Output, FollowerListed);
        await using var viewer = Host.Client(DispatcherClientTransport.WebSocket, SampleHost.Viewer, SampleHost.ViewerPassword);
        var follow = viewer.FollowAsync("fr-job", cts.Token).ToListAsync(cts.Token).AsTask();
        try
        {
            while (Count(Host.Process.Output, FollowerListed) == before)
            {
                Assert.False(follow.IsCompleted, "The follower ended before it listed.");
                await Task.Delay(20, cts.Token);
            }

            await File.WriteAllTextAsync(gate, "", cts.Token);
            var chunks = await follow;
            Assert.Equal("one\ntwo\nthree\n", string.Concat(chunks.Select(c => c.Text)));
        }
        finally
        {
            File.Delete(gate);
        }
    }

    private static int Count(string text, string what) => text.Split(what).Length - 1;

    [Fact]
    public async Task Errors_FromTheServer_CarryItsCodeAndMessage()
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var client = Host.Client(DispatcherClientTransport.WebSocket);

        var rejected = await client.RunAsync([
            new RemoteJobSpec { Id = "err-queue", Commands = ["true"], Queue = "nope" },
            new RemoteJobSpec { Id = "err-option", Commands = ["true"], AdditionalMembers = new Dictionary<string, JsonNode?> { ["colour"] = "red" } }], cts.Token);
        Assert.Empty(rejected.Started);
        Assert.Contains("Unknown queue 'nope'", rejected.Rejected["err-queue"], StringComparison.Ordinal);
        Assert.Contains("colour", rejected.Rejected["err-option"], StringComparison.Ordinal);

        // An action this server does not have: its 400, and the connection goes on; pause and resume work.
        var unknown = await Assert.ThrowsAsync<DispatcherClientException>(() => client.SendAsync("no_such_action", null, cts.Token));
        Assert.Equal("400", unknown.Code);
        Assert.Contains("'no_such_action'", unknown.Message, StringComparison.Ordinal);
        Assert.Equal(["pkg_queue"], await client.PauseQueueAsync("pkg_queue", cts.Token));
        Assert.Equal(["pkg_queue"], await client.ResumeQueueAsync("pkg_queue", cts.Token));
        Assert.NotNull(await client.ListAsync(cts.Token));

        var missing = await Assert.ThrowsAsync<DispatcherClientException>(() => client.WaitAsync("err-no-such-job", cts.Token));
        Assert.Equal("404", missing.Code);

        await using var viewer = Host.Client(DispatcherClientTransport.Http, SampleHost.Viewer, SampleHost.ViewerPassword);
        Assert.NotNull(await viewer.HistoryAsync(null, cts.Token));
        var forbidden = await Assert.ThrowsAsync<DispatcherClientException>(() => viewer.RunAsync(new RemoteJobSpec { Id = "err-ro", Commands = ["true"] }, cts.Token));
        Assert.Equal("403", forbidden.Code);

        await using var nobody = new DispatcherClient(new DispatcherClientOptions { Url = new Uri($"http://127.0.0.1:{SampleProcess.FreePort()}") });
        var unreachable = await Assert.ThrowsAsync<DispatcherClientException>(() => nobody.ListAsync(cts.Token));
        Assert.Null(unreachable.Code);
        Assert.Contains("Cannot connect", unreachable.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(DispatcherClientTransport.WebSocket)]
    [InlineData(DispatcherClientTransport.Http)]
    public async Task WrongPassword_Is401(DispatcherClientTransport transport)
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var client = Host.Client(transport, SampleHost.User, "wrong");
        var ex = await Assert.ThrowsAsync<DispatcherClientException>(() => client.ListAsync(cts.Token));
        Assert.Equal("401", ex.Code);
    }

    [Fact]
    public async Task Cancellation_StopsAWaitAtOnce()
    {
        await using var client = Host.Client();
        await client.RunAsync(new RemoteJobSpec { Id = "cancel-me", Commands = ["sleep 60"] });
        using var cts = new CancellationTokenSource();
        var wait = client.WaitAsync("cancel-me", cts.Token);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => wait);
        Assert.Equal(["cancel-me"], await client.KillAsync(["cancel-me"]));
    }
}
