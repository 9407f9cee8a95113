using System.Runtime.InteropServices;
using System.Text;
using Dispatcher.Interop;

namespace Dispatcher.Containment;

/// <summary>
/// Starts a command inside its job's cgroups before it runs anything of its own. posix_spawn cannot place a child in a cgroup
/// (glibc's <c>posix_spawnattr_setcgroup_np</c> arrived in 2.39), and writing the pid into <c>cgroup.procs</c> after the spawn
/// races with the child's first fork. So the child is a stub, <c>/bin/sh -c SCRIPT PROGRAM ARGS...</c>, that is in every cgroup
/// of the job before it <c>exec</c>s the command with the same pid, arguments and environment; every process the command ever
/// starts is a descendant of a process already in the cgroups.
/// <list type="bullet">
/// <item>Into a cgroup v1 cgroup the stub moves itself: it writes <c>0</c> into its <c>tasks</c> file (it has one thread). A move
/// of the writer's own thread is the one migration for which the kernel does not take its global
/// <c>cgroup_threadgroup_rwsem</c> for writing, and that write waits for an RCU grace period (measured: 10 to 15 ms, in about a
/// third of the moves of a serial queue; benchmarks/RESULTS.md). If it cannot, it exits 125 with the reason and runs nothing.</item>
/// <item>Into a cgroup v2 cgroup a process can only be moved whole, through <c>cgroup.procs</c>, which always takes that lock:
/// the stub blocks reading a pipe on descriptor 3 while the runner writes its pid there, then goes on. If the placement fails
/// the stub is killed before it runs anything.</item>
/// </list>
/// </summary>
/// <remarks>The stub costs one more <c>exec</c> of a small shell per command; without containment the runner spawns the command directly.</remarks>
internal static class CgroupSpawn
{
    /// <summary>The stub's program.</summary>
    public const string Shell = "/bin/sh";

    /// <summary>The descriptor the stub waits on when the runner places it.</summary>
    public const int StartFd = 3;

    /// <summary>The exit code of a stub that could not place itself (the command did not run).</summary>
    public const int NotPlacedExitCode = 125;

    /// <summary>The stub's argument vector for a command.</summary>
    public static string[] Arguments(JobCgroup cgroup, string path, IReadOnlyList<string> arguments) =>
        [Shell, "-c", cgroup.StubScript, path, .. arguments];

    /// <summary>The stub's script for a job: wait to be placed in cgroup v2 (if any), move itself into its cgroup v1 cgroups, exec the command.</summary>
    internal static string Script(JobCgroup cgroup)
    {
        var script = new StringBuilder();
        if (cgroup.PlacedByRunner)
        {
            script.Append("read -r x <&3 || exit 125; exec 3<&-; ");
        }

        var files = cgroup.SelfPlacementFiles.ToList();
        if (files.Count > 0)
        {
            script.AppendJoin(" && ", files.Select(f => "echo 0 >" + Quote(f)))
                .Append(" || { echo 'dispatcher: the command was not started: it could not be placed in the cgroups of its job' >&2; exit 125; }; ");
        }

        return script.Append("exec \"$0\" \"$@\"").ToString();
    }

    /// <summary>A word the shell reads back as exactly <paramref name="text"/>: single-quoted, each <c>'</c> as <c>'\''</c>.</summary>
    internal static string Quote(string text) => "'" + text.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    /// <summary>A close-on-exec pipe: the stub gets the read end as descriptor 3 (by a dup2 file action), the runner keeps the write end.</summary>
    /// <exception cref="IOException">No pipe could be made.</exception>
    public static unsafe (int Read, int Write) CreateStartPipe()
    {
        var fds = stackalloc int[2];
        if (Libc.pipe2(fds, Libc.OCloExec) != 0)
        {
            throw new IOException($"Cannot create a pipe: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }

        return (fds[0], fds[1]);
    }

    /// <summary>Places the stub in the job's cgroup v2 cgroup and lets it go on; on failure kills and reaps it and throws.</summary>
    /// <exception cref="IOException">The stub could not be placed; it has been killed.</exception>
    public static unsafe void Release(JobCgroup cgroup, int pid, int startWrite)
    {
        try
        {
            cgroup.Place(pid);
            byte line = (byte)'\n';
            if (Libc.write(startWrite, &line, 1) != 1)
            {
                throw new IOException($"Cannot start the command: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            }
        }
        catch
        {
            _ = Libc.kill(pid, Libc.SigKill);
            _ = Libc.close(startWrite);
            _ = Libc.waitpid(pid, out _, 0);
            throw;
        }

        _ = Libc.close(startWrite);
    }
}
