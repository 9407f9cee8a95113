using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

using static Dispatcher.Samples.Tests.SampleRest;

namespace Dispatcher.Samples.Tests;

public sealed class DurabilityTests
{
    private static Dictionary<string, string> Users => SampleRest.FullAccessUser("dur", "dur-pass");

    [Fact]
    public async Task KillDashNine_LosesNoAcknowledgedJob_AndTheBlockerIsInterrupted()
    {
        var data = Directory.CreateTempSubdirectory("dispatcher-data-").FullName;
        var order = Path.Combine(data, "order.txt");
        var args = new[] { "--Dispatcher:DataDirectory=" + data };

        // First life: a blocker in pkg_queue and 200 jobs behind it, each acknowledged.
        var port = SampleProcess.FreePort();
        await using (var host = SampleProcess.Start("Dispatcher.SampleHost", [.. args, "--urls", $"http://127.0.0.1:{port}"], Users))
        {
            await host.WaitForOutputAsync("Press Ctrl+C to stop.");
            using var http = Client(port);
            var blocker = await RpcAsync(http, """{"action":"run","blocker":{"commands":"sleep 3099","queue":"pkg_queue"}}""");
            Assert.Equal("blocker", (string?)blocker["started"]![0]);
            for (var batch = 0; batch < 4; batch++)
            {
                var run = new JsonObject { ["action"] = "run" };
                for (var i = batch * 50; i < (batch + 1) * 50; i++)
                {
                    run[$"j{i:000}"] = new JsonObject { ["commands"] = $"sh -c \"echo {i} >> {order}\"", ["queue"] = "pkg_queue" };
                }

                Assert.Equal(50, (await RpcAsync(http, run.ToJsonString()))["started"]!.AsArray().Count);
            }

            host.KillNow();
            await host.WaitForExitAsync();
        }

        try
        {
            // Second life on the same data directory.
            port = SampleProcess.FreePort();
            await using var again = SampleProcess.Start("Dispatcher.SampleHost", [.. args, "--urls", $"http://127.0.0.1:{port}"], Users);
            await again.WaitForOutputAsync("Press Ctrl+C to stop.");
            Assert.Contains("recovered 200 pending job(s), 1 interrupted job(s)", again.Output, StringComparison.Ordinal);
            using var http = Client(port);

            var deadline = DateTime.UtcNow + SampleProcess.Patience;
            while ((await RpcAsync(http, """{"action":"list"}"""))["jobs"]!.AsObject().Count > 0 && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }

            Assert.Equal(Enumerable.Range(0, 200).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)), File.ReadAllLines(order));
            var history = (await RpcAsync(http, """{"action":"history"}"""))["history"]!.AsArray();
            Assert.Equal("interrupted", (string?)history.Single(h => (string?)h!["process_id"] == "blocker")!["outcome"]);
            Assert.Equal(200, history.Count(h => (string?)h!["outcome"] == "succeeded"));

            again.Terminate();
            Assert.Equal(0, await again.WaitForExitAsync());
        }
        finally
        {
            // The first host died without stopping its blocker: a real crash leaves it running, so clean it up here.
            foreach (var p in Process.GetProcessesByName("sleep"))
            {
                try
                {
                    if (File.ReadAllText($"/proc/{p.Id}/cmdline").Replace('\0', ' ').Trim() == "sleep 3099")
                    {
                        p.Kill();
                    }
                }
                catch (IOException)
                {
                }
            }
        }
    }

    [Fact]
    public async Task Restart_HistoryKeepsWhatTheJobUsed()
    {
        var data = Directory.CreateTempSubdirectory("dispatcher-data-").FullName;
        var args = new[] { "--Dispatcher:DataDirectory=" + data };
        const string History = """{"action":"history","job_id":"busy"}""";
        JsonNode before;

        var port = SampleProcess.FreePort();
        await using (var host = SampleProcess.Start("Dispatcher.SampleHost", [.. args, "--urls", $"http://127.0.0.1:{port}"], Users))
        {
            await host.WaitForOutputAsync("Press Ctrl+C to stop.");
            using var http = Client(port);
            await RpcAsync(http, """{"action":"run","busy":{"commands":["sh -c \"i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done\"","true"]}}""");
            var deadline = DateTime.UtcNow + SampleProcess.Patience;
            while ((await RpcAsync(http, History))["history"]!.AsArray().Count == 0)
            {
                Assert.True(DateTime.UtcNow < deadline, "The job did not finish.");
                await Task.Delay(50);
            }

            before = (await RpcAsync(http, History))["history"]![0]!;
            Assert.True((double)before["cpu_user_seconds"]! + (double)before["cpu_system_seconds"]! > 0, before.ToJsonString());

            // kill -9 once the end record is on disk (it is written at once, flushed with the next acknowledged record or soon after).
            await WaitUntilJournalHoldsAsync(Path.Combine(data, "jobs.journal"), "\"Kind\":\"finished\"");
            host.KillNow();
            await host.WaitForExitAsync();
        }

        port = SampleProcess.FreePort();
        await using var again = SampleProcess.Start("Dispatcher.SampleHost", [.. args, "--urls", $"http://127.0.0.1:{port}"], Users);
        await again.WaitForOutputAsync("Press Ctrl+C to stop.");
        using var client = Client(port);
        var after = (await RpcAsync(client, History))["history"]![0]!;

        foreach (var member in new[] { "cpu_user_seconds", "cpu_system_seconds" })
        {
            Assert.True(after[member] is not null, $"{member} is missing after the restart: {after.ToJsonString()}");
            Assert.Equal(before[member]!.ToJsonString(), after[member]!.ToJsonString());
        }

        // The peak is known only when it is above the host's own: after the restart exactly as it was before.
        Assert.Equal(before["peak_memory_bytes"]?.ToJsonString(), after["peak_memory_bytes"]?.ToJsonString());

        again.Terminate();
        Assert.Equal(0, await again.WaitForExitAsync());
    }

    private static async Task WaitUntilJournalHoldsAsync(string journal, string text)
    {
        var deadline = DateTime.UtcNow + SampleProcess.Patience;
        while (!(File.Exists(journal) && ReadShared(journal).Contains(text, StringComparison.Ordinal)))
        {
            Assert.True(DateTime.UtcNow < deadline, $"The journal never held {text}.");
            await Task.Delay(50);
        }

        static string ReadShared(string path)
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            return new StreamReader(stream).ReadToEnd();
        }
    }

    private static HttpClient Client(int port) => SampleRest.Client(port, "dur", "dur-pass");

}
