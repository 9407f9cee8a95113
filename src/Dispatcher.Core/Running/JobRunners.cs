namespace Dispatcher.Running;

/// <summary>Chooses the default runner: one posix_spawn per command on Linux with glibc 2.29+, CliWrap elsewhere.</summary>
internal static class JobRunners
{
    public static IJobRunner CreateDefault(IServiceProvider? services = null)
    {
        var patterns = (services?.GetService(typeof(Microsoft.Extensions.Options.IOptions<DispatcherOptions>)) as Microsoft.Extensions.Options.IOptions<DispatcherOptions>)
            ?.Value.ExcludedEnvironmentVariables;
        var filter = patterns is null ? EnvironmentFilter.Default : new EnvironmentFilter(patterns);
        return PosixSpawnJobRunner.IsSupported ? new PosixSpawnJobRunner(filter) : new CliWrapJobRunner(filter);
    }
}
