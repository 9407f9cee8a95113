using System.Collections.Concurrent;

namespace Dispatcher.Running;

/// <summary>Finds the program of a command, and words the failure when there is none.</summary>
/// <remarks>
/// <see cref="ResolveRemembered"/> remembers a name found on PATH for one second (per name and PATH), so a queue of thousands of
/// commands does not search PATH for each: a program installed earlier on PATH is seen within a second.
/// </remarks>
internal static class ProgramResolver
{
    private const int CacheMilliseconds = 1000;
    private const int CacheCapacity = 256;
    private static readonly ConcurrentDictionary<(string Program, string? Path), (string Found, long Until)> s_found = new();

    /// <summary>The exit code reported for a command whose program could not be found or started, as shells do.</summary>
    public const int NotStartedExitCode = 127;

    /// <summary>The line a command's output gets when it could not be started.</summary>
    public static string CannotRun(string program, string reason) => $"dispatcher: cannot run '{program}': {reason}\n";

    /// <summary>
    /// Finds the command's program and checks its working directory, the checks both runners make before starting anything.
    /// When one fails, the reason goes to the command's output and the result is null (the command then ends with
    /// <see cref="NotStartedExitCode"/>).
    /// </summary>
    public static string? Resolve(JobCommand command, string? path, IJobOutput output) =>
        Check(command, Find(command.Program, path, command.WorkingDirectory), output);

    /// <summary>
    /// Like <see cref="Resolve(JobCommand, string?, IJobOutput)"/>, but a name found on PATH is remembered for a second. For a
    /// runner that can tell when a program it was given cannot be started: it calls <see cref="Forget"/> and resolves again.
    /// </summary>
    /// <param name="command">The command.</param>
    /// <param name="path">The PATH it runs with.</param>
    /// <param name="output">Where a failure is explained.</param>
    /// <param name="remembered">Whether the program came from a remembered look-up.</param>
    public static string? ResolveRemembered(JobCommand command, string? path, IJobOutput output, out bool remembered)
    {
        remembered = false;
        string? program;
        var key = (command.Program, path);
        var now = Environment.TickCount64;
        if (command.Program.Contains('/', StringComparison.Ordinal))
        {
            program = Find(command.Program, path, command.WorkingDirectory);
        }
        else if (s_found.TryGetValue(key, out var found) && found.Until > now)
        {
            program = found.Found;
            remembered = true;
        }
        else
        {
            program = Find(command.Program, path, command.WorkingDirectory);
            if (program is not null)
            {
                if (s_found.Count >= CacheCapacity)
                {
                    s_found.Clear();
                }

                s_found[key] = (program, now + CacheMilliseconds);
            }
        }

        return Check(command, program, output);
    }

    private static string? Check(JobCommand command, string? program, IJobOutput output)
    {
        if (program is null)
        {
            output.Write(CannotRun(command.Program, $"no such executable file{(command.Program.Contains('/', StringComparison.Ordinal) ? string.Empty : " on PATH")}"));
            return null;
        }

        if (command.WorkingDirectory is { } dir && !Directory.Exists(dir))
        {
            output.Write(CannotRun(command.Program, $"working directory '{dir}' does not exist"));
            return null;
        }

        return program;
    }

    /// <summary>Drops a remembered look-up (its program could not be started).</summary>
    public static void Forget(JobCommand command, string? path) => s_found.TryRemove((command.Program, path), out _);

    /// <summary>Resolves a program the way execvp does: a name with a slash is a path, otherwise each PATH entry is tried.</summary>
    public static string? Find(string program, string? path, string? workingDirectory)
    {
        if (program.Contains('/', StringComparison.Ordinal))
        {
            var full = Path.IsPathRooted(program) ? program : Path.GetFullPath(program, workingDirectory ?? Environment.CurrentDirectory);
            return IsExecutable(full) ? full : null;
        }

        foreach (var dir in (path ?? "/usr/local/bin:/usr/bin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, program);
            if (IsExecutable(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    private static bool IsExecutable(string file)
    {
        if (!File.Exists(file))
        {
            return false;
        }

        if (OperatingSystem.IsWindows())
        {
            return true;
        }

        const UnixFileMode anyExecute = UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;
        return (File.GetUnixFileMode(file) & anyExecute) != 0;
    }
}
