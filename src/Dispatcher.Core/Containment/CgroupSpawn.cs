using System.Runtime.InteropServices;
using Dispatcher.Interop;

namespace Dispatcher.Containment;

/// <summary>
/// Starts a command inside its job's cgroups before it runs anything of its own. posix_spawn cannot place a child in a cgroup
/// (glibc's <c>posix_spawnattr_setcgroup_np</c> arrived in 2.39), and writing the pid into <c>cgroup.procs</c> after the spawn
/// races with the child's first fork. So the child is a stub, <c>/bin/sh -c 'read -r x &lt;&amp;3 ...; exec "$0" "$@"'</c>:
/// it blocks reading a pipe on descriptor 3 while the runner writes its pid into the job's cgroups, then <c>exec</c>s the command
/// with the same pid, arguments and environment. Every process the command ever starts is a descendant of a process already in
/// the cgroups. If the placement fails the stub is killed before it runs anything.
/// </summary>
/// <remarks>The stub costs one more <c>exec</c> of a small shell per command (measured in benchmarks/RESULTS.md); without containment the runner spawns the command directly.</remarks>
internal static class CgroupSpawn
{
    /// <summary>The stub's program.</summary>
    public const string Shell = "/bin/sh";

    /// <summary>The descriptor the stub waits on.</summary>
    public const int StartFd = 3;

    private const string Script = "read -r x <&3 || exit 125; exec 3<&-; exec \"$0\" \"$@\"";

    /// <summary>The stub's argument vector for a command.</summary>
    public static string[] Arguments(string path, IReadOnlyList<string> arguments) => [Shell, "-c", Script, path, .. arguments];

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

    /// <summary>Places the stub in the job's cgroups and lets it run the command; on failure kills and reaps it and throws.</summary>
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
