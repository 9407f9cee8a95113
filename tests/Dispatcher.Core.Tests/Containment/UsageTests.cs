using Dispatcher.Protocol;

namespace Dispatcher.Tests.Containment;

/// <summary>What commands used (wait4), with real processes, as the result, the wire details and the totals show it.</summary>
public sealed class UsageTests
{
    private const string Busy = "sh -c \"i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done\"";

    [Fact]
    public async Task Result_BusyCommand_ReportsCpuTimeAndPeakMemory()
    {
        await using var t = new TestDispatcher();

        await t.RunAsync("busy", Busy, "true");
        var result = await t.WaitAsync("busy");

        Assert.Equal(JobOutcome.Succeeded, result.Outcome);
        var busy = Assert.IsType<CommandUsage>(result.CommandResults[0].Usage);
        Assert.True(busy.UserCpuTime + busy.SystemCpuTime > TimeSpan.FromMilliseconds(10), $"{busy}");
        Assert.InRange(busy.PeakMemoryBytes, 64 * 1024, 1L << 30);
        var total = Assert.IsType<CommandUsage>(result.Usage);
        Assert.Equal(busy.UserCpuTime + result.CommandResults[1].Usage!.UserCpuTime, total.UserCpuTime);
        Assert.Equal(Math.Max(busy.PeakMemoryBytes, result.CommandResults[1].Usage!.PeakMemoryBytes), total.PeakMemoryBytes);
    }

    [Fact]
    public async Task FinishedDetails_CarryTheTotalsAsExtensionMembers()
    {
        await using var t = new TestDispatcher();
        await t.RunAsync("busy", Busy);
        var result = await t.WaitAsync("busy");

        var details = WireFormat.FinishedDetails(result);

        Assert.Equal(Math.Round(result.Usage!.UserCpuTime.TotalSeconds, 6), (double)details["cpu_user_seconds"]!);
        Assert.Equal(Math.Round(result.Usage.SystemCpuTime.TotalSeconds, 6), (double)details["cpu_system_seconds"]!);
        Assert.Equal(result.Usage.PeakMemoryBytes, (long)details["peak_memory_bytes"]!);
    }

    [Fact]
    public void FinishedDetails_WithoutUsage_HaveNoUsageMembers()
    {
        var result = new JobResult("j", "no_queue", ["true"], JobOutcome.Succeeded,
            [new CommandResult(0, "true", string.Empty, 0, 0, DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch)],
            DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch);

        Assert.False(WireFormat.FinishedDetails(result).ContainsKey("cpu_user_seconds"));
    }
}
