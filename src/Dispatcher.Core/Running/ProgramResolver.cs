namespace Dispatcher.Running;

/// <summary>Finds the program of a command, and words the failure when there is none.</summary>
internal static class ProgramResolver
{
    /// <summary>The exit code reported for a command whose program could not be found or started, as shells do.</summary>
    public const int NotStartedExitCode = 127;

    public static string NotFoundMessage(string program) =>
        $"dispatcher: cannot run '{program}': no such executable file{(program.Contains('/', StringComparison.Ordinal) ? string.Empty : " on PATH")}\n";

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
