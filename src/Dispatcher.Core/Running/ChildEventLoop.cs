using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;
using Dispatcher.Interop;

namespace Dispatcher.Running;

/// <summary>
/// One background thread that copies the output of every running command and reaps each command when it ends, waiting in
/// <c>epoll_wait</c> on the read ends of the commands' output pipes (and, for a command still running when its output ends, on
/// a pidfd). No thread per command, no polling and no thread-pool hop between a command's end and what comes next.
/// </summary>
/// <remarks>
/// <para>
/// A command's <see cref="Watch.Completion"/> is completed on this thread with synchronous continuations, so the dispatcher
/// records the end of a command and starts the next one without waiting for a pool thread: that hop (and the pool's spinning
/// around it) cost more than the spawn itself on a small machine (see benchmarks/ANALYSIS.md). Everything that runs there is the
/// dispatcher's own short, non-blocking bookkeeping; output is handed to <see cref="IJobOutput"/> on this thread too.
/// </para>
/// <para>
/// The loop belongs to its runner (<see cref="PosixSpawnJobRunner"/>): its thread, epoll set and wake-up eventfd are made on the
/// first command and released when the runner is disposed.
/// </para>
/// <para>
/// A command still running when its output ends (it closed its output early, or the moment between a child closing its files and
/// becoming reapable) is waited for through a pidfd (Linux 5.3 and later); where pidfds are refused, on a thread of its own.
/// </para>
/// </remarks>
internal sealed unsafe class ChildEventLoop : IDisposable
{
    private const int PidfdOpenSyscall = 434; // the same number on every Linux architecture (unified syscall table)
    private const int EpollCloexec = 0x80000;
    private const int EfdCloexec = 0x80000;
    private const int EfdNonblock = 0x800;
    private const int EpollCtlAdd = 1;
    private const int EpollCtlDel = 2;
    private const int EpollIn = 0x001;
    private const int EAgain = Libc.EAgain;
    private const int EIntr = Libc.EIntr;
    private const int WNoHang = Libc.WNoHang;
    private const int MaxEvents = 64;
    // 16 KiB per read: each read becomes one output event of at most 16 Ki characters, which is what bounds a stalled
    // subscriber's buffer (DispatcherOptions.EventBufferCapacity). Up to 256 KiB per command per wake, then the other commands
    // get their turn (epoll reports the rest again).
    private const int ReadSize = 16 * 1024;
    private const int ReadsPerWake = 16;
    private const long KindOutput = 0;
    private const long KindExit = 1;
    private const long WakeToken = -1;
    private const int RusageLongs = 18; // sizeof(struct rusage) is 144 bytes on 64-bit Linux

    // struct epoll_event is packed on x86-64 (12 bytes) and naturally aligned elsewhere (16 bytes).
    private static readonly int s_eventSize = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;
    private static readonly int s_dataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;
    private static long s_ownPeakBytes;
    private readonly ConcurrentDictionary<long, Watch> _watches = new();
    private readonly ConcurrentQueue<Watch> _stopRequests = new();
    private readonly Lazy<(int Epoll, int Wake)> _loop;
    private long _nextId;
    private long _strayEvents;
    private volatile bool _disposed;
    private Thread? _thread;

    public ChildEventLoop() => _loop = new(Start);

    /// <summary>Gets how many events came for a file no watch has any more (each one a wasted turn of the loop).</summary>
    internal long StrayEvents => Interlocked.Read(ref _strayEvents);

    /// <summary>Gets whether the loop can run here (Linux with /proc, epoll and eventfd).</summary>
    public static bool IsSupported => ProcessTree.IsSupported;

    /// <summary>Gets whether the loop's thread is running: <see langword="null"/> before the first command or where the loop is not used here.</summary>
    public bool? IsAlive => _loop.IsValueCreated && _loop.Value.Epoll >= 0 ? _thread?.IsAlive == true : null;

    /// <summary>
    /// Starts copying a command's output and waiting for its end. Takes ownership of <paramref name="outputFd"/>, the
    /// non-blocking read end of the command's output.
    /// </summary>
    /// <param name="pid">The command's process id, not reaped yet.</param>
    /// <param name="outputFd">The read end of its output.</param>
    /// <param name="output">Where the decoded output goes (called on the loop's thread).</param>
    /// <returns>The watch; its completion is the command's exit code once its output has ended and it has been reaped.</returns>
    /// <exception cref="ObjectDisposedException">The runner was disposed.</exception>
    /// <exception cref="IOException">The loop cannot run here (no epoll or eventfd).</exception>
    public Watch Add(int pid, int outputFd, IJobOutput output)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var (epoll, _) = _loop.Value;
        if (epoll < 0)
        {
            throw new IOException("The child event loop cannot run here: epoll or eventfd is not available.");
        }

        var watch = new Watch(this, Interlocked.Increment(ref _nextId), pid, outputFd, output);
        _watches[watch.Id] = watch;
        if (EpollAdd(epoll, outputFd, Token(watch.Id, KindOutput)) != 0)
        {
            // Cannot happen for a fresh pipe short of running out of kernel memory: read nothing, still reap the command.
            watch.Error = new IOException($"Cannot watch the output of process {pid}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            RequestStop(watch);
        }

        return watch;
    }

    /// <summary>Reaps a child if it has exited; <see langword="null"/> if it is still running or was reaped by someone else.</summary>
    public static int? TryReap(int pid) =>
        Libc.waitpid(pid, out var status, WNoHang) == pid ? Decode(status) : null;

    /// <summary>Reaps a watched command if it has exited, keeping what it used.</summary>
    private static int? TryReap(Watch watch)
    {
        var usage = stackalloc long[RusageLongs];
        if (Libc.wait4(watch.Pid, out var status, WNoHang, usage) != watch.Pid)
        {
            return null;
        }

        watch.Usage = ToUsage(new ReadOnlySpan<long>(usage, RusageLongs));
        return Decode(status);
    }

    /// <summary>Waits for a watched command on the calling thread, keeping what it used.</summary>
    private static int WaitBlocking(Watch watch)
    {
        var usage = stackalloc long[RusageLongs];
        while (true)
        {
            var result = Libc.wait4(watch.Pid, out var status, 0, usage);
            if (result == watch.Pid)
            {
                watch.Usage = ToUsage(new ReadOnlySpan<long>(usage, RusageLongs));
                return Decode(status);
            }

            if (result < 0 && Marshal.GetLastPInvokeError() != EIntr)
            {
                return 128 + ProcessTree.SigKill;
            }
        }
    }

    /// <summary>
    /// struct rusage (64-bit Linux): ru_utime and ru_stime (timeval: seconds, microseconds), then ru_maxrss in KiB. Linux gives
    /// a process that execs from a vfork'd child (posix_spawn) the spawning process's peak resident set as its starting peak,
    /// so a peak not above this process's own (which only grows) may be ours, not the command's: it is reported as unknown.
    /// </summary>
    private static CommandUsage ToUsage(ReadOnlySpan<long> rusage)
    {
        var peak = rusage[4] * 1024;
        return new()
        {
            UserCpuTime = TimeSpan.FromTicks((rusage[0] * TimeSpan.TicksPerSecond) + (rusage[1] * 10)),
            SystemCpuTime = TimeSpan.FromTicks((rusage[2] * TimeSpan.TicksPerSecond) + (rusage[3] * 10)),
            PeakMemoryBytes = AboveOwnPeak(peak) ? peak : null,
        };
    }

    /// <summary>
    /// Whether <paramref name="peak"/> is above this process's peak. That peak only grows, so the last one read answers "no"
    /// without a system call; only a higher figure is checked against a fresh one (a getrusage per command before).
    /// </summary>
    private static bool AboveOwnPeak(long peak)
    {
        if (peak <= Volatile.Read(ref s_ownPeakBytes))
        {
            return false;
        }

        var own = OwnPeakBytes();
        Volatile.Write(ref s_ownPeakBytes, own);
        return peak > own;
    }

    /// <summary>This process's peak resident set (getrusage RUSAGE_SELF), in bytes.</summary>
    private static long OwnPeakBytes()
    {
        var usage = stackalloc long[RusageLongs];
        return Libc.getrusage(0, usage) == 0 ? usage[4] * 1024 : long.MaxValue;
    }

    /// <summary>Waits for a child on the calling thread.</summary>
    public static int WaitBlocking(int pid)
    {
        while (true)
        {
            var result = Libc.waitpid(pid, out var status, 0);
            if (result == pid)
            {
                return Decode(status);
            }

            if (result < 0 && Marshal.GetLastPInvokeError() != EIntr)
            {
                // Someone else reaped it (a host that reaps every child): the exit code is lost.
                return 128 + ProcessTree.SigKill;
            }
        }
    }

    /// <summary>Stops the loop's thread and releases its descriptors; commands still watched complete with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (_loop.IsValueCreated && _loop.Value.Wake >= 0)
        {
            Wake(_loop.Value.Wake);
        }
    }

    private void RequestStop(Watch watch)
    {
        _stopRequests.Enqueue(watch);
        Wake(_loop.Value.Wake);
    }

    private static void Wake(int eventFd)
    {
        long one = 1;
        _ = Libc.write(eventFd, &one, sizeof(long));
    }

    private static long Token(long id, long kind) => (id << 1) | kind;

    /// <summary>
    /// Takes a file out of the epoll set, then closes it. Closing alone removes it only once no other descriptor refers to the
    /// same open file, and a child that another thread is spawning holds a copy of every descriptor until its exec: meanwhile the
    /// closed pipe (at its end, so always readable) stayed in the set, with the token of a finished watch, and every epoll_wait
    /// returned it at once. Profiled: the loop thread spent 80 % of a core in epoll_wait (ep_send_events) during 1 000 jobs.
    /// </summary>
    private void CloseWatched(int fd)
    {
        if (_loop.IsValueCreated && _loop.Value.Epoll >= 0)
        {
            _ = Libc.epoll_ctl(_loop.Value.Epoll, EpollCtlDel, fd, null);
        }

        _ = Libc.close(fd);
    }

    private static int EpollAdd(int epoll, int fd, long token)
    {
        var ev = stackalloc byte[16];
        new Span<byte>(ev, 16).Clear();
        *(int*)ev = EpollIn;
        *(long*)(ev + s_dataOffset) = token;
        return Libc.epoll_ctl(epoll, EpollCtlAdd, fd, ev);
    }

    private static int Decode(int status)
    {
        var signal = status & 0x7f;
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal;
    }

    private (int Epoll, int Wake) Start()
    {
        if (!IsSupported)
        {
            return (-1, -1);
        }

        var epoll = Libc.epoll_create1(EpollCloexec);
        var wake = Libc.eventfd(0, EfdCloexec | EfdNonblock);
        if (epoll < 0 || wake < 0 || EpollAdd(epoll, wake, WakeToken) != 0)
        {
            _ = epoll >= 0 ? Libc.close(epoll) : 0;
            _ = wake >= 0 ? Libc.close(wake) : 0;
            return (-1, -1);
        }

        _thread = new Thread(() => Loop(epoll, wake)) { IsBackground = true, Name = "Dispatcher child I/O" };
        _thread.UnsafeStart();
        return (epoll, wake);
    }

    private void Loop(int epoll, int wake)
    {
        var events = Marshal.AllocHGlobal(MaxEvents * 16);
        var bytes = new byte[ReadSize];
        var chars = new char[Encoding.UTF8.GetMaxCharCount(ReadSize)];
        try
        {
            while (!_disposed)
            {
                RunOnce(epoll, wake, (byte*)events, bytes, chars);
            }
        }
        finally
        {
            foreach (var watch in _watches.Values)
            {
                if (_watches.TryRemove(watch.Id, out _))
                {
                    Abandon(watch, new ObjectDisposedException(nameof(ChildEventLoop), "The runner was disposed while the command ran."));
                }
            }

            _ = Libc.close(epoll);
            _ = Libc.close(wake);
            Marshal.FreeHGlobal(events);
        }
    }

    private void RunOnce(int epoll, int wake, byte* events, byte[] bytes, char[] chars)
    {
        {
            var count = Libc.epoll_wait(epoll, events, MaxEvents, -1);
            for (var i = 0; i < count; i++)
            {
                if (_disposed)
                {
                    // Disposed while this batch was handled (or before the thread woke to fetch it): the rest of the batch is
                    // left to the loop's end, which completes every watch still here with ObjectDisposedException, as documented.
                    // Handling it would complete a command that ended in the same batch with its exit code instead (seen in CI).
                    return;
                }

                var token = *(long*)(events + (i * s_eventSize) + s_dataOffset);
                try
                {
                    if (token == WakeToken)
                    {
                        long drained = 0;
                        _ = Libc.read(wake, &drained, sizeof(long));
                        while (_stopRequests.TryDequeue(out var stop))
                        {
                            EndOutput(stop, chars);
                            TryComplete(stop, epoll);
                        }
                    }
                    else if (!_watches.TryGetValue(token >> 1, out var watch))
                    {
                        Interlocked.Increment(ref _strayEvents);
                    }
                    else
                    {
                        if ((token & 1) == KindOutput)
                        {
                            if (ReadOutput(watch, bytes, chars))
                            {
                                TryComplete(watch, epoll);
                            }
                        }
                        else
                        {
                            // The pidfd is readable: the command has exited.
                            watch.ExitCode = TryReap(watch) ?? WaitBlocking(watch);
                            CloseWatched(watch.Pidfd);
                            watch.Pidfd = -1;
                            TryComplete(watch, epoll);
                        }
                    }
                }
#pragma warning disable CA1031 // the loop serves every command: one failure must not stop it
                catch (Exception ex)
#pragma warning restore CA1031
                {
                    if (_watches.TryRemove(token >> 1, out var failed))
                    {
                        Abandon(failed, ex);
                    }
                }
            }
        }
    }

    /// <summary>Gives up on a watch after an unexpected failure: its files are closed, the command is still reaped.</summary>
    private void Abandon(Watch watch, Exception exception)
    {
        if (!watch.OutputEnded)
        {
            watch.OutputEnded = true;
            CloseWatched(watch.OutputFd);
        }

        if (watch.Pidfd >= 0)
        {
            CloseWatched(watch.Pidfd);
            watch.Pidfd = -1;
        }

        watch.Error ??= exception;
        CompleteWhenReaped(watch);
    }

    /// <summary>
    /// Completes a watch that leaves the loop: now if the command is reaped (or reapable), otherwise once it exits, waited for
    /// on a thread of its own (rare: a command that outlives its output where pidfds are refused, or a failed watch).
    /// </summary>
    private void CompleteWhenReaped(Watch watch)
    {
        watch.Completing = true;
        _watches.TryRemove(watch.Id, out _);
        if ((watch.ExitCode ?? TryReap(watch)) is { } exitCode)
        {
            watch.Complete(exitCode);
            return;
        }

        _ = Task.Factory.StartNew(static state =>
        {
            var w = (Watch)state!;
            w.Complete(WaitBlocking(w));
        }, watch, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    /// <summary>Reads what the command printed; true when its output has ended.</summary>
    private bool ReadOutput(Watch watch, byte[] bytes, char[] chars)
    {
        for (var round = 0; round < ReadsPerWake; round++)
        {
            nint read;
            fixed (byte* buffer = bytes)
            {
                read = Libc.read(watch.OutputFd, buffer, ReadSize);
            }

            if (read > 0)
            {
                var count = watch.Decoder.GetChars(bytes, 0, (int)read, chars, 0, flush: false);
                Deliver(watch, chars.AsSpan(0, count));
                continue;
            }

            if (read < 0 && Marshal.GetLastPInvokeError() is EAgain or EIntr)
            {
                return false;
            }

            // End of output (or an error reading it, which ends it too).
            EndOutput(watch, chars);
            return true;
        }

        return false;
    }

    private void EndOutput(Watch watch, char[] chars)
    {
        if (watch.OutputEnded)
        {
            return;
        }

        watch.OutputEnded = true;
        CloseWatched(watch.OutputFd);
        var tail = watch.Decoder.GetChars([], 0, 0, chars, 0, flush: true);
        Deliver(watch, chars.AsSpan(0, tail));
    }

    /// <summary>Hands output to the command's sink; a sink that throws gets nothing more, and the command fails with its exception once reaped.</summary>
    private static void Deliver(Watch watch, ReadOnlySpan<char> text)
    {
        if (text.IsEmpty || watch.Error is not null)
        {
            return;
        }

        try
        {
            watch.Output.Write(text);
        }
#pragma warning disable CA1031 // reported through the command's completion
        catch (Exception ex)
#pragma warning restore CA1031
        {
            watch.Error = ex;
        }
    }

    private void TryComplete(Watch watch, int epoll)
    {
        if (!watch.OutputEnded || watch.Completing)
        {
            return;
        }

        if (watch.ExitCode is null && watch.Pidfd < 0)
        {
            watch.ExitCode = TryReap(watch);
            if (watch.ExitCode is null)
            {
                var pidfd = (int)Libc.syscall(PidfdOpenSyscall, watch.Pid, 0);
                if (pidfd >= 0 && EpollAdd(epoll, pidfd, Token(watch.Id, KindExit)) == 0)
                {
                    watch.Pidfd = pidfd;
                    return;
                }

                if (pidfd >= 0)
                {
                    _ = Libc.close(pidfd);
                }

                // No pidfds here: the command is waited for on a thread of its own.
                CompleteWhenReaped(watch);
                return;
            }
        }

        if (watch.ExitCode is not null)
        {
            CompleteWhenReaped(watch);
        }
    }

    /// <summary>One command being watched. Its state is touched only by the loop's thread.</summary>
    internal sealed class Watch
    {
        private readonly TaskCompletionSource<int> _completion = new(TaskCreationOptions.None);

        private readonly ChildEventLoop _loop;

        internal Watch(ChildEventLoop loop, long id, int pid, int outputFd, IJobOutput output)
        {
            _loop = loop;
            Id = id;
            Pid = pid;
            OutputFd = outputFd;
            Output = output;
        }

        /// <summary>Gets the exit code (128 + the signal if a signal ended it), once the output has ended and the command was reaped.</summary>
        public Task<int> Completion => _completion.Task;

        internal long Id { get; }

        internal int Pid { get; }

        internal int OutputFd { get; }

        internal IJobOutput Output { get; }

        internal Decoder Decoder { get; } = Encoding.UTF8.GetDecoder();

        internal bool OutputEnded { get; set; }

        internal bool Completing { get; set; }

        internal int? ExitCode { get; set; }

        internal int Pidfd { get; set; } = -1;

        internal Exception? Error { get; set; }

        /// <summary>Gets what the command used, once reaped.</summary>
        internal CommandUsage? Usage { get; set; }

        /// <summary>Stops reading the output (a killed command whose escaped descendants still hold it) and completes once the command is reaped.</summary>
        public void StopReading() => _loop.RequestStop(this);

        internal void Complete(int exitCode)
        {
            if (Error is { } error)
            {
                _completion.TrySetException(error);
            }
            else
            {
                _completion.TrySetResult(exitCode);
            }
        }
    }
}
