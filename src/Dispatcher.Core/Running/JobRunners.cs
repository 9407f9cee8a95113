namespace Dispatcher.Running;

/// <summary>Chooses the default runner: one posix_spawn per command on Linux with glibc 2.29+, CliWrap elsewhere.</summary>
internal static class JobRunners
{
    public static IJobRunner CreateDefault(IServiceProvider? services = null) =>
        PosixSpawnJobRunner.IsSupported ? new PosixSpawnJobRunner() : new CliWrapJobRunner();
}
