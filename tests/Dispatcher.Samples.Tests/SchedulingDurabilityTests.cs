using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

namespace Dispatcher.Samples.Tests;

/// <summary>Queue states, delayed jobs, pending retries and recurrences survive kill -9 of the real sample host.</summary>
public sealed class SchedulingDurabilityTests
{
    private static Dictionary<string, string> Users => SampleRest.FullAccessUser("dur", "dur-pass");

    [Fact]
    public async Task KillDashNine_KeepsPause_AddedQueue_DelayedJob_PendingRetry_AndRecurrence()
    {
        var data = Directory.CreateTempSubdirectory("dispatcher-sched-").FullName;
        var marker = Path.Combine(data, "held-ran");
        var counter = Path.Combine(data, "attempts");
        var ticks = Path.Combine(data, "ticks");
        var args = new[] { "--Dispatcher:DataDirectory=" + data };
        DateTimeOffset startAt;

        var port = SampleProcess.FreePort();
        await using (var host = SampleProcess.Start("Dispatcher.SampleHost", [.. args, "--urls", $"http://127.0.0.1:{port}"], Users))
        {
            await host.WaitForOutputAsync("Press Ctrl+C to stop.");
            using var http = Client(port);
            await RpcAsync(http, """{"action":"pause","queue":"pkg_queue"}""");
            await RpcAsync(http, """{"action":"add_queue","queue":"builds","limit":3}""");
            startAt = DateTimeOffset.UtcNow.AddSeconds(3);
            var run = new JsonObject
            {
                ["action"] = "run",
                ["held"] = new JsonObject { ["commands"] = $"touch {marker}", ["queue"] = "pkg_queue" },
                ["later"] = new JsonObject { ["commands"] = "true", ["queue"] = "builds", ["start_at"] = startAt.ToString("O") },
                ["retried"] = new JsonObject
                {
                    // Fails on its first attempt, succeeds on its second.
                    ["commands"] = $"sh -c \"echo x >> {counter}; [ $(wc -l < {counter}) -ge 2 ]\"",
                    ["retry"] = new JsonObject { ["count"] = 3, ["delay"] = 2 },
                },
                ["tick"] = new JsonObject { ["commands"] = $"sh -c \"echo tick >> {ticks}\"", ["cron"] = "*/2 * * * * *" },
            };
            var reply = await RpcAsync(http, run.ToJsonString());
            Assert.Equal(3, reply["started"]!.AsArray().Count);
            Assert.Equal("tick", (string?)reply["recurring"]![0]);

            // The retry is scheduled once the first attempt failed and its record is in the journal.
            await WaitUntilAsync(() => File.Exists(counter) && File.ReadAllText(Path.Combine(data, "jobs.journal")).Contains("\"Kind\":\"retry\"", StringComparison.Ordinal));
            host.KillNow();
            await host.WaitForExitAsync();
        }

        var restarted = DateTimeOffset.UtcNow;
        port = SampleProcess.FreePort();
        await using var again = SampleProcess.Start("Dispatcher.SampleHost", [.. args, "--urls", $"http://127.0.0.1:{port}"], Users);
        await again.WaitForOutputAsync("Press Ctrl+C to stop.");
        using var client = Client(port);

        var queues = (await RpcAsync(client, """{"action":"queues"}"""))["queues"]!;
        Assert.True((bool)queues["pkg_queue"]!["paused"]!);
        Assert.Equal(3, (int)queues["builds"]!["limit"]!);
        Assert.Equal(1, (int)queues["pkg_queue"]!["pending"]!);
        Assert.NotNull((await RpcAsync(client, """{"action":"recurrences"}"""))["recurrences"]!["tick"]);

        JsonNode? later = null, retried = null;
        await WaitUntilAsync(async () =>
        {
            var history = (await RpcAsync(client, """{"action":"history","job_id":["later","retried"]}"""))["history"]!.AsArray();
            later = history.FirstOrDefault(h => (string?)h!["process_id"] == "later");
            retried = history.FirstOrDefault(h => (string?)h!["process_id"] == "retried");
            return later is not null && retried is not null;
        });
        Assert.Equal("succeeded", (string?)later!["outcome"]);
        Assert.True(DateTimeOffset.Parse((string)later["time_started"]!, System.Globalization.CultureInfo.InvariantCulture) >= startAt.AddMilliseconds(-1));
        Assert.Equal("succeeded", (string?)retried!["outcome"]);
        Assert.Equal(2, (int)retried["attempt"]!);
        Assert.Equal("failed", (string?)retried["previous_attempts"]![0]!["outcome"]);

        // The recurrence goes on firing in the second life.
        await WaitUntilAsync(async () => (await RpcAsync(client, """{"action":"history"}"""))["history"]!.AsArray()
            .Any(h => ((string?)h!["process_id"])!.StartsWith("tick@", StringComparison.Ordinal)
                && DateTimeOffset.Parse((string)h["time_started"]!, System.Globalization.CultureInfo.InvariantCulture) >= restarted));

        Assert.False(File.Exists(marker));
        await RpcAsync(client, """{"action":"remove_recurrence","recurrence":"tick"}""");
        await RpcAsync(client, """{"action":"resume","queue":"pkg_queue"}""");
        await WaitUntilAsync(() => File.Exists(marker));
        again.Terminate();
        Assert.Equal(0, await again.WaitForExitAsync());
    }

    private static async Task WaitUntilAsync(Func<bool> condition) => await WaitUntilAsync(() => Task.FromResult(condition()));

    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow + SampleProcess.Patience;
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "Timed out waiting for the condition.");
            await Task.Delay(50);
        }
    }

    private static HttpClient Client(int port) => SampleRest.Client(port, "dur", "dur-pass");

    /// <summary>Every job of a run is accepted here: a rejection fails the test.</summary>
    private static async Task<JsonNode> RpcAsync(HttpClient http, string body)
    {
        var args = await SampleRest.RpcAsync(http, body);
        Assert.True(args["rejected"] is null, args.ToJsonString());
        return args;
    }
}
