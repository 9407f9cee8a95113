using System.Collections;
using System.Runtime.InteropServices;

namespace Dispatcher.Running;

/// <summary>
/// The runner used on Linux: one <c>posix_spawn</c> per command that makes the child the leader of a new session (so a kill reaches
/// its whole process group) with every signal back at its default disposition (the .NET runtime ignores SIGPIPE, and children
/// would inherit that), stdin on <c>/dev/null</c>, and stdout and stderr on one pipe (truly merged, in the order written). The
/// output is read and the command reaped by <see cref="ChildEventLoop"/>: one thread for all commands, no thread-pool hop.
/// </summary>
/// <remarks>
/// .NET's Process class (and so CliWrap, which <see cref="CliWrapJobRunner"/> uses elsewhere) can do neither of those two things,
/// so on Linux the CliWrap runner has to exec <c>setsid</c> and <c>env</c> in front of every command; those two extra execs cost
/// about two thirds of the throughput (see benchmarks/RESULTS.md). This runner needs glibc 2.29 or later (for
/// <c>posix_spawn_file_actions_addchdir_np</c>) and falls back to <see cref="CliWrapJobRunner"/> where that is missing.
/// </remarks>
internal sealed class PosixSpawnJobRunner : IJobRunner
{
    private const int PosixSpawnSetSigDef = 0x04;
    private const int PosixSpawnSetSigMask = 0x08;
    private const int PosixSpawnSetSid = 0x80;
    private const int OCloExec = 0x80000;
    private const int ONonBlock = 0x800;
    private const int FSetFl = 4;
    private const int ORdOnly = 0;

    // Read once: the runtime sets its dispositions at start-up, and a host rarely changes them later.
    private static readonly int[] s_ignoredSignals = ProcessTree.IsSupported ? [.. IgnoredSignals()] : [];

    public static bool IsSupported { get; } = ProcessTree.IsSupported
        && ChildEventLoop.IsSupported
        && NativeLibrary.TryLoad("libc.so.6", out var libc)
        && NativeLibrary.TryGetExport(libc, "posix_spawn_file_actions_addchdir_np", out _);

    public async Task<int> RunAsync(JobCommand command, IJobOutput output, CancellationToken forcefulCancellationToken,
        CancellationToken gracefulCancellationToken)
    {
        var environment = MergedEnvironment(command.Environment);
        if (ProgramResolver.Resolve(command, environment.GetValueOrDefault("PATH"), output) is not { } program)
        {
            return ProgramResolver.NotStartedExitCode;
        }

        var (pid, outputEnd, error) = Spawn(program, [program, .. command.Arguments], environment, command.WorkingDirectory);
        if (pid <= 0)
        {
            output.Write(ProgramResolver.CannotRun(command.Program, Marshal.GetPInvokeErrorMessage(error)));
            return ProgramResolver.NotStartedExitCode;
        }

        var watch = ChildEventLoop.Add(pid, (int)outputEnd, output);
        using var onGraceful = gracefulCancellationToken.Register(static p => ProcessTree.Terminate((int)p!), pid);
        using var onForceful = forcefulCancellationToken.Register(static w =>
        {
            var watch = (ChildEventLoop.Watch)w!;
            ProcessTree.Kill(watch.Pid);

            // Killed: a process that escaped the session and still holds the output is not waited for.
            watch.StopReading();
        }, watch);

        // Completes on the loop's thread once the output has ended and the command was reaped; what follows runs there too.
        return await watch.Completion.ConfigureAwait(false);
    }

    private static Dictionary<string, string> MergedEnvironment(IReadOnlyDictionary<string, string>? overrides)
    {
        var environment = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (DictionaryEntry e in Environment.GetEnvironmentVariables())
        {
            environment[(string)e.Key] = (string?)e.Value ?? string.Empty;
        }

        foreach (var (k, v) in overrides ?? new Dictionary<string, string>())
        {
            environment[k] = v;
        }

        return environment;
    }

    private static (int Pid, IntPtr OutputEnd, int Error) Spawn(string path, string[] argv, Dictionary<string, string> environment, string? workingDirectory)
    {
        var fds = new int[2];
        if (NativeMethods.pipe2(fds, OCloExec) != 0)
        {
            return (-1, IntPtr.Zero, Marshal.GetLastPInvokeError());
        }

        // Only the parent's end is non-blocking: the command writes to a blocking pipe, as it would anywhere else.
        if (NativeMethods.fcntl(fds[0], FSetFl, ONonBlock) != 0)
        {
            var fcntlError = Marshal.GetLastPInvokeError();
            _ = NativeMethods.close(fds[0]);
            _ = NativeMethods.close(fds[1]);
            return (-1, IntPtr.Zero, fcntlError);
        }

        var strings = new List<IntPtr>();
        var actions = Marshal.AllocHGlobal(256);
        var attributes = Marshal.AllocHGlobal(1024);
        var signals = Marshal.AllocHGlobal(256);
        var actionsReady = false;
        var attributesReady = false;
        try
        {
            IntPtr Utf8(string s)
            {
                var p = Marshal.StringToCoTaskMemUTF8(s);
                strings.Add(p);
                return p;
            }

            var args = argv.Select(Utf8).Append(IntPtr.Zero).ToArray();
            var env = environment.Select(kv => Utf8(kv.Key + "=" + kv.Value)).Append(IntPtr.Zero).ToArray();

            Check(NativeMethods.posix_spawn_file_actions_init(actions));
            actionsReady = true;
            Check(NativeMethods.posix_spawn_file_actions_addopen(actions, 0, "/dev/null", ORdOnly, 0));
            Check(NativeMethods.posix_spawn_file_actions_adddup2(actions, fds[1], 1));
            Check(NativeMethods.posix_spawn_file_actions_adddup2(actions, fds[1], 2));
            if (workingDirectory is not null)
            {
                Check(NativeMethods.posix_spawn_file_actions_addchdir_np(actions, workingDirectory));
            }

            Check(NativeMethods.posix_spawnattr_init(attributes));
            attributesReady = true;
            Check(NativeMethods.posix_spawnattr_setflags(attributes, (short)(PosixSpawnSetSid | PosixSpawnSetSigDef | PosixSpawnSetSigMask)));
            // Only ignored dispositions survive exec (handlers are reset by it): put those back to default, not all 64 one by one.
            Check(NativeMethods.sigemptyset(signals) == 0 ? 0 : Marshal.GetLastPInvokeError());
            foreach (var signal in s_ignoredSignals)
            {
                Check(NativeMethods.sigaddset(signals, signal) == 0 ? 0 : Marshal.GetLastPInvokeError());
            }

            Check(NativeMethods.posix_spawnattr_setsigdefault(attributes, signals));
            Check(NativeMethods.sigemptyset(signals) == 0 ? 0 : Marshal.GetLastPInvokeError());
            Check(NativeMethods.posix_spawnattr_setsigmask(attributes, signals));

            var error = NativeMethods.posix_spawn(out var pid, path, actions, attributes, args, env);
            _ = NativeMethods.close(fds[1]);
            if (error != 0)
            {
                _ = NativeMethods.close(fds[0]);
                return (-1, IntPtr.Zero, error);
            }

            return (pid, fds[0], 0);
        }
        catch (SpawnSetupException ex)
        {
            _ = NativeMethods.close(fds[0]);
            _ = NativeMethods.close(fds[1]);
            return (-1, IntPtr.Zero, ex.Error);
        }
        finally
        {
            if (attributesReady)
            {
                _ = NativeMethods.posix_spawnattr_destroy(attributes);
            }

            if (actionsReady)
            {
                _ = NativeMethods.posix_spawn_file_actions_destroy(actions);
            }

            foreach (var s in strings)
            {
                Marshal.FreeCoTaskMem(s);
            }

            Marshal.FreeHGlobal(actions);
            Marshal.FreeHGlobal(attributes);
            Marshal.FreeHGlobal(signals);
        }

        static void Check(int error)
        {
            if (error != 0)
            {
                throw new SpawnSetupException(error);
            }
        }
    }

    /// <summary>The signals this process ignores now (SIGPIPE, by the .NET runtime, at least), from <c>/proc/self/status</c>.</summary>
    internal static IEnumerable<int> IgnoredSignals()
    {
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        if (line is null || !ulong.TryParse(line.AsSpan(7).Trim(), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture, out var mask))
        {
            // Cannot tell: reset every signal.
            return Enumerable.Range(1, 64).Where(s => s is not 9 and not 19);
        }

        return Enumerable.Range(1, 64).Where(s => (mask & (1UL << (s - 1))) != 0);
    }

    private sealed class SpawnSetupException(int error) : Exception
    {
        public int Error { get; } = error;
    }

#pragma warning disable SA1300, IDE1006, CA5392, CA1401 // libc names
    private static class NativeMethods
    {
        private const string Libc = "libc.so.6";

        [DllImport(Libc, SetLastError = true)]
        internal static extern int pipe2([Out] int[] fds, int flags);

        [DllImport(Libc, SetLastError = true)]
        internal static extern int fcntl(int fd, int command, int argument);

        [DllImport(Libc, SetLastError = true)]
        internal static extern int close(int fd);

        [DllImport(Libc, SetLastError = true)]
        internal static extern int sigemptyset(IntPtr set);

        [DllImport(Libc, SetLastError = true)]
        internal static extern int sigaddset(IntPtr set, int signal);

        [DllImport(Libc)]
        internal static extern int posix_spawn_file_actions_init(IntPtr actions);

        [DllImport(Libc)]
        internal static extern int posix_spawn_file_actions_destroy(IntPtr actions);

        [DllImport(Libc)]
        internal static extern int posix_spawn_file_actions_addopen(IntPtr actions, int fd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, int mode);

        [DllImport(Libc)]
        internal static extern int posix_spawn_file_actions_adddup2(IntPtr actions, int fd, int newFd);

        [DllImport(Libc)]
        internal static extern int posix_spawn_file_actions_addchdir_np(IntPtr actions, [MarshalAs(UnmanagedType.LPUTF8Str)] string path);

        [DllImport(Libc)]
        internal static extern int posix_spawnattr_init(IntPtr attributes);

        [DllImport(Libc)]
        internal static extern int posix_spawnattr_destroy(IntPtr attributes);

        [DllImport(Libc)]
        internal static extern int posix_spawnattr_setflags(IntPtr attributes, short flags);

        [DllImport(Libc)]
        internal static extern int posix_spawnattr_setsigdefault(IntPtr attributes, IntPtr signals);

        [DllImport(Libc)]
        internal static extern int posix_spawnattr_setsigmask(IntPtr attributes, IntPtr signals);

        [DllImport(Libc)]
        internal static extern int posix_spawn(out int pid, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, IntPtr actions, IntPtr attributes,
            IntPtr[] argv, IntPtr[] envp);
    }
#pragma warning restore SA1300, IDE1006, CA5392, CA1401
}
