using System.Text.Json.Nodes;

namespace Dispatcher.Client.Tests;

/// <summary>The scheduling, input and containment members of <see cref="RemoteJobSpec"/>, against a real sample host.</summary>
public sealed class JobSpecTests(SampleHostFixture fixture) : IClassFixture<SampleHostFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData(DispatcherClientTransport.WebSocket)]
    [InlineData(DispatcherClientTransport.Http)]
    public async Task StdinLabelsRetryAndAfter_ReachTheServer(DispatcherClientTransport transport)
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var client = fixture.Host.Client(transport);
        var t = transport.ToString();

        var run = await client.RunAsync([
            new RemoteJobSpec { Id = "js-stdin-" + t, Commands = ["cat"], StandardInput = "from stdin\n", Priority = 5, Labels = new Dictionary<string, string> { ["team"] = "ops" } },
            new RemoteJobSpec { Id = "js-retry-" + t, Commands = ["sh -c \"exit 1\""], Retry = new RemoteRetryPolicy { Count = 1, Delay = TimeSpan.FromMilliseconds(100), Backoff = 2 } },
            new RemoteJobSpec { Id = "js-after-" + t, Commands = ["true"], After = ["js-retry-" + t] }], cts.Token);
        Assert.Empty(run.Rejected);

        var stdin = await client.WaitAsync("js-stdin-" + t, cts.Token);
        Assert.Equal("from stdin\n", Assert.Single(stdin.Results).Output);
        Assert.Equal("ops", (string?)stdin.Raw["labels"]?["team"]);

        var retried = await client.WaitAsync("js-retry-" + t, cts.Token);
        Assert.Equal("failed", retried.Outcome);
        Assert.Equal(2, (int?)retried.Raw["attempt"]);

        var after = await client.WaitAsync("js-after-" + t, cts.Token);
        Assert.Equal("skipped", after.Outcome);
    }

    [Theory]
    [InlineData(DispatcherClientTransport.WebSocket)]
    [InlineData(DispatcherClientTransport.Http)]
    public async Task DelayStartAtAndIdempotencyKey_ReachTheServer(DispatcherClientTransport transport)
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var client = fixture.Host.Client(transport);
        var t = transport.ToString();
        var later = "js-delay-" + t;
        var at = "js-at-" + t;

        var run = await client.RunAsync([
            new RemoteJobSpec { Id = later, Commands = ["true"], Delay = TimeSpan.FromHours(1), IdempotencyKey = "key-" + t },
            new RemoteJobSpec { Id = at, Commands = ["true"], StartAt = DateTimeOffset.UtcNow.AddHours(1) }], cts.Token);
        Assert.Equal([later, at], run.Started);

        // The same key again creates nothing and names the job that has it.
        var again = await client.RunAsync(new RemoteJobSpec { Id = "js-delay-again-" + t, Commands = ["true"], IdempotencyKey = "key-" + t }, cts.Token);
        Assert.Equal([later], again.Started);

        var pending = (await client.ListAsync(cts.Token)).Where(j => j.Id == later || j.Id == at).ToList();
        Assert.Equal(2, pending.Count);
        Assert.All(pending, j => Assert.Equal("pending", j.State));
        Assert.Equal(new[] { at, later }, (await client.KillAsync([later, at], cts.Token)).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task LimitsAndRunAs_AreSent_AndCheckedByTheServer()
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var client = fixture.Host.Client();

        var run = await client.RunAsync([
            new RemoteJobSpec { Id = "js-limits", Commands = ["true"], Limits = new RemoteJobLimits { MaxProcesses = 50, MemoryBytes = 256L << 20, CpuWeight = 100 } },
            new RemoteJobSpec { Id = "js-bad-weight", Commands = ["true"], Limits = new RemoteJobLimits { CpuWeight = 0 } },
            new RemoteJobSpec { Id = "js-run-as", Commands = ["true"], RunAs = "root" }], cts.Token);

        Assert.Equal(["js-limits"], run.Started);
        Assert.Contains("cpu_weight", run.Rejected["js-bad-weight"], StringComparison.Ordinal);
        Assert.Contains("'root'", run.Rejected["js-run-as"], StringComparison.Ordinal);
        Assert.True((await client.WaitAsync("js-limits", cts.Token)).Succeeded);
    }
}
