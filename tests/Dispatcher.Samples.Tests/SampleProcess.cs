using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace Dispatcher.Samples.Tests;

/// <summary>A sample app started as its own process with `dotnet app.dll`, its output collected line by line.</summary>
internal sealed class SampleProcess : IAsyncDisposable
{
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly object _gate = new();

    private SampleProcess(Process process) => _process = process;

    public int Id => _process.Id;

    public string Output
    {
        get
        {
            lock (_gate)
            {
                return _output.ToString();
            }
        }
    }

    public static SampleProcess Start(string sample, IEnumerable<string> arguments, IDictionary<string, string>? environment = null)
    {
        var dll = SampleDll(sample);
        var info = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = Path.GetDirectoryName(dll)!,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(dll);
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        info.Environment.Remove("ASPNETCORE_URLS");
        foreach (var (k, v) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[k] = v;
        }

        var process = new Process { StartInfo = info };
        var sample_ = new SampleProcess(process);
        process.OutputDataReceived += (_, e) => sample_.Append(e.Data);
        process.ErrorDataReceived += (_, e) => sample_.Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return sample_;
    }

    public async Task WaitForOutputAsync(string text)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!Output.Contains(text, StringComparison.Ordinal))
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"The sample exited ({_process.ExitCode}) before printing '{text}':\n{Output}");
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"The sample did not print '{text}':\n{Output}");
            }

            await Task.Delay(50);
        }
    }

    public async Task<int> WaitForExitAsync()
    {
        using var cts = new CancellationTokenSource(Patience);
        await _process.WaitForExitAsync(cts.Token);
        _process.WaitForExit(); // flushes the redirected output
        return _process.ExitCode;
    }

    /// <summary>Kills the process at once, as a crash would: SIGKILL, no chance to clean up.</summary>
    public void KillNow() => _ = kill(_process.Id, 9);

    /// <summary>Asks the process to stop the way a service manager does: SIGTERM.</summary>
    public void Terminate() => _ = kill(_process.Id, 15);

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_gate)
        {
            _output.AppendLine(line);
        }
    }

    private static string SampleDll(string sample)
    {
        // tests/Dispatcher.Samples.Tests/bin/<Configuration>/<tfm>/ → samples/<sample>/bin/<Configuration>/<tfm>/<sample>.dll
        var here = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var tfm = here.Name;
        var configuration = here.Parent!.Name;
        var root = here;
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Dispatcher.sln")))
        {
            root = root.Parent;
        }

        var dll = Path.Combine(root!.FullName, "samples", sample, "bin", configuration, tfm, sample + ".dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException($"Build {sample} first.", dll);
    }

    [DllImport("libc", SetLastError = true)]
#pragma warning disable SA1300, IDE1006
    private static extern int kill(int pid, int sig);
#pragma warning restore SA1300, IDE1006
}
