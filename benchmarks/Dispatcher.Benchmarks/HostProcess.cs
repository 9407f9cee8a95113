using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;

namespace Dispatcher.Benchmarks;

/// <summary>
/// The sample host as users run it: its own process (<c>dotnet Dispatcher.SampleHost.dll</c>, built with this project), its
/// default configuration and console logging, plus a data directory (journal on, fsync) and one full-access user. The
/// benchmark's clients talk to it over 127.0.0.1; its CPU time and RSS are read from /proc.
/// </summary>
internal sealed class HostProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string? _dataDirectory;
    private readonly TaskCompletionSource _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _outputLines;

    private HostProcess(Process process, int port, string? dataDirectory)
    {
        _process = process;
        _dataDirectory = dataDirectory;
        Port = port;
        Http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes("bench:bench")));
    }

    public int Port { get; }

    public HttpClient Http { get; }

    public Uri WebSocketUri => new($"ws://127.0.0.1:{Port}/");

    public int Pid => _process.Id;

    /// <summary>Lines the host printed (its console log: at the default level one per job, `JobFinished`, and one `AuditRun` per job of a `run`).</summary>
    public long OutputLines => Interlocked.Read(ref _outputLines);

    public static Task<HostProcess> StartAsync(bool durable = true, params string[] settings) =>
        StartAsync(Path.Combine(Repo.Root, "samples", "Dispatcher.SampleHost", "bin", "Release", "net10.0", "Dispatcher.SampleHost.dll"), durable, settings);

    /// <summary>Starts the sample host built at <paramref name="dll"/> (another build of it: a before/after comparison in one run).</summary>
    public static async Task<HostProcess> StartAsync(string dll, bool durable, params string[] settings)
    {
        if (!File.Exists(dll))
        {
            throw new FileNotFoundException($"Build the sample host first (dotnet build -c Release samples/Dispatcher.SampleHost): {dll} is missing");
        }

        var port = FreePort();
        var data = durable ? Directory.CreateTempSubdirectory("bench-host-").FullName : null;
        var info = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Path.GetDirectoryName(dll)! };
        info.ArgumentList.Add(dll);
        info.Environment.Remove("ASPNETCORE_URLS");
        foreach (var arg in new[]
                 {
                     $"--urls=http://127.0.0.1:{port}", "--Users:0:Name=bench", "--Users:0:Password=bench", "--Users:0:FullAccess=true",
                 }.Concat(data is null ? [] : [$"--Dispatcher:DataDirectory={data}", "--Dispatcher:FlushToDisk=true"]).Concat(settings))
        {
            info.ArgumentList.Add(arg);
        }

        var process = new Process { StartInfo = info };
        var host = new HostProcess(process, port, data);
        process.OutputDataReceived += (_, e) => host.Line(e.Data);
        process.ErrorDataReceived += (_, e) => host.Line(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        await host._listening.Task.WaitAsync(TimeSpan.FromSeconds(60));
        return host;
    }

    private void Line(string? line)
    {
        if (line is null)
        {
            _listening.TrySetException(new InvalidOperationException("the sample host exited before it listened"));
            return;
        }

        Interlocked.Increment(ref _outputLines);
        if (line.Contains("listening on", StringComparison.Ordinal))
        {
            _listening.TrySetResult();
        }
        else if (line.Contains("fail:", StringComparison.Ordinal) || line.Contains("crit:", StringComparison.Ordinal))
        {
            Console.Error.WriteLine($"host: {line}");
        }
    }

    /// <summary>The host process's own CPU time (user + system), children excluded.</summary>
    public TimeSpan Cpu()
    {
        var stat = File.ReadAllText($"/proc/{Pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        return TimeSpan.FromSeconds(ticks / 100.0); // USER_HZ is 100 on Linux
    }

    /// <summary>
    /// The context switches of the host's live threads (voluntary: a thread waited, for a futex, I/O or a timer; involuntary: it
    /// was preempted), from /proc/PID/task/*/status; a thread that exited during a round takes its count with it.
    /// </summary>
    public long ContextSwitches() => ContextSwitchesByThread().Values.Sum(v => v.Switches);

    /// <summary>Each live thread's name and context switches, by thread id.</summary>
    public Dictionary<string, (string Name, long Switches)> ContextSwitchesByThread()
    {
        var threads = new Dictionary<string, (string Name, long Switches)>();
        foreach (var task in Directory.EnumerateDirectories($"/proc/{Pid}/task"))
        {
            try
            {
                long switches = 0;
                string name = string.Empty;
                foreach (var line in File.ReadLines(Path.Combine(task, "status")))
                {
                    if (line.StartsWith("Name:", StringComparison.Ordinal))
                    {
                        name = line[5..].Trim();
                    }
                    else if (line.StartsWith("voluntary_ctxt_switches:", StringComparison.Ordinal) || line.StartsWith("nonvoluntary_ctxt_switches:", StringComparison.Ordinal))
                    {
                        switches += long.Parse(line.Split(':')[1].Trim(), CultureInfo.InvariantCulture);
                    }
                }

                threads[Path.GetFileName(task)] = (name, switches);
            }
            catch (IOException)
            {
                // The thread exited.
            }
        }

        return threads;
    }

    public long RssBytes()
    {
        foreach (var line in File.ReadLines($"/proc/{Pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(':')[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
            }
        }

        return 0;
    }

    public async Task<WireClient> ConnectAsync() => await WireClient.ConnectAsync(WebSocketUri);

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        if (!_process.HasExited)
        {
            _ = kill(_process.Id, 15);
            if (!_process.WaitForExit(TimeSpan.FromSeconds(20)))
            {
                _process.Kill(entireProcessTree: true);
            }

            await _process.WaitForExitAsync();
        }

        _process.Dispose();
        if (_dataDirectory is not null)
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>One logged-in WebSocket connection that reads frames as plain text (no JSON tree: a light client).</summary>
internal sealed class WireClient : IDisposable
{
    private readonly ClientWebSocket _ws;
    private byte[] _buffer = new byte[64 * 1024];

    private WireClient(ClientWebSocket ws) => _ws = ws;

    public static async Task<WireClient> ConnectAsync(Uri uri)
    {
        var ws = new ClientWebSocket();
        await ws.ConnectAsync(uri, CancellationToken.None);
        var client = new WireClient(ws);
        await client.SendAsync("""{"namespace":"rpc","name":"auth","id":"a","args":{"username":"bench","password":"bench"}}""");
        var reply = await client.ReceiveAsync();
        if (!reply.Contains("\"response\"", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"login failed: {reply}");
        }

        return client;
    }

    public async Task SubscribeAsync()
    {
        await SendAsync("""{"namespace":"events","name":"subscribe","id":"s","args":{"channels":["dispatcher"],"shape":"nested"}}""");
        while (!(await ReceiveAsync()).Contains("\"subscribe\"", StringComparison.Ordinal))
        {
        }
    }

    public Task SendAsync(string text) => _ws.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, CancellationToken.None);

    /// <summary>The next whole message as text.</summary>
    public async Task<string> ReceiveAsync() => Encoding.UTF8.GetString((await ReceiveBytesAsync()).Span);

    /// <summary>
    /// The next whole message as UTF-8 bytes, valid until the next receive: the subscribers of a fan-out round read hundreds of
    /// thousands of frames, and a string per frame made the benchmark's own GC pause its clients for 11–56 ms per
    /// 100-subscriber round (and 4.4 s at 1 000), which went into the measured delivery latency.
    /// </summary>
    public async ValueTask<ReadOnlyMemory<byte>> ReceiveBytesAsync()
    {
        var count = 0;
        while (true)
        {
            if (count == _buffer.Length)
            {
                Array.Resize(ref _buffer, _buffer.Length * 2);
            }

            var r = await _ws.ReceiveAsync(_buffer.AsMemory(count), CancellationToken.None);
            if (r.MessageType == WebSocketMessageType.Close)
            {
                throw new WebSocketException($"the server closed the connection: {_ws.CloseStatus} {_ws.CloseStatusDescription}");
            }

            count += r.Count;
            if (r.EndOfMessage)
            {
                return _buffer.AsMemory(0, count);
            }
        }
    }

    public void Dispose()
    {
        _ws.Abort();
        _ws.Dispose();
    }
}

internal static class Repo
{
    public static string Root { get; } = Find();

    private static string Find()
    {
        var dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "Dispatcher.sln")))
        {
            dir = Path.GetDirectoryName(dir);
        }

        return dir ?? throw new InvalidOperationException("Dispatcher.sln not found above " + AppContext.BaseDirectory);
    }
}
