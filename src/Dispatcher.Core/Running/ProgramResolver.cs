namespace Dispatcher.Running;

/// <summary>Finds the program of a command, and words the failure when there is none.</summary>
internal static class ProgramResolver
{
    /// <summary>The exit code reported for a command whose program could not be found or started, as shells do.</summary>
    public const int NotStartedExitCode = 127;

    /// <summary>The line a command's output gets when it could not be started.</summary>
    public static string CannotRun(string program, string reason) => $"dispatcher: cannot run '{program}': {reason}\n";

    /// <summary>
    /// Finds the command's program and checks its working directory, the checks both runners make before starting anything.
    /// When one fails, the reason goes to the command's output and the result is null (the command then ends with
    /// <see cref="NotStartedExitCode"/>).
    /// </summary>
    public static string? Resolve(JobCommand command, string? path, IJobOutput output)
    {
        var program = Find(command.Program, path, command.WorkingDirectory);
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
