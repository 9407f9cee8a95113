using Dispatcher.Running;

namespace Dispatcher.Tests.Running;

public sealed class ProcessTreeTests
{
    [Fact]
    public void TryParseStat_HandlesParenthesesAndSpacesInName()
    {
        Assert.True(ProcessTree.TryParseStat("1234 (a (b) c) S 1 1234 1234 0 -1 4194560", out var stat));
        Assert.Equal(1234, stat.Pid);
        Assert.Equal(1, stat.ParentPid);
        Assert.Equal(1234, stat.Session);
        Assert.Equal('S', stat.State);
    }

    [Fact]
    public void TryParseStat_ReadsTheStartTime_AfterANameWithParenthesesSpacesAndUtf8()
    {
        var line = "4321 (we ird) (ü) name) R 17 4321 99 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654321 1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        Assert.True(ProcessTree.TryParseStat(line, out var stat));
        Assert.Equal(new ProcessTree.ProcStat(4321, 17, 99, 'R', 987654321UL), stat);
        Assert.True(ProcessTree.TryParseStat("12 (short) S 1 12 12", out var cut));
        Assert.Equal(new ProcessTree.ProcStat(12, 1, 12, 'S', 0UL), cut);
        Assert.False(ProcessTree.TryParseStat("12 (x) S -1 12 12", out _));
        Assert.False(ProcessTree.TryParseStat("12 (x)", out _));
        Assert.False(ProcessTree.TryParseStat("", out _));
    }

    [Fact]
    public async Task Identify_OfALiveChild_IsItsStartTimeAndBootId_AsProcReportsThem()
    {
        using var child = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("sleep", "30") { UseShellExecute = false })!;
        try
        {
            // Parsed here independently: the 22nd field of /proc/PID/stat, counted after the name's closing parenthesis.
            var text = await File.ReadAllTextAsync($"/proc/{child.Id}/stat");
            var expected = ulong.Parse(text[(text.LastIndexOf(')') + 2)..].Split(' ')[19], System.Globalization.CultureInfo.InvariantCulture);
            var identity = ProcessTree.Identify(child.Id);
            Assert.NotNull(identity);
            Assert.Equal(expected, identity.Value.StartTime);
            Assert.Equal((await File.ReadAllTextAsync("/proc/sys/kernel/random/boot_id")).Trim(), identity.Value.BootId);
            Assert.True(ProcessTree.TryReadStat($"/proc/{child.Id}/stat", out var stat));
            Assert.Equal((child.Id, Environment.ProcessId, 'S'), (stat.Pid, stat.ParentPid, stat.State is 'S' or 'R' ? 'S' : stat.State));
        }
        finally
        {
            child.Kill();
            await child.WaitForExitAsync();
        }

        Assert.Null(ProcessTree.Identify(int.MaxValue - 1));
    }

    [Fact]
    public void TryParseStat_RejectsGarbage() => Assert.False(ProcessTree.TryParseStat("garbage", out _));

    [Fact]
    public void ReadProcessTable_FindsThisProcess() =>
        Assert.Contains(ProcessTree.ReadProcessTable(), s => s.Pid == Environment.ProcessId);
}
