using System.Net;
using System.Text.Json.Nodes;
using Xunit.Abstractions;

namespace Dispatcher.Samples.Tests.FaultInjection;

/// <summary>The sample host's <c>/healthz</c> while its journal cannot be written (a real process, its data on a tmpfs filled up).</summary>
[Collection(nameof(FaultInjectionTests))]
public sealed class HealthzTests(ITestOutputHelper log)
{
    [Fact]
    public async Task Healthz_TurnsUnhealthy_WhenTheJournalCannotBeWritten_AndHealthyAgainOnceItCan()
    {
        var (mount, why) = FaultEnvironment.TryMountTmpfs("8m");
        if (mount is null)
        {
            log.WriteLine($"Could not create a small file system, so no real disk-full was injected: {why}");
            return;
        }

        try
        {
            await using var host = await FaultHost.StartAsync(Path.Combine(mount, "data"));
            var (status, report) = await host.HealthAsync();
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal("Healthy", (string)report["status"]!);
            Assert.Equal(["before"], (await host.RunAsync(Jobs("before"))).Started);
            await host.WaitUntilIdleAsync();

            var filler = FaultEnvironment.Fill(mount);
            var (started, rejected) = await host.RunAsync(Jobs("refused"));
            Assert.Empty(started);
            Assert.Contains("the storage is full", rejected["refused"], StringComparison.Ordinal);
            (status, report) = await host.HealthAsync();
            log.WriteLine(report.ToJsonString());
            Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
            Assert.Equal("Unhealthy", (string)report["status"]!);
            var journal = report["checks"]!["dispatcher-journal"]!;
            Assert.Equal("Unhealthy", (string)journal["status"]!);
            Assert.Contains("new jobs are refused until a write succeeds", (string)journal["description"]!, StringComparison.Ordinal);
            Assert.Contains("full", (string)journal["description"]!, StringComparison.Ordinal);
            Assert.Equal("Healthy", (string)report["checks"]!["dispatcher-queues"]!["status"]!);

            // Space again: the next job is accepted, and the check follows.
            File.Delete(filler);
            Assert.Equal(["after"], (await host.RunAsync(Jobs("after"))).Started);
            (status, report) = await host.HealthAsync();
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal("Healthy", (string)report["checks"]!["dispatcher-journal"]!["status"]!);
            await host.StopAsync();
        }
        finally
        {
            FaultEnvironment.Unmount(mount);
        }
    }

    // Each record needs a page of its own (a small one could still fit in the journal's last, partly written page).
    private static JsonObject Jobs(string id) => new()
    {
        [id] = new JsonObject { ["commands"] = "true", ["queue"] = "no_queue", ["env"] = new JsonObject { ["PAD"] = new string('p', 6000) } },
    };
}
