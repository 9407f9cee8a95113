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
    public void TryParseStat_RejectsGarbage() => Assert.False(ProcessTree.TryParseStat("garbage", out _));

    [Fact]
    public void ReadProcessTable_FindsThisProcess() =>
        Assert.Contains(ProcessTree.ReadProcessTable(), s => s.Pid == Environment.ProcessId);
}
