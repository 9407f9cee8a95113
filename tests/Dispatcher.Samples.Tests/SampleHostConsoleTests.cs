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
}
