using System.Runtime.InteropServices;
using Dispatcher.Containment;
using Dispatcher.Interop;

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
internal sealed class PosixSpawnJobRunner : IJobRunner, IDisposable
{
    private const int PosixSpawnSetSigDef = 0x04;
    private const int PosixSpawnSetSigMask = 0x08;
    private const int PosixSpawnSetSid = 0x80;
    private const int OCloExec = 0x80000;
    private const int ONonBlock = 0x800;
    private const int FSetFl = 4;
    private const int ORdOnly = 0;

    private const int ENoEnt = 2;
    private const int EAcces = 13;
    private const int ENoExec = 8;

    // Built once: the runtime sets its signal dispositions at start-up, and a host rarely changes them later.
    private static readonly Lazy<IntPtr> s_attributes = new(CreateAttributes);

    // Kept for the life of the process, like the attributes (see SharedActions): at most one entry per descriptor number.
    private static readonly IntPtr[] s_sharedActions = new IntPtr[1024];
    private static readonly Lazy<int> s_devNull = new(() => Libc.open("/dev/null", ORdOnly | OCloExec));

    private readonly ChildEventLoop _loop = new();

    /// <summary>Gets whether the runner's event-loop thread is running (null before the first command).</summary>
    internal bool? EventLoopIsAlive => _loop.IsAlive;

    /// <summary>Gets how many events the loop got for files it no longer watches.</summary>
    internal long StrayEvents => _loop.StrayEvents;
    private readonly EnvironmentFilter _environmentFilter;

    public PosixSpawnJobRunner(EnvironmentFilter? environmentFilter = null) => _environmentFilter = environmentFilter ?? EnvironmentFilter.Default;

    public static bool IsSupported { get; } = ProcessTree.IsSupported
        && ChildEventLoop.IsSupported
        && Libc.Has("posix_spawn_file_actions_addchdir_np");

    public async Task<int> RunAsync(JobCommand command, IJobOutput output, CancellationToken forcefulCancellationToken,
        CancellationToken gracefulCancellationToken)
    {
        int pid;
        int outputEnd;
        ulong? startTime;
        using (var environment = SpawnEnvironment.Acquire(command.Environment, _environmentFilter))
        {
            if (ProgramResolver.ResolveRemembered(command, environment.Path, output, out var remembered) is not { } program)
            {
                return ProgramResolver.NotStartedExitCode;
            }

            int error;
            (pid, outputEnd, error, startTime) = Spawn(program, command, environment.Pointer);
            if (pid <= 0 && remembered && error is ENoEnt or EAcces or ENoExec)
            {
                // The program moved since it was looked up: look again, once.
                ProgramResolver.Forget(command, environment.Path);
                if (ProgramResolver.Resolve(command, environment.Path, output) is not { } again)
                {
                    return ProgramResolver.NotStartedExitCode;
                }

                (pid, outputEnd, error, startTime) = Spawn(again, command, environment.Pointer);
            }

            if (pid <= 0)
            {
                output.Write(ProgramResolver.CannotRun(command.Program, Marshal.GetPInvokeErrorMessage(error)));
                return ProgramResolver.NotStartedExitCode;
            }
        }

        (output as IJobProcessListener)?.ProcessStarted(pid, startTime);
        ChildEventLoop.Watch watch;
        try
        {
            watch = _loop.Add(pid, outputEnd, output);
        }
        catch (Exception ex) when (ex is ObjectDisposedException or IOException)
        {
            _ = Libc.close(outputEnd);
            ProcessTree.Kill(pid);
            _ = ChildEventLoop.WaitBlocking(pid);
            throw;
        }

        using var onGraceful = gracefulCancellationToken.Register(static p => ProcessTree.Terminate((int)p!), pid);
        using var onForceful = forcefulCancellationToken.Register(static w =>
        {
            var watch = (ChildEventLoop.Watch)w!;
            ProcessTree.Kill(watch.Pid);

            // Killed: a process that escaped the session and still holds the output is not waited for.
            watch.StopReading();
        }, watch);

        // Completes on the loop's thread once the output has ended and the command was reaped; what follows runs there too.
        var exitCode = await watch.Completion.ConfigureAwait(false);
        if (watch.Usage is { } usage && output is ICommandUsageSink sink)
        {
            sink.Report(usage);
        }

        return exitCode;
    }

    /// <summary>Stops the runner's child event loop (its thread and descriptors).</summary>
    public void Dispose() => _loop.Dispose();

    /// <summary>
    /// A command's output pipe. Its read end (the parent's) is non-blocking; the write end, the command's stdout and stderr, stays
    /// blocking, as it would be anywhere else. Made right before the spawn: a spare made after the previous spawn (fourth round)
    /// only moved pipe2 and fcntl from before one spawn to after another, both on the serial chain's one core (benchmarks/ANALYSIS.md,
    /// fifth round: the same cycle either way), so it went.
    /// </summary>
    private static unsafe (int Read, int Write, int Error) CreatePipe()
    {
        var fds = stackalloc int[2];
        if (Libc.pipe2(fds, OCloExec) != 0)
        {
            return (-1, -1, Marshal.GetLastPInvokeError());
        }

        if (Libc.fcntl(fds[0], FSetFl, ONonBlock) != 0)
        {
            var error = Marshal.GetLastPInvokeError();
            _ = Libc.close(fds[0]);
            _ = Libc.close(fds[1]);
            return (-1, -1, error);
        }

        return (fds[0], fds[1], 0);
    }

    private static (int Pid, int OutputEnd, int Error, ulong? StartTime) Spawn(string path, JobCommand command, IntPtr environment)
    {
        var (read, write, pipeError) = CreatePipe();
        if (pipeError != 0)
        {
            return (-1, -1, pipeError, null);
        }

        int[] fds = [read, write];

        // In a cgroup: spawned in place by this thread moved into the cgroups (cgroup v1), or through a stub that is placed (or
        // places itself), then execs the command (see CgroupSpawn).
        var cgroup = command.Cgroup;
        var inPlace = cgroup?.PlacesSpawningThread == true;
        var stub = cgroup is not null && !inPlace;
        var placed = stub && cgroup!.PlacedByRunner;
        (int Read, int Write) start = (-1, -1);
        if (placed)
        {
            try
            {
                start = CgroupSpawn.CreateStartPipe();
            }
            catch (IOException)
            {
                _ = Libc.close(fds[0]);
                _ = Libc.close(fds[1]);
                throw;
            }
        }

        var (program, arguments) = command.RunAs is { } user ? user.Wrap(path, command.Arguments) : (path, command.Arguments);
        using var argv = NativeStringArray.Create(stub ? CgroupSpawn.Arguments(cgroup!, program, arguments) : [program, .. arguments]);
        var shared = placed || command.StandardInputFile is not null || command.WorkingDirectory is not null ? IntPtr.Zero : SharedActions(fds[1]);
        var actions = shared != IntPtr.Zero ? shared : Marshal.AllocHGlobal(256);
        var actionsReady = false;
        try
        {
            if (shared == IntPtr.Zero)
            {
                Check(Libc.posix_spawn_file_actions_init(actions));
                actionsReady = true;
                if (placed)
                {
                    Check(Libc.posix_spawn_file_actions_adddup2(actions, start.Read, CgroupSpawn.StartFd));
                }

                Check(Libc.posix_spawn_file_actions_addopen(actions, 0, command.StandardInputFile ?? "/dev/null", ORdOnly, 0));
                Check(Libc.posix_spawn_file_actions_adddup2(actions, fds[1], 1));
                Check(Libc.posix_spawn_file_actions_adddup2(actions, fds[1], 2));
                if (command.WorkingDirectory is { } workingDirectory)
                {
                    Check(Libc.posix_spawn_file_actions_addchdir_np(actions, workingDirectory));
                }
            }

            int error;
            int pid;
            long before;
            long after;
            if (inPlace)
            {
                try
                {
                    cgroup!.EnterSpawningThread();
                }
                catch (IOException)
                {
                    _ = Libc.close(fds[0]);
                    _ = Libc.close(fds[1]);
                    throw;
                }

                before = ProcessTree.BootClock();
                error = Libc.posix_spawn(out pid, program, actions, s_attributes.Value, argv.DangerousGetHandle(), environment);
                after = ProcessTree.BootClock();
                try
                {
                    cgroup!.LeaveSpawningThread();
                }
                catch (IOException)
                {
                    // Cannot happen short of the host's own cgroup refusing a move it accepted at start: the command is not run.
                    if (error == 0)
                    {
                        ProcessTree.Kill(pid);
                        _ = Libc.waitpid(pid, out _, 0);
                    }

                    _ = Libc.close(fds[0]);
                    _ = Libc.close(fds[1]);
                    throw;
                }
            }
            else
            {
                before = ProcessTree.BootClock();
                error = Libc.posix_spawn(out pid, stub ? CgroupSpawn.Shell : program, actions, s_attributes.Value, argv.DangerousGetHandle(), environment);
                after = ProcessTree.BootClock();
            }

            _ = Libc.close(fds[1]);
            if (error != 0)
            {
                _ = Libc.close(fds[0]);
                CloseStartPipe(start.Read, start.Write);
                return (-1, -1, error, null);
            }

            if (placed)
            {
                CloseStartPipe(start.Read, -1);
                start.Read = -1;
                try
                {
                    CgroupSpawn.Release(cgroup!, pid, start.Write);
                }
                catch
                {
                    _ = Libc.close(fds[0]);
                    throw;
                }
            }

            return (pid, fds[0], 0, ProcessTree.StartTimeBetween(before, after));
        }
        catch (SpawnSetupException ex)
        {
            _ = Libc.close(fds[0]);
            _ = Libc.close(fds[1]);
            CloseStartPipe(start.Read, start.Write);
            return (-1, -1, ex.Error, null);
        }
        finally
        {
            if (actionsReady)
            {
                _ = Libc.posix_spawn_file_actions_destroy(actions);
            }

            if (shared == IntPtr.Zero)
            {
                Marshal.FreeHGlobal(actions);
            }
        }
    }

    /// <summary>
    /// The file actions of the common command (stdin on /dev/null, stdout and stderr on the output pipe whose write end is
    /// <paramref name="writeFd"/>, no directory change), built once per write-end number and shared by every spawn with that
    /// number (posix_spawn only reads them; the kernel hands out the lowest free number, so a few are reused all the time).
    /// Built per spawn they cost an allocation, init and destroy, five getrlimit calls (glibc checks every descriptor of an
    /// action against RLIMIT_NOFILE; strace of a serial queue) and, in the child before its exec, an open of /dev/null, which
    /// is now a dup2 of one descriptor this process keeps open. <see cref="IntPtr.Zero"/> when the number is out of range.
    /// </summary>
    private static IntPtr SharedActions(int writeFd)
    {
        var devNull = s_devNull.Value;
        if (writeFd < 3 || writeFd >= s_sharedActions.Length || devNull < 3)
        {
            return IntPtr.Zero;
        }

        var existing = Volatile.Read(ref s_sharedActions[writeFd]);
        if (existing != IntPtr.Zero)
        {
            return existing;
        }

        var actions = Marshal.AllocHGlobal(256);
        if (Libc.posix_spawn_file_actions_init(actions) != 0)
        {
            Marshal.FreeHGlobal(actions);
            return IntPtr.Zero;
        }

        if (Libc.posix_spawn_file_actions_adddup2(actions, devNull, 0) != 0
            || Libc.posix_spawn_file_actions_adddup2(actions, writeFd, 1) != 0
            || Libc.posix_spawn_file_actions_adddup2(actions, writeFd, 2) != 0)
        {
            _ = Libc.posix_spawn_file_actions_destroy(actions);
            Marshal.FreeHGlobal(actions);
            return IntPtr.Zero;
        }

        var raced = Interlocked.CompareExchange(ref s_sharedActions[writeFd], actions, IntPtr.Zero);
        if (raced != IntPtr.Zero)
        {
            _ = Libc.posix_spawn_file_actions_destroy(actions);
            Marshal.FreeHGlobal(actions);
            return raced;
        }

        return actions;
    }

    private static void CloseStartPipe(int read, int write)
    {
        if (read >= 0)
        {
            _ = Libc.close(read);
        }

        if (write >= 0)
        {
            _ = Libc.close(write);
        }
    }

    /// <summary>
    /// The spawn attributes every command shares (posix_spawn only reads them): a new session, every signal this process ignores
    /// back at its default (only ignored dispositions survive exec; handlers are reset by it), and an empty signal mask.
    /// Built once and kept for the life of the process.
    /// </summary>
    private static IntPtr CreateAttributes()
    {
        var attributes = Marshal.AllocHGlobal(1024);
        var signals = Marshal.AllocHGlobal(256);
        try
        {
            Check(Libc.posix_spawnattr_init(attributes));
            Check(Libc.posix_spawnattr_setflags(attributes, (short)(PosixSpawnSetSid | PosixSpawnSetSigDef | PosixSpawnSetSigMask)));
            Check(Libc.sigemptyset(signals) == 0 ? 0 : Marshal.GetLastPInvokeError());
            foreach (var signal in IgnoredSignals())
            {
                Check(Libc.sigaddset(signals, signal) == 0 ? 0 : Marshal.GetLastPInvokeError());
            }

            Check(Libc.posix_spawnattr_setsigdefault(attributes, signals));
            Check(Libc.sigemptyset(signals) == 0 ? 0 : Marshal.GetLastPInvokeError());
            Check(Libc.posix_spawnattr_setsigmask(attributes, signals));
            return attributes;
        }
        finally
        {
            Marshal.FreeHGlobal(signals);
        }
    }

    private static void Check(int error)
    {
        if (error != 0)
        {
            throw new SpawnSetupException(error);
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
}
