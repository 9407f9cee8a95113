using System.Globalization;
using System.Text;
using Dispatcher.Running;

namespace Dispatcher.Tests.Running;

public sealed class ProcessTreeTests
{
    [Fact]
    public void TryParseStat_HandlesParenthesesAndSpacesInName()
    {
        Assert.True(TryParseStat("1234 (a (b) c) S 1 1234 1234 0 -1 4194560", out var stat));
        Assert.Equal(1234, stat.Pid);
        Assert.Equal(1, stat.ParentPid);
        Assert.Equal(1234, stat.Session);
        Assert.Equal('S', stat.State);
    }

    [Fact]
    public void TryParseStat_ReadsTheStartTime_AfterANameWithParenthesesSpacesAndUtf8()
    {
        var line = "4321 (we ird) (ü) name) R 17 4321 99 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654321 1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        Assert.True(TryParseStat(line, out var stat));
        Assert.Equal(new ProcessTree.ProcStat(4321, 17, 99, 'R', 987654321UL), stat);
        Assert.True(TryParseStat("12 (short) S 1 12 12", out var cut));
        Assert.Equal(new ProcessTree.ProcStat(12, 1, 12, 'S', 0UL), cut);
        Assert.False(TryParseStat("12 (x) S -1 12 12", out _));
        Assert.False(TryParseStat("12 (x)", out _));
        Assert.False(TryParseStat("", out _));
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
    public void TryParseStat_RejectsGarbage() => Assert.False(TryParseStat("garbage", out _));

    [Fact]
    public void TryParseStat_OfEveryLiveProcess_AndOfOddLines_IsWhatTheStringParserOfEarlierVersionsGave()
    {
        // Recovery compares the start time a journal holds with the one read now: a journal written by an earlier version
        // (File.ReadAllText, split on spaces after the last ')') must find the same identity.
        var lines = new List<byte[]>();
        foreach (var dir in Directory.EnumerateDirectories("/proc").Where(d => char.IsAsciiDigit(Path.GetFileName(d)[0])))
        {
            try
            {
                lines.Add(File.ReadAllBytes(Path.Combine(dir, "stat")));
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Gone meanwhile.
            }
        }

        Assert.NotEmpty(lines);
        foreach (var line in (string[])[
            "012 (x) S 01 12 012", "+12 (x) S 1 12 12", "12 (x) S +1 12 12", "2147483648 (a) S 1 12 12", "12 (a) S 2147483648 12 12",
            "12  (a) S 1 12 12", "12 (a)  S 1 12 12", "12 (a) S 1 12 12\r\n", "12 (a\nb) S 1 12 12 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98 1\n",
            "12 (a) b) S 1 12 12 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98\n", "12 (a) S 1 12 12 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98",
            "12 (a) S 1 12 12 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 +98 1\n", "12 (a) S 1 12 12 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 18446744073709551616 1\n",
            "12 (\u00e9\u4e2d) S 1 12 12 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98 1\n"])
        {
            lines.Add(Encoding.UTF8.GetBytes(line));
        }

        lines.Add([.. "12 ("u8, 0xe4, 0xb8, .. ") S 1 12 12 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98 1\n"u8]); // a name cut inside a character
        foreach (var bytes in lines)
        {
            var parsed = ProcessTree.TryParseStat((ReadOnlySpan<byte>)bytes, out var stat);
            Assert.Equal((EarlierParse(Encoding.UTF8.GetString(bytes), out var earlier), earlier), (parsed, stat));
        }
    }

    /// <summary>The parser of dc81864 and before, on the text File.ReadAllText gave it.</summary>
    private static bool EarlierParse(string text, out ProcessTree.ProcStat stat)
    {
        stat = default;
        ulong startTime = 0;
        var close = text.LastIndexOf(')');
        var space = text.IndexOf(' ', StringComparison.Ordinal);
        if (close < 0 || space < 0 || !int.TryParse(text.AsSpan(0, space), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
        {
            return false;
        }

        var fields = text[(close + 2)..].Split(' ');
        if (fields.Length < 4
            || !int.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out var ppid)
            || !int.TryParse(fields[3], NumberStyles.None, CultureInfo.InvariantCulture, out var session))
        {
            return false;
        }

        _ = fields.Length > 19 && ulong.TryParse(fields[19], NumberStyles.None, CultureInfo.InvariantCulture, out startTime);
        stat = new ProcessTree.ProcStat(pid, ppid, session, fields[0].Length > 0 ? fields[0][0] : '?', startTime);
        return true;
    }

    [Fact]
    public void ReadProcessTable_FindsThisProcess() =>
        Assert.Contains(ProcessTree.ReadProcessTable(), s => s.Pid == Environment.ProcessId);

    /// <summary>Parses a stat line given as text, as the file's UTF-8 bytes.</summary>
    private static bool TryParseStat(string line, out ProcessTree.ProcStat stat) => ProcessTree.TryParseStat(Encoding.UTF8.GetBytes(line), out stat);
}
