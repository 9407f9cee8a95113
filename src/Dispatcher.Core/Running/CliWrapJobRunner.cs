using CliWrap;

namespace Dispatcher.Running;

/// <summary>
/// The portable <see cref="IJobRunner"/> (the default where <see cref="PosixSpawnJobRunner"/> is not supported): runs the program through CliWrap with an argument list (never a shell). On Linux each
/// command runs through <c>setsid</c> so it leads a session and process group of its own, which lets a kill reach its whole tree.
/// </summary>
internal sealed class CliWrapJobRunner : IJobRunner
{
    private readonly string? _setsid;
    private readonly string? _env;
    private readonly EnvironmentFilter _environmentFilter;

    public CliWrapJobRunner(EnvironmentFilter? environmentFilter = null)
    {
        _environmentFilter = environmentFilter ?? EnvironmentFilter.Default;
        var path = Environment.GetEnvironmentVariable("PATH");
        _setsid = ProcessTree.IsSupported ? ProgramResolver.Find("setsid", path, null) : null;
        _env = _setsid is null ? null : ProgramResolver.Find("env", path, null);
        if (_env is not null && !SupportsDefaultSignal(_env))
        {
            _env = null;
        }
    }

    /// <summary>
    /// The .NET runtime ignores SIGPIPE, and children inherit ignored signals: a pipeline such as <c>yes | head</c> inside a job
    /// would then never end by SIGPIPE. GNU env (coreutils 8.31 and later) puts every signal back to its default before the exec.
    /// </summary>
    private static bool SupportsDefaultSignal(string env)
    {
        try
        {
            using var probe = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(env, ["--default-signal", "true"])
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            });
            if (probe is null || !probe.WaitForExit(10_000))
            {
                return false;
            }

            return probe.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }

    public async Task<int> RunAsync(JobCommand command, IJobOutput output, CancellationToken forcefulCancellationToken,
        CancellationToken gracefulCancellationToken)
    {
        var path = command.Environment is { } env && env.TryGetValue("PATH", out var p) ? p : Environment.GetEnvironmentVariable("PATH");
        if (ProgramResolver.Resolve(command, path, output) is not { } program)
        {
            return ProgramResolver.NotStartedExitCode;
        }

        var target = PipeTarget.Create((stream, ct) => OutputCopier.CopyAsync(stream, output, ct));
        var cli = (_setsid is null
                ? Cli.Wrap(program).WithArguments(command.Arguments)
                : Cli.Wrap(_setsid).WithArguments(_env is null
                    ? [program, .. command.Arguments]
                    : [_env, "--default-signal", program, .. command.Arguments]))
            .WithValidation(CommandResultValidation.None)
            .WithStandardOutputPipe(target)
            .WithStandardErrorPipe(target);
        if (command.StandardInputFile is { } stdin)
        {
            cli = cli.WithStandardInputPipe(PipeSource.FromFile(stdin));
        }

        if (command.WorkingDirectory is not null)
        {
            cli = cli.WithWorkingDirectory(command.WorkingDirectory);
        }

        // The host's variables that look like secrets are unset (null), then the job's own are set.
        var environment = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (System.Collections.DictionaryEntry e in Environment.GetEnvironmentVariables())
        {
            if (_environmentFilter.Excludes((string)e.Key))
            {
                environment[(string)e.Key] = null;
            }
        }

        foreach (var (key, value) in command.Environment ?? new Dictionary<string, string>())
        {
            environment[key] = value;
        }

        if (environment.Count > 0)
        {
            cli = cli.WithEnvironmentVariables(environment);
        }

        CommandTask<CliWrap.CommandResult> task;
        try
        {
            // With process-group support the graceful stop is ours (SIGTERM to the tree), not CliWrap's (SIGINT to the child).
            task = _setsid is null
                ? cli.ExecuteAsync(forcefulCancellationToken, gracefulCancellationToken)
                : cli.ExecuteAsync(forcefulCancellationToken);
        }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            output.Write(ProgramResolver.CannotRun(command.Program, ex.Message));
            return ProgramResolver.NotStartedExitCode;
        }

        var pid = task.ProcessId;
        if (_setsid is not null)
        {
            (output as IJobProcessListener)?.ProcessStarted(pid, startTime: null);
        }

        using var onGraceful = _setsid is null ? default : gracefulCancellationToken.Register(() => ProcessTree.Terminate(pid));
        using var onForceful = _setsid is null ? default : forcefulCancellationToken.Register(() => ProcessTree.Kill(pid));
        try
        {
            var result = await task.ConfigureAwait(false);
            return result.ExitCode;
        }
        catch (OperationCanceledException) when (forcefulCancellationToken.IsCancellationRequested)
        {
            return 128 + ProcessTree.SigKill;
        }
        catch (OperationCanceledException) when (gracefulCancellationToken.IsCancellationRequested)
        {
            return 128 + ProcessTree.SigTerm;
        }
    }
}
