using System.Runtime.InteropServices;

namespace Dispatcher.Interop;

/// <summary>
/// The C library calls of the Linux runner, its child event loop and containment, in one place, through <c>LibraryImport</c>
/// (source-generated marshalling, no runtime stubs; both target frameworks have it). One library name, <c>libc</c>, which the
/// runtime maps to the C library of the platform.
/// </summary>
#pragma warning disable SA1300, IDE1006 // libc names
internal static unsafe partial class Libc
{
    internal const int SigTerm = 15;
    internal const int SigKill = 9;
    internal const int OCloExec = 0x80000;
    internal const int WNoHang = 1;
    internal const int EAgain = 11;
    internal const int EIntr = 4;

    private const string Library = "libc";

    [LibraryImport(Library, SetLastError = true)]
    internal static partial int kill(int pid, int signal);

    /// <summary>CLOCK_BOOTTIME: the clock a process's start time in <c>/proc/PID/stat</c> is read from.</summary>
    internal const int ClockBootTime = 7;

    /// <summary>_SC_CLK_TCK: the clock ticks per second of <c>/proc</c>'s times.</summary>
    internal const int ScClkTck = 2;

    /// <summary><c>clock_gettime</c> into a <c>struct timespec</c> (two C longs); answered by the vDSO, no system call.</summary>
    [LibraryImport(Library)]
    [SuppressGCTransition]
    internal static partial int clock_gettime(int clock, nint* timespec);

    [LibraryImport(Library)]
    internal static partial nint sysconf(int name);

    [LibraryImport(Library, SetLastError = true)]
    internal static partial int pipe2(int* fds, int flags);

    /// <summary>Whether the C library has <paramref name="function"/> (for calls newer than the oldest supported glibc).</summary>
    internal static bool Has(string function) =>
        NativeLibrary.TryLoad(Library, typeof(Libc).Assembly, searchPath: null, out var handle) && NativeLibrary.TryGetExport(handle, function, out _);

    [LibraryImport(Library, SetLastError = true)]
    internal static partial nint read(int fd, void* buffer, nint count);

    [LibraryImport(Library, SetLastError = true)]
    internal static partial nint write(int fd, void* buffer, nint count);

    [LibraryImport(Library, SetLastError = true)]
    internal static partial int close(int fd);

    /// <summary>Flushes a file's data and only the metadata needed to read it back (not its times): the journal's flush.</summary>
    [LibraryImport(Library, SetLastError = true)]
    internal static partial int fdatasync(int fd);

    [LibraryImport(Library, SetLastError = true)]
    internal static partial int waitpid(int pid, out int status, int options);

    [LibraryImport(Library, SetLastError = true)]
    internal static partial int wait4(int pid, out int status, int options, long* rusage);

    [LibraryImport(Library, SetLastError = true)]
    internal static partial int getrusage(int who, long* rusage);

    [LibraryImport(Library, SetLastError = true)]
    internal static partial long syscall(long number, int pid, uint flags);

    [LibraryImport(Library, SetLastError = true)]
    internal static partial int epoll_create1(int flags);

    [LibraryImport(Library, SetLastError = true)]
    internal static partial int epoll_ctl(int epoll, int op, int fd, void* ev);

    [LibraryImport(Library, SetLastError = true)]
    internal static partial int epoll_wait(int epoll, void* events, int maxEvents, int timeout);

    [LibraryImport(Library, SetLastError = true)]
    internal static partial int eventfd(uint initial, int flags);

    [LibraryImport(Library, SetLastError = true)]
    internal static partial int fcntl(int fd, int command, int argument);

    [LibraryImport(Library, SetLastError = true)]
    internal static partial int sigemptyset(nint set);

    [LibraryImport(Library, SetLastError = true)]
    internal static partial int sigaddset(nint set, int signal);

    [LibraryImport(Library)]
    internal static partial int posix_spawn_file_actions_init(nint actions);

    [LibraryImport(Library)]
    internal static partial int posix_spawn_file_actions_destroy(nint actions);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int posix_spawn_file_actions_addopen(nint actions, int fd, string path, int flags, int mode);

    [LibraryImport(Library)]
    internal static partial int posix_spawn_file_actions_adddup2(nint actions, int fd, int newFd);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int posix_spawn_file_actions_addchdir_np(nint actions, string path);

    [LibraryImport(Library)]
    internal static partial int posix_spawnattr_init(nint attributes);

    [LibraryImport(Library)]
    internal static partial int posix_spawnattr_setflags(nint attributes, short flags);

    [LibraryImport(Library)]
    internal static partial int posix_spawnattr_setsigdefault(nint attributes, nint signals);

    [LibraryImport(Library)]
    internal static partial int posix_spawnattr_setsigmask(nint attributes, nint signals);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int posix_spawn(out int pid, string path, nint actions, nint attributes, nint argv, nint envp);

    [LibraryImport(Library)]
    internal static partial uint geteuid();

    /// <summary><c>open</c> without <c>O_CREAT</c> (no mode argument).</summary>
    [LibraryImport(Library, EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int open(string path, int flags);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial void* getpwnam(string name);
}
#pragma warning restore SA1300, IDE1006
