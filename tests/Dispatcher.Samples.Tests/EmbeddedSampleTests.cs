namespace Dispatcher.Samples.Tests;

public sealed class EmbeddedSampleTests
{
    [Fact]
    public async Task EmbeddedSample_QueuesListsKillsAndPrintsEnrichedEvents()
    {
        await using var sample = SampleProcess.Start("Dispatcher.EmbeddedSample", []);

        Assert.Equal(0, await sample.WaitForExitAsync());
        var output = sample.Output;
        Assert.Contains("list: pkg_queue sysadm_pkg_install-{", output, StringComparison.Ordinal);
        Assert.Contains("Running position 0", output, StringComparison.Ordinal);
        Assert.Contains("Pending position 1", output, StringComparison.Ordinal);
        Assert.Contains("killed: sysadm_pkg_install-{", output, StringComparison.Ordinal);
        Assert.Contains("\"event_system\":\"sysadm/pkg\"", output, StringComparison.Ordinal);
        Assert.Contains("\"pkg_log\":\"Installing misc/pcbsd-meta-mate\\ndone\\n\"", output, StringComparison.Ordinal);
        Assert.Contains("\"outcome\":\"killed\"", output, StringComparison.Ordinal);
        Assert.Contains("Succeeded exit 0: Installing misc/pcbsd-meta-mate|done", output, StringComparison.Ordinal);
    }
}
