using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

namespace Dispatcher.Samples.Tests.FaultInjection;

/// <summary>The sample host as its own process on a data directory, with a REST client: what the fault-injection suite breaks.</summary>
internal sealed class FaultHost : IAsyncDisposable
{
    private readonly HttpClient _http;

    private FaultHost(SampleProcess process, int port)
    {
        Process = process;
        _http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = SampleProcess.Patience };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes("fault:fault-pass")));
    }

    public SampleProcess Process { get; }

    public static async Task<FaultHost> StartAsync(string dataDirectory, params string[] extra)
    {
        var port = SampleProcess.FreePort();
        var process = SampleProcess.Start("Dispatcher.SampleHost",
            ["--Dispatcher:DataDirectory=" + dataDirectory, "--Dispatcher:KillGracePeriod=00:00:02", .. extra, "--urls", $"http://127.0.0.1:{port}"],
            new Dictionary<string, string>
            {
                ["Users__0__Name"] = "fault",
                ["Users__0__Password"] = "fault-pass",
                ["Users__0__FullAccess"] = "true",
            });
        try
        {
            await process.WaitForOutputAsync("Press Ctrl+C to stop.");
        }
        catch
        {
            await process.DisposeAsync();
            throw;
        }

        return new FaultHost(process, port);
    }

    /// <summary>A <c>run</c> of one or more jobs: id → (commands, queue, options).</summary>
    public async Task<(List<string> Started, Dictionary<string, string> Rejected)> RunAsync(JsonObject jobs)
    {
        jobs["action"] = "run";
        var args = await RpcAsync(jobs.ToJsonString());
        var started = args["started"]!.AsArray().Select(s => (string)s!).ToList();
        var rejected = args["rejected"]?.AsObject().ToDictionary(kv => kv.Key, kv => (string)kv.Value!) ?? [];
        return (started, rejected);
    }

    public async Task<Dictionary<string, string>> HistoryAsync()
    {
        var history = (await RpcAsync("""{"action":"history"}"""))["history"]!.AsArray();
        return history.ToDictionary(h => (string)h!["process_id"]!, h => (string)h!["outcome"]!);
    }

    public async Task<List<string>> ActiveAsync() =>
        [.. (await RpcAsync("""{"action":"list"}"""))["jobs"]!.AsObject().SelectMany(q => q.Value is JsonObject o ? o.Select(j => j.Key) : [q.Key])];

    public async Task WaitUntilIdleAsync()
    {
        var deadline = DateTime.UtcNow + SampleProcess.Patience;
        while ((await ActiveAsync()).Count > 0)
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("Jobs still active:\n" + Process.Output);
            }

            await Task.Delay(100);
        }
    }

    public async Task<JsonNode> RpcAsync(string body)
    {
        using var response = await _http.PutAsync("/rpc/dispatcher", new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {text}");
        return JsonNode.Parse(text)!["args"]!;
    }

    /// <summary>GET /healthz (no credentials): the status code and the JSON report.</summary>
    public async Task<(HttpStatusCode Status, JsonNode Report)> HealthAsync()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/healthz");
        request.Headers.Authorization = null;
        using var response = await _http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonNode.Parse(text)!);
    }

    /// <summary>The host's peak resident memory (VmHWM), in bytes.</summary>
    public long PeakResidentBytes()
    {
        foreach (var line in File.ReadLines($"/proc/{Process.Id}/status"))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
            }
        }

        return -1;
    }

    public async Task CrashAsync()
    {
        Process.KillNow();
        await Process.WaitForExitAsync();
    }

    public async Task StopAsync()
    {
        Process.Terminate();
        Assert.Equal(0, await Process.WaitForExitAsync());
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        await Process.DisposeAsync();
    }
}

/// <summary>Scratch storage for one test: a small tmpfs when the machine lets us mount one, and cleanup of leftover processes.</summary>
internal static class FaultEnvironment
{
    /// <summary>Mounts a tmpfs of <paramref name="size"/> at a new directory; null (and why) when mounting is not permitted.</summary>
    public static (string? Path, string Why) TryMountTmpfs(string size)
    {
        var path = Directory.CreateTempSubdirectory("fault-tmpfs-").FullName;
        var (code, output) = Exec("mount", "-t", "tmpfs", "-o", $"size={size},mode=0755", "tmpfs", path);
        if (code == 0)
        {
            return (path, string.Empty);
        }

        Directory.Delete(path);
        return (null, $"mount -t tmpfs failed ({code}): {output.Trim()}");
    }

    public static bool Remount(string path, string options) => Exec("mount", "-o", $"remount,{options}", path).Code == 0;

    public static void Unmount(string path)
    {
        Exec("umount", "-l", path);
        try
        {
            Directory.Delete(path, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Fills the file system that holds <paramref name="directory"/> until a write fails with "no space".</summary>
    public static string Fill(string directory)
    {
        var filler = Path.Combine(directory, "filler");
        using var file = new FileStream(filler, FileMode.Create, FileAccess.Write, FileShare.None, 1);
        var block = new byte[4096];
        Array.Fill(block, (byte)'x');
        try
        {
            while (true)
            {
                file.Write(block);
            }
        }
        catch (IOException)
        {
            // Full. Single bytes fill the last partial page.
            try
            {
                while (true)
                {
                    file.Write(block, 0, 1);
                }
            }
            catch (IOException)
            {
            }
        }

        return filler;
    }

    /// <summary>PIDs of live processes whose command line is exactly <paramref name="commandLine"/>.</summary>
    public static List<int> Find(string commandLine)
    {
        var found = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(System.IO.Path.GetFileName(dir), out var pid))
            {
                continue;
            }

            try
            {
                var stat = File.ReadAllText(System.IO.Path.Combine(dir, "stat"));
                if (stat[(stat.LastIndexOf(')') + 2)..][0] != 'Z'
                    && File.ReadAllText(System.IO.Path.Combine(dir, "cmdline")).Replace('\0', ' ').Trim() == commandLine)
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

    public static void KillAll(string commandLine)
    {
        foreach (var pid in Find(commandLine))
        {
            try
            {
                System.Diagnostics.Process.GetProcessById(pid).Kill();
            }
            catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
            {
            }
        }
    }

    /// <summary>Polls <paramref name="condition"/>; on a timeout the message carries <paramref name="host"/>'s output, if given.</summary>
    public static async Task WaitUntilAsync(Func<bool> condition, string what, SampleProcess? host = null)
    {
        var deadline = DateTime.UtcNow + SampleProcess.Patience;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Timed out waiting until {what}." + (host is null ? "" : $" The host's output:\n{host.Output}"));
            }

            await Task.Delay(50);
        }
    }

    private static (int Code, string Output) Exec(string program, params string[] args)
    {
        try
        {
            var info = new ProcessStartInfo(program) { RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (var a in args)
            {
                info.ArgumentList.Add(a);
            }

            using var p = System.Diagnostics.Process.Start(info)!;
            var output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode, output);
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            return (-1, ex.Message);
        }
    }
}
