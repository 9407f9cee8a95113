using Dispatcher.Samples.Tests;

namespace Dispatcher.Client.Tests;

/// <summary>Tests that stop and start their own sample host.</summary>
public sealed class ReconnectTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task SubscribeAsync_WhenTheServerRestarts_ReconnectsAndSaysSo()
    {
        using var cts = new CancellationTokenSource(Patience);
        var port = SampleProcess.FreePort();
        var host = await SampleHost.StartAsync(port);
        try
        {
            await using var client = host.Client();
            await using var events = client.SubscribeAsync(cancellationToken: cts.Token).GetAsyncEnumerator(cts.Token);
            // The first MoveNextAsync subscribes, and nothing says when the subscription is live: a job run at once could come
            // before it (its first event seen was then JobRunning, or none at all). Jobs are run until one is seen.
            var first = events.MoveNextAsync().AsTask(); // subscribes
            for (var n = 0; !first.IsCompleted; n++)
            {
                await client.RunAsync(new RemoteJobSpec { Id = $"before-{n}", Commands = ["true"] }, cts.Token);
                await Task.WhenAny(first, Task.Delay(TimeSpan.FromMilliseconds(200), cts.Token));
            }

            Assert.True(await first);
            Assert.StartsWith("before-", events.Current.JobId, StringComparison.Ordinal);

            host.Process.KillNow();
            await host.Process.WaitForExitAsync();
            await host.DisposeAsync();
            host = await SampleHost.StartAsync(port);

            var kinds = new List<RemoteEventKind>();
            while (await events.MoveNextAsync())
            {
                kinds.Add(events.Current.Kind);
                if (events.Current.Kind == RemoteEventKind.Reconnected)
                {
                    await client.RunAsync(new RemoteJobSpec { Id = "after", Commands = ["true"] }, cts.Token);
                }

                if (events.Current is { Kind: RemoteEventKind.JobFinished, JobId: "after" } finished)
                {
                    Assert.True(finished.Details!.Succeeded);
                    break;
                }
            }

            Assert.Contains(RemoteEventKind.Reconnected, kinds);
        }
        finally
        {
            await host.DisposeAsync();
        }
    }

    [Theory]
    [InlineData(DispatcherClientTransport.WebSocket)]
    [InlineData(DispatcherClientTransport.Http)]
    public async Task Requests_AfterTheTokenLifetime_StillSucceed(DispatcherClientTransport transport)
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var host = await SampleHost.StartAsync(null, "--Dispatcher:Protocol:TokenLifetime=00:00:01");
        await using var client = host.Client(transport);
        Assert.NotNull(await client.ListAsync(cts.Token));

        // Idle for three token lifetimes: over REST the client logs in again; over WebSocket it renews the token meanwhile.
        await Task.Delay(TimeSpan.FromSeconds(3), cts.Token);
        Assert.NotNull(await client.ListAsync(cts.Token));
        Assert.NotNull(await client.HistoryAsync(null, cts.Token));
    }
}
