using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

using static Dispatcher.Samples.Tests.SampleRest;

namespace Dispatcher.Samples.Tests;

public sealed class ContainmentRecoveryTests
{
    private static Dictionary<string, string> Users => SampleRest.FullAccessUser("cg", "cg-pass");

    [Fact]
    public async Task KillDashNine_Restart_KillsEveryProcessOfTheInterruptedJob()
    {
        var data = Directory.CreateTempSubdirectory("dispatcher-data-").FullName;
        var args = new[] { "--Dispatcher:DataDirectory=" + data, "--Dispatcher:Containment:Mode=Auto" };
        var seconds = 40000 + Random.Shared.Next(9999);
        var sleep = "sleep " + seconds.ToString(CultureInfo.InvariantCulture);
        try
        {
            // First life: a job with a grandchild that left the job's session; then the host dies.
            var port = SampleProcess.FreePort();
            await using (var host = SampleProcess.Start("Dispatcher.SampleHost", [.. args, "--urls", $"http://127.0.0.1:{port}"], Users))
            {
                await host.WaitForOutputAsync("Press Ctrl+C to stop.");
                if (!host.Output.Contains("Containment: each job runs in cgroups of its own", StringComparison.Ordinal))
                {
                    // No cgroups here: the host must have said so, and this test has nothing to check.
                    Assert.Contains("Containment off", host.Output, StringComparison.Ordinal);
                    return;
                }

                using var http = Client(port);
                var run = new JsonObject
                {
                    ["action"] = "run",
                    ["escaper"] = new JsonObject { ["commands"] = $"sh -c \"(setsid {sleep} &); {sleep}\"" },
                };
                Assert.Equal("escaper", (string?)(await RpcAsync(http, run.ToJsonString()))["started"]![0]);
                await WaitUntilAsync(() => Sleeps(sleep).Count == 2, "both sleeps run");

                host.KillNow();
                await host.WaitForExitAsync();
            }

            Assert.Equal(2, Sleeps(sleep).Count); // a crash leaves them running

            // Second life on the same data directory.
            var again = SampleProcess.FreePort();
            await using var restarted = SampleProcess.Start("Dispatcher.SampleHost", [.. args, "--urls", $"http://127.0.0.1:{again}"], Users);
            await restarted.WaitForOutputAsync("Press Ctrl+C to stop.");

            await WaitUntilAsync(() => Sleeps(sleep).Count == 0, "no process of the interrupted job is alive");
            Assert.Matches("Killed [123] process\\(es\\) left in the cgroups of jobs that were running when the previous host died", restarted.Output);
        }
        finally
        {
            foreach (var pid in Sleeps(sleep))
            {
                try
                {
                    System.Diagnostics.Process.GetProcessById(pid).Kill();
                }
                catch (Exception ex) when (ex is ArgumentException or InvalidOperationException)
                {
                }
            }
        }
    }

    private static List<int> Sleeps(string commandLine)
    {
        var found = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
            {
                continue;
            }

            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                if (stat[(stat.LastIndexOf(')') + 2)..][0] != 'Z'
                    && File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ').Trim() == commandLine)
                {
                    found.Add(pid);
                }
            }
            catch (IOException)
            {
            }
        }

        return found;
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + SampleProcess.Patience;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"Timed out waiting until {what}.");
            await Task.Delay(50);
        }
    }

    private static HttpClient Client(int port) => SampleRest.Client(port, "cg", "cg-pass");

}
