using Dispatcher.Internal;
using Dispatcher.Running;
using Microsoft.Extensions.Options;

namespace Dispatcher.Tests;

/// <summary>Builds a real dispatcher with the real CliWrap runner, and a scratch directory, for one test.</summary>
internal sealed class TestDispatcher : IAsyncDisposable
{
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    public TestDispatcher(Action<DispatcherOptions>? configure = null, string? directory = null, IJobRunner? runner = null, TimeProvider? time = null)
    {
        Directory = directory ?? System.IO.Directory.CreateTempSubdirectory("dispatcher-test-").FullName;
        var options = new DispatcherOptions { KillGracePeriod = TimeSpan.FromSeconds(2) };
        configure?.Invoke(options);
        _ownedRunner = runner is null ? JobRunners.CreateDefault() : null;
        Dispatcher = new DefaultDispatcher(Options.Create(options), runner ?? _ownedRunner!, time ?? TimeProvider.System);

        // What the hosted service does when the host starts: replay the job store.
        Dispatcher.StartAsync().WaitAsync(Patience).GetAwaiter().GetResult();
    }

    private readonly IJobRunner? _ownedRunner;

    public DefaultDispatcher Dispatcher { get; }

    public string Directory { get; }

    public string PathOf(string name) => Path.Combine(Directory, name);

    public Task<JobInfo> RunAsync(string id, params string[] commands) =>
        Dispatcher.EnqueueAsync(new JobRequest(id, commands)).AsTask();

    public Task<JobInfo> RunInAsync(string queue, string id, params string[] commands) =>
        Dispatcher.EnqueueAsync(new JobRequest(id, commands) { Queue = queue }).AsTask();

    public Task<JobResult> WaitAsync(string id) => Dispatcher.WaitForCompletionAsync(id).WaitAsync(Patience);

    public bool KeepDirectory { get; set; }

    public async ValueTask DisposeAsync()
    {
        await Dispatcher.DisposeAsync();
        (_ownedRunner as IDisposable)?.Dispose();
        if (KeepDirectory)
        {
            return;
        }

        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>Reads the process table, to prove that killed jobs leave nothing behind.</summary>
internal static class ProcessProbe
{
    /// <summary>PIDs of live (non-zombie) processes whose whole command line is <paramref name="commandLine"/>.</summary>
    public static List<int> Find(string commandLine)
    {
        var found = new List<int>();
        foreach (var dir in System.IO.Directory.EnumerateDirectories("/proc"))
        {
            var name = Path.GetFileName(dir);
            if (!int.TryParse(name, out var pid))
            {
                continue;
            }

            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ');
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var state = stat[(stat.LastIndexOf(')') + 2)..][0];
                if (state != 'Z' && cmdline.Trim() == commandLine)
                {
                    found.Add(pid);
                }
            }
            catch (IOException)
            {
            }
        }

        return found;
    }

    public static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TestDispatcher.Patience;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Timed out waiting until {what}.");
            }

            await Task.Delay(20);
        }
    }
}
