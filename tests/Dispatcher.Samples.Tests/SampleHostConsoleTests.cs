using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Dispatcher.Samples.Tests;

/// <summary>What a person sees in the sample host's console when it starts.</summary>
public sealed class SampleHostConsoleTests
{
    [Fact]
    public async Task Banner_IsOneBlock_AfterTheFrameworksStartUpLines()
    {
        var port = SampleProcess.FreePort();
        await using var host = SampleProcess.Start("Dispatcher.SampleHost", ["--urls", $"http://127.0.0.1:{port}"]);
        await host.WaitForOutputAsync("Press Ctrl+C to stop.");
        await host.WaitForOutputAsync("Content root path:");
        host.Terminate();
        await host.WaitForExitAsync();

        var lines = host.Output.Split('\n', StringSplitOptions.TrimEntries).ToList();
        var first = lines.FindIndex(l => l.StartsWith("Dispatcher sample host listening on", StringComparison.Ordinal));
        var last = lines.FindIndex(l => l == "Press Ctrl+C to stop.");
        var frameworkLast = lines.FindLastIndex(l => l.Contains("Content root path:", StringComparison.Ordinal));

        Assert.True(first >= 0 && last > first, host.Output);
        Assert.True(frameworkLast < first, $"the banner came before the framework's start-up lines:\n{host.Output}");
        Assert.All(lines[first..last], l => Assert.DoesNotContain(" info: ", l, StringComparison.Ordinal));
        Assert.Contains("created full-access user 'admin'", string.Join('\n', lines[first..last]), StringComparison.Ordinal);
    }

    /// <summary>
    /// A burst of log lines (a failed job and the 300 jobs that depended on it, each skipped: two Information lines each) comes
    /// out whole, one line per event in the sample's format, in order per job, and in far fewer writes than lines: the console
    /// logger gathers the lines of a burst instead of waking its thread and writing once per line (the host's write system
    /// calls, from /proc/PID/io, count every write of the process; the jobs themselves write nothing).
    /// </summary>
    [Fact]
    public async Task ABurstOfJobLines_ComesOutWholeInTheSampleFormat_InFewerWritesThanLines()
    {
        const int Dependents = 300;
        var port = SampleProcess.FreePort();
        await using var host = SampleProcess.Start("Dispatcher.SampleHost",
            ["--urls", $"http://127.0.0.1:{port}", "--Dispatcher:Containment:Mode=Off"], SampleRest.FullAccessUser("con", "con-pass"));
        await host.WaitForOutputAsync("Press Ctrl+C to stop.");
        using var http = SampleRest.Client(port, "con", "con-pass");

        // The blocker holds the dependents pending until the request is answered; then it fails and they are all skipped at once.
        var run = new JsonObject { ["action"] = "run", ["root"] = new JsonObject { ["commands"] = new JsonArray("sleep 1", "false"), ["queue"] = "pkg_queue" } };
        for (var i = 0; i < Dependents; i++)
        {
            run[$"dep{i}"] = new JsonObject { ["commands"] = "true", ["after"] = "root" };
        }

        _ = await SampleRest.RpcAsync(http, run.ToJsonString());
        var writesBefore = WriteCalls(host.Id);
        var deadline = DateTime.UtcNow + SampleProcess.Patience;
        while (FinishedLines(host.Output).Count < Dependents + 1)
        {
            Assert.True(DateTime.UtcNow < deadline, $"not every job's line came out:\n{host.Output}");
            await Task.Delay(50);
        }

        var writes = WriteCalls(host.Id) - writesBefore;
        var lines = host.Output.Split('\n', StringSplitOptions.TrimEntries);
        var finished = FinishedLines(host.Output);
        Assert.Equal(Dependents + 1, finished.Count);
        Assert.Equal(Dependents + 1, finished.Select(l => l.Id).Distinct().Count());
        Assert.Contains(finished, l => l.Id == "root" && l.Line.Contains(": Failed, exit code 1,", StringComparison.Ordinal));
        Assert.All(finished.Where(l => l.Id != "root"), l => Assert.Contains(": Skipped, exit code", l.Line, StringComparison.Ordinal));
        for (var i = 0; i < Dependents; i++)
        {
            // Each skipped job's own line (Information, event 20) comes before its finished line.
            var skipped = Array.FindIndex(lines, l => Regex.IsMatch(l, $@"^\d\d:\d\d:\d\d info: Dispatcher\.Internal\.DefaultDispatcher\[20\] Job dep{i} skipped"));
            var end = Array.FindIndex(lines, l => l.Contains($"[3] Job dep{i} finished in ", StringComparison.Ordinal));
            Assert.True(skipped >= 0 && skipped < end, $"dep{i}: skipped line {skipped}, finished line {end}");
        }

        Assert.True(writes < finished.Count / 4, $"{writes} write calls for {2 * Dependents + 1} lines");
    }

    private static List<(string Id, string Line)> FinishedLines(string output) =>
        [.. output.Split('\n', StringSplitOptions.TrimEntries)
            .Select(l => (Line: l, Match: Regex.Match(l, @"^\d\d:\d\d:\d\d info: Dispatcher\.Internal\.DefaultDispatcher\[3\] Job (\S+) finished in \S+: ")))
            .Where(m => m.Match.Success)
            .Select(m => (m.Match.Groups[1].Value, m.Line))];

    /// <summary>The process's write system calls so far (all its threads).</summary>
    private static long WriteCalls(int pid) =>
        long.Parse(File.ReadLines($"/proc/{pid}/io").First(l => l.StartsWith("syscw:", StringComparison.Ordinal))["syscw:".Length..].Trim(), CultureInfo.InvariantCulture);
}
