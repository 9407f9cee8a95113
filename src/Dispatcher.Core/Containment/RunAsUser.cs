using System.Globalization;
using System.Runtime.InteropServices;
using Dispatcher.Interop;

namespace Dispatcher.Containment;

/// <summary>
/// A user a job runs as, resolved through the C library (<c>getpwnam</c>, so NSS users count too). A command that runs as
/// another user is started through <c>setpriv</c> (util-linux), which sets the real and effective uid and gid and the user's
/// supplementary groups (<c>initgroups</c>) and then execs the command: no shell, and the arguments pass through unchanged.
/// A job of the host's own user is spawned directly.
/// </summary>
internal sealed partial class RunAsUser
{
    private static readonly object s_gate = new();
    private static readonly string? s_setpriv = new[] { "/usr/bin/setpriv", "/bin/setpriv", "/usr/local/bin/setpriv" }.FirstOrDefault(File.Exists);

    private RunAsUser(string name, uint uid, uint gid, string home)
    {
        Name = name;
        Uid = uid;
        Gid = gid;
        Home = home;
    }

    public string Name { get; }

    public uint Uid { get; }

    public uint Gid { get; }

    public string Home { get; }

    /// <summary>
    /// The user a job runs as: the job's own choice (which must be the queue's, or in <see cref="DispatcherOptions.AllowedRunAsUsers"/>),
    /// else its queue's; <see langword="null"/> for the host's own user.
    /// </summary>
    /// <exception cref="InvalidOperationException">The choice is not allowed, the user does not exist, or setpriv is missing.</exception>
    public static RunAsUser? ForJob(JobRequest request, QueueOptions? queue, DispatcherOptions options)
    {
        var name = request.RunAs ?? queue?.RunAs;
        if (name is null)
        {
            return null;
        }

        if (request.RunAs is not null && request.RunAs != queue?.RunAs && !options.AllowedRunAsUsers.Contains(request.RunAs))
        {
            throw new InvalidOperationException(
                $"Job '{request.Id}' asks to run as '{request.RunAs}', which is neither its queue's user nor listed in Dispatcher:AllowedRunAsUsers.");
        }

        var user = Resolve(name) ?? throw new InvalidOperationException($"Job '{request.Id}' is to run as '{name}', and there is no such user.");
        if (user.Uid == Libc.geteuid())
        {
            return null; // the host's own user: the fast path
        }

        if (s_setpriv is null)
        {
            throw new InvalidOperationException($"Job '{request.Id}' is to run as '{name}', which needs setpriv (util-linux); it is not installed.");
        }

        return user;
    }

    /// <summary>The program and arguments that run <paramref name="path"/> as this user.</summary>
    public (string Program, string[] Arguments) Wrap(string path, IReadOnlyList<string> arguments) =>
        (s_setpriv!, [
            "--reuid=" + Uid.ToString(CultureInfo.InvariantCulture),
            "--regid=" + Gid.ToString(CultureInfo.InvariantCulture),
            "--init-groups",
            "--",
            path,
            .. arguments]);

    /// <summary>The environment overrides of a command run as this user: HOME, USER and LOGNAME, under the job's own.</summary>
    public IReadOnlyDictionary<string, string> Environment(IReadOnlyDictionary<string, string>? job)
    {
        var merged = new Dictionary<string, string>(StringComparer.Ordinal) { ["HOME"] = Home, ["USER"] = Name, ["LOGNAME"] = Name };
        foreach (var (k, v) in job ?? new Dictionary<string, string>())
        {
            merged[k] = v;
        }

        return merged;
    }

    private static unsafe RunAsUser? Resolve(string name)
    {
        // getpwnam's result lives in static storage: read it under a lock. struct passwd (64-bit): name, passwd, uid, gid, gecos, dir, shell.
        lock (s_gate)
        {
            var entry = Libc.getpwnam(name);
            if (entry == null)
            {
                return null;
            }

            var bytes = (byte*)entry;
            var uid = *(uint*)(bytes + (2 * sizeof(nint)));
            var gid = *(uint*)(bytes + (2 * sizeof(nint)) + 4);
            var home = Marshal.PtrToStringUTF8(*(nint*)(bytes + (2 * sizeof(nint)) + 8 + sizeof(nint))) ?? "/";
            return new RunAsUser(name, uid, gid, home);
        }
    }
}
