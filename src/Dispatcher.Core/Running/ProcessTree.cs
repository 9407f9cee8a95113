using System.Globalization;
using System.Runtime.InteropServices;
using Dispatcher.Interop;

namespace Dispatcher.Running;

/// <summary>
/// Signals a command's whole process tree on Linux. Each command is started as the leader of a new session (and so of a new
/// process group, whose id is its PID). Graceful stop: SIGTERM to the process group and to every descendant found through
/// parent PIDs. Forceful stop: SIGKILL to the group, to every process still in the command's session (which catches double-forked
/// processes that were re-parented to init) and to every descendant, repeated until none is left.
/// </summary>
internal static class ProcessTree
{
    internal const int SigTerm = 15;
    internal const int SigKill = 9;
    internal const int SigChld = 17; // x86-64 and arm64 (the generic signal numbers)

    public static bool IsSupported { get; } = OperatingSystem.IsLinux() && Directory.Exists("/proc/self");

    public static void Terminate(int leaderPid)
    {
        // Collect the tree before signalling: once a parent dies its children are re-parented and lose the link.
        var tree = Descendants(leaderPid, includeSession: false);
        _ = Libc.kill(-leaderPid, SigTerm);
        foreach (var pid in tree)
        {
            _ = Libc.kill(pid, SigTerm);
        }
    }

    public static void Kill(int leaderPid)
    {
        for (var round = 0; round < 10; round++)
        {
            var targets = Descendants(leaderPid, includeSession: true);
            _ = Libc.kill(-leaderPid, SigKill);
            if (targets.Count == 0)
            {
                return;
            }

            foreach (var pid in targets)
            {
                _ = Libc.kill(pid, SigKill);
            }
        }
    }

    /// <summary>The leader, its descendants by parent PID and (optionally) every process of the leader's session.</summary>
    internal static List<int> Descendants(int leaderPid, bool includeSession)
    {
        var stats = ReadProcessTable();
        var result = new List<int>();
        var seen = new HashSet<int>();
        if (stats.Any(s => s.Pid == leaderPid))
        {
            result.Add(leaderPid);
            seen.Add(leaderPid);
        }

        if (includeSession)
        {
            foreach (var s in stats)
            {
                if (s.Session == leaderPid && seen.Add(s.Pid))
                {
                    result.Add(s.Pid);
                }
            }
        }

        var frontier = new Queue<int>(result.Count == 0 ? [leaderPid] : result);
        while (frontier.Count > 0)
        {
            var parent = frontier.Dequeue();
            foreach (var s in stats)
            {
                if (s.ParentPid == parent && seen.Add(s.Pid))
                {
                    result.Add(s.Pid);
                    frontier.Enqueue(s.Pid);
                }
            }
        }

        return result;
    }

    internal readonly record struct ProcStat(int Pid, int ParentPid, int Session, char State, ulong StartTime);

    private static readonly Lazy<string?> s_bootId = new(() =>
    {
        try
        {
            return File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    });

    /// <summary>
    /// Nanoseconds per clock tick of <c>/proc</c>'s start times (10 ms where <c>USER_HZ</c> is 100), or 0 where a tick is not a
    /// whole number of nanoseconds (the kernel then rounds differently, and start times are read from <c>/proc</c>).
    /// </summary>
    private static readonly long s_nanosecondsPerTick = NanosecondsPerTick();

    /// <summary>Gets the nanoseconds per clock tick of <c>/proc</c>'s start times, or 0 where they are only read from <c>/proc</c>.</summary>
    internal static long TickNanoseconds => s_nanosecondsPerTick;

    private static long NanosecondsPerTick()
    {
        if (!IsSupported)
        {
            return 0;
        }

        var hz = (long)Libc.sysconf(Libc.ScClkTck);
        return hz > 0 && 1_000_000_000 % hz == 0 ? 1_000_000_000 / hz : 0;
    }

    /// <summary>Reads CLOCK_BOOTTIME, in nanoseconds; -1 where it cannot be read.</summary>
    public static unsafe long BootClock()
    {
        if (s_nanosecondsPerTick == 0)
        {
            return -1;
        }

        var timespec = stackalloc nint[2];
        return Libc.clock_gettime(Libc.ClockBootTime, timespec) == 0 ? ((long)timespec[0] * 1_000_000_000) + timespec[1] : -1;
    }

    /// <summary>
    /// The start time (<c>/proc/PID/stat</c> field 22) of a process forked between two readings of <see cref="BootClock"/>, when
    /// both fall in the same clock tick; otherwise <see langword="null"/> (read it from <c>/proc</c>).
    /// </summary>
    /// <remarks>
    /// The kernel stamps a new process with CLOCK_BOOTTIME in <c>fork</c> and shows it in whole ticks, rounded down; a stamp
    /// between two readings of the same tick is that tick. A spawn takes ~0.15 ms, so about 1 in 60 crosses a 10 ms tick and
    /// is read from <c>/proc</c>: the others save the open, read and close of its stat file on the spawning thread, ~20 µs
    /// of the serial chain with a data directory (benchmarks/ANALYSIS.md, journal5).
    /// </remarks>
    public static ulong? StartTimeBetween(long before, long after) =>
        before >= 0 && after >= before && before / s_nanosecondsPerTick == after / s_nanosecondsPerTick
            ? (ulong)(before / s_nanosecondsPerTick)
            : null;

    /// <summary>What identifies a process beyond its pid: its start time (clock ticks since boot) and the boot it belongs to.</summary>
    /// <param name="pid">The process.</param>
    /// <param name="startTime">Its start time when the caller knows it (<see cref="StartTimeBetween"/>), or null to read it.</param>
    public static (ulong StartTime, string BootId)? Identify(int pid, ulong? startTime = null)
    {
        if (!IsSupported || s_bootId.Value is not { } boot)
        {
            return null;
        }

        if (startTime is { } known)
        {
            return (known, boot);
        }

        try
        {
            return TryReadStat($"/proc/{pid}/stat", out var stat) ? (stat.StartTime, boot) : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// The live processes that journaled commands left: each command's leader (same pid and start time), every process of its
    /// session started no earlier than it, and their descendants. A pid now held by another process (a different start time) is
    /// never included, nor is anything after a reboot.
    /// </summary>
    public static List<int> Leftovers(IEnumerable<Storage.JobProcessStartedRecord> processes)
    {
        var found = new List<int>();
        if (!IsSupported || s_bootId.Value is not { } boot)
        {
            return found;
        }

        var table = ReadProcessTable();
        var byPid = table.ToDictionary(p => p.Pid);
        var seen = new HashSet<int>();
        foreach (var p in processes)
        {
            if (p.BootId != boot || (byPid.TryGetValue(p.ProcessId, out var leader) && leader.StartTime != p.ProcessStartTime))
            {
                continue;
            }

            var frontier = new Queue<int>();
            foreach (var s in table)
            {
                if ((s.Pid == p.ProcessId || s.Session == p.ProcessId) && s.StartTime >= p.ProcessStartTime && seen.Add(s.Pid))
                {
                    found.Add(s.Pid);
                    frontier.Enqueue(s.Pid);
                }
            }

            while (frontier.Count > 0)
            {
                var parent = frontier.Dequeue();
                foreach (var s in table)
                {
                    if (s.ParentPid == parent && s.StartTime >= p.ProcessStartTime && seen.Add(s.Pid))
                    {
                        found.Add(s.Pid);
                        frontier.Enqueue(s.Pid);
                    }
                }
            }
        }

        return found;
    }

    /// <summary>Sends <paramref name="signal"/> to every leftover of <paramref name="processes"/> (see <see cref="Leftovers"/>).</summary>
    public static void SignalLeftovers(IEnumerable<Storage.JobProcessStartedRecord> processes, int signal)
    {
        foreach (var pid in Leftovers(processes))
        {
            _ = Libc.kill(pid, signal);
        }
    }

    internal static List<ProcStat> ReadProcessTable()
    {
        var list = new List<ProcStat>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            var name = Path.GetFileName(dir);
            if (name.Length == 0 || !char.IsAsciiDigit(name[0]))
            {
                continue;
            }

            try
            {
                if (TryReadStat(Path.Combine(dir, "stat"), out var stat) && stat.State != 'Z')
                {
                    list.Add(stat);
                }
            }
            catch (IOException)
            {
                // The process ended while we looked.
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        return list;
    }

    /// <summary>
    /// Reads and parses a <c>/proc/PID/stat</c> file with one open, read and close into a buffer on the stack (the line ends
    /// with a newline, so no read for the end of the file): the journal's process identity is read after every spawn, and
    /// File.ReadAllText cost seven system calls (open, fstat, two flock, two read, close) and the string, split into 50 more. False if the process is gone or the line does not parse.
    /// </summary>
    internal static unsafe bool TryReadStat(string path, out ProcStat stat)
    {
        stat = default;
        const int Size = 4096; // a stat line is at most about 1.2 KB (52 numbers and a 64-byte name)
        var buffer = stackalloc byte[Size];
        var fd = Libc.open(path, Libc.OCloExec);
        if (fd < 0)
        {
            return false;
        }

        var length = 0;
        try
        {
            while (length < Size)
            {
                var read = Libc.read(fd, buffer + length, Size - length);
                if (read > 0)
                {
                    length += (int)read;
                    if (buffer[length - 1] == (byte)'\n')
                    {
                        break; // the whole line: no second read for the end of the file
                    }
                }
                else if (read == 0 || Marshal.GetLastPInvokeError() != Libc.EIntr)
                {
                    break;
                }
            }
        }
        finally
        {
            _ = Libc.close(fd);
        }

        return TryParseStat(new ReadOnlySpan<byte>(buffer, length), out stat);
    }

    /// <summary>
    /// Parses <c>/proc/PID/stat</c>: "pid (comm) state ppid pgrp session ...", where comm may hold spaces and parentheses. The
    /// file's bytes are ASCII but for the name, whose UTF-8 bytes are never those of ')' or ' ': the name is skipped up to the
    /// last ')'.
    /// </summary>
    internal static bool TryParseStat(ReadOnlySpan<byte> text, out ProcStat stat)
    {
        stat = default;
        var close = text.LastIndexOf((byte)')');
        var space = text.IndexOf((byte)' ');
        if (close < 0 || space < 0 || close + 2 > text.Length || !TryParseNumber(text[..space], out var pid) || pid > int.MaxValue)
        {
            return false;
        }

        // After the name: state, ppid, pgrp, session, ... with the start time the 20th of these (field 22 of the line).
        var rest = text[(close + 2)..];
        Span<Range> fields = stackalloc Range[20];
        var count = 0;
        var start = 0;
        for (var i = 0; i <= rest.Length && count < fields.Length; i++)
        {
            if (i == rest.Length || rest[i] == (byte)' ')
            {
                fields[count++] = start..i;
                start = i + 1;
            }
        }

        if (count < 4
            || !TryParseNumber(rest[fields[1]], out var ppid) || ppid > int.MaxValue
            || !TryParseNumber(rest[fields[3]], out var session) || session > int.MaxValue)
        {
            return false;
        }

        // The start time, 0 when the line is cut short.
        var startTime = count > 19 && TryParseNumber(rest[fields[19]], out var ticks) ? ticks : 0;
        var state = rest[fields[0]] is [var first, ..] ? (char)first : '?';
        stat = new ProcStat((int)pid, (int)ppid, (int)session, state, startTime);
        return true;
    }

    private static bool TryParseNumber(ReadOnlySpan<byte> digits, out ulong value) =>
        System.Buffers.Text.Utf8Parser.TryParse(digits, out value, out var consumed) && consumed == digits.Length && digits.Length > 0;
}
