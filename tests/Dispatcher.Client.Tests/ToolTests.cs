using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;

namespace Dispatcher.Client.Tests;

/// <summary>
/// Packs Dispatcher.Client and Dispatcher.Cli from their build output into a local feed and installs the tool with
/// <c>dotnet tool install --tool-path</c>, once per test run, as a user would.
/// </summary>
public sealed class InstalledTool : IAsyncLifetime
{
    private readonly string _work = Directory.CreateTempSubdirectory("dispatcher-tool-").FullName;
    private readonly string _version = $"0.0.0-e2e.{DateTime.UtcNow:yyyyMMddHHmmssfff}";

    public string Executable => Path.Combine(_work, "tools", "dispatcher");

    public async Task InitializeAsync()
    {
        // bin/<Configuration>/<tfm>/ of this test → the configuration the tool was built in.
        var configuration = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name;
        var root = Root();
        var feed = Path.Combine(_work, "feed");
        foreach (var project in new[] { "Dispatcher.Client", "Dispatcher.Cli" })
        {
            await DotnetAsync(root, "pack", Path.Combine(root, "src", project, project + ".csproj"), "-c", configuration, "--no-build", "-o", feed, $"-p:Version={_version}", "-nologo", "-v", "q");
        }

        await File.WriteAllTextAsync(Path.Combine(_work, "NuGet.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <clear />
                <add key="local" value="{feed}" />
                <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
              </packageSources>
            </configuration>
            """);
        await DotnetAsync(_work, "tool", "install", "Dispatcher.Cli", "--version", _version, "--tool-path", Path.Combine(_work, "tools"), "--configfile", Path.Combine(_work, "NuGet.config"));
    }

    public Task DisposeAsync()
    {
        Directory.Delete(_work, recursive: true);
        var packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        foreach (var id in new[] { "dispatcher.cli", "dispatcher.client" })
        {
            var dir = Path.Combine(packages, id, _version);
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }

        return Task.CompletedTask;
    }

    /// <summary>Runs the installed tool with DISPATCHER_PASSWORD set; stdout is a pipe, so output is plain or JSON.</summary>
    public async Task<(int Exit, string Out, string Err)> RunAsync(params string[] arguments)
    {
        var info = new ProcessStartInfo(Executable) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        info.Environment["DISPATCHER_PASSWORD"] = SampleHost.Password;
        info.Environment["DOTNET_ROOT"] = DotnetRoot();
        return await RunProcessAsync(info);
    }

    private static async Task DotnetAsync(string workingDirectory, params string[] arguments)
    {
        var info = new ProcessStartInfo("dotnet") { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        var (exit, output, error) = await RunProcessAsync(info, TimeSpan.FromMinutes(5));
        if (exit != 0)
        {
            throw new InvalidOperationException($"dotnet {string.Join(' ', arguments)} exited {exit}:\n{output}\n{error}");
        }
    }

    private static async Task<(int, string, string)> RunProcessAsync(ProcessStartInfo info, TimeSpan? patience = null)
    {
        using var process = Process.Start(info)!;
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(patience ?? TimeSpan.FromSeconds(90));
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{info.FileName} {string.Join(' ', info.ArgumentList)} did not exit:\n{await output}\n{await error}");
        }

        return (process.ExitCode, await output, await error);
    }

    private static string DotnetRoot() =>
        // <root>/shared/Microsoft.NETCore.App/<version>/
        Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", ".."));

    private static string Root()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Dispatcher.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new DirectoryNotFoundException("Dispatcher.sln not found above the test output.");
    }
}

public sealed class ToolTests(InstalledTool tool) : IClassFixture<InstalledTool>
{
    [Fact]
    public async Task Tool_AgainstASampleHost_AddsFollowsWaitsKillsAndLists()
    {
        await using var host = await SampleHost.StartAsync();
        string[] on = ["--url", host.Url.ToString(), "--user", SampleHost.User, "--json"];

        var add = await Json(0, ["add", .. on, "--id", "t-blocker", "--queue", "pkg_queue", "sleep 60"]);
        Assert.Equal("t-blocker", (string?)add["started"]![0]!["id"]);
        await Json(0, ["add", .. on, "--id", "t-job", "--queue", "pkg_queue", "sh -c \"echo out\"", "echo two"]);

        var status = await Json(0, ["status", .. on]);
        var jobs = status["jobs"]!.AsArray().Select(j => ((string?)j!["id"], (string?)j["state"], (string?)j["host"])).ToArray();
        Assert.Equal([("t-blocker", "running", $"127.0.0.1:{host.Port}"), ("t-job", "pending", $"127.0.0.1:{host.Port}")], jobs);

        var kill = await Json(0, ["kill", .. on, "t-blocker"]);
        Assert.Equal("t-blocker", (string?)kill["killed"]![0]!["id"]);

        var (exit, output, error) = await tool.RunAsync(["follow", .. on, "t-job"]);
        Assert.True(exit == 0, error);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!).ToArray();
        Assert.Equal("out\ntwo\n", string.Concat(lines.Where(l => (string?)l["type"] == "output").Select(l => (string?)l["text"])));
        Assert.Equal("succeeded", (string?)lines[^1]["outcome"]);

        var wait = await Json(1, ["wait", .. on, "t-job", "t-blocker"]);
        Assert.Equal(["succeeded", "killed"], wait["jobs"]!.AsArray().Select(j => (string?)j!["outcome"]));

        await Json(0, ["add", .. on, "--id", "t-fail", "sh -c \"exit 4\""]);
        var failed = await Json(1, ["wait", .. on, "t-fail"]);
        Assert.Equal(4, (int?)failed["jobs"]![0]!["results"]![0]!["exit_code"]);
        Assert.Equal(1, (await tool.RunAsync(["follow", .. on, "t-fail"])).Exit);

        var history = await Json(0, ["history", .. on]);
        Assert.Equal(["t-blocker", "t-job", "t-fail"], history["history"]!.AsArray().Select(j => (string?)j!["id"]));
        var log = await Json(0, ["log", .. on, "t-job"]);
        Assert.Equal("out\n", (string?)log["results"]![0]!["output"]);

        // Queue control: pause and resume work; a server error (an unknown queue) comes back as its 400 and message, as JSON and on stderr.
        Assert.Equal(0, (await tool.RunAsync(["pause", .. on, "pkg_queue"])).Exit);
        Assert.Equal(0, (await tool.RunAsync(["resume", .. on, "pkg_queue"])).Exit);
        var pause = await tool.RunAsync(["pause", .. on, "nowhere"]);
        Assert.Equal(2, pause.Exit);
        Assert.Equal("400", (string?)JsonNode.Parse(pause.Out)!["error"]!["code"]);
        Assert.Contains("Unknown queue 'nowhere'", pause.Err, StringComparison.Ordinal);

        // Plain output when piped: a header line, then tab-separated rows.
        var plain = await tool.RunAsync(["history", "--url", host.Url.ToString(), "--user", SampleHost.User]);
        Assert.StartsWith("job\tqueue\toutcome\t", plain.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tool_WithSeveralUrls_MergesStatusAndTakesHostJobIds()
    {
        var hosts = await Task.WhenAll(SampleHost.StartAsync(), SampleHost.StartAsync());
        await using var a = hosts[0];
        await using var b = hosts[1];
        string[] on = ["--url", a.Url.ToString(), "--url", b.Url.ToString(), "--user", SampleHost.User, "--json"];
        string la = $"127.0.0.1:{a.Port}", lb = $"127.0.0.1:{b.Port}";

        var add = await Json(0, ["add", .. on, "--id", "fleet", "sleep 60"]);
        Assert.Equal(new[] { la, lb }.Order(StringComparer.Ordinal), add["started"]!.AsArray().Select(s => (string?)s!["host"]).Order(StringComparer.Ordinal));

        var status = await Json(0, ["status", .. on]);
        Assert.Equal(new (string?, string?)[] { (la, "fleet"), (lb, "fleet") }.Order(), status["jobs"]!.AsArray().Select(j => ((string?)j!["host"], (string?)j["id"])).Order());

        var kill = await Json(0, ["kill", .. on, $"{la}:fleet"]);
        Assert.Equal(la, (string?)kill["killed"]![0]!["host"]);
        status = await Json(0, ["status", .. on]);
        Assert.Equal([lb], status["jobs"]!.AsArray().Select(j => (string?)j!["host"]));

        var bare = await tool.RunAsync(["kill", .. on, "fleet"]);
        Assert.Equal(2, bare.Exit);
        Assert.Contains("HOST:JOB", bare.Err, StringComparison.Ordinal);

        await Json(0, ["kill", .. on, $"{lb}:fleet"]);
        var wait = await Json(1, ["wait", .. on, $"{la}:fleet", $"{lb}:fleet"]);
        Assert.Equal(["killed", "killed"], wait["jobs"]!.AsArray().Select(j => (string?)j!["outcome"]));

        // A host that does not answer is reported beside the others' jobs.
        var down = await tool.RunAsync(["status", .. on, "--url", $"http://127.0.0.1:{Samples.Tests.SampleProcess.FreePort()}"]);
        Assert.Equal(2, down.Exit);
        Assert.Single(JsonNode.Parse(down.Out)!["errors"]!.AsArray());
    }

    [Fact]
    public async Task Tool_Add_TakesSchedulingInputAndLimitOptions()
    {
        await using var host = await SampleHost.StartAsync();
        string[] on = ["--url", host.Url.ToString(), "--user", SampleHost.User, "--json"];

        await Json(0, ["add", .. on, "--id", "o-later", "--delay", "3600", "--label", "team=ops", "--key", "once", "true"]);
        var again = await Json(0, ["add", .. on, "--id", "o-again", "--key", "once", "true"]);
        Assert.Equal("o-later", (string?)again["started"]![0]!["id"]);
        var status = await Json(0, ["status", .. on]);
        Assert.Equal(("o-later", "pending"), status["jobs"]!.AsArray().Select(j => ((string?)j!["id"], (string?)j["state"])).Single());

        await Json(0, ["add", .. on, "--id", "o-first", "--retry", "1", "--retry-delay", "0.1", "sh -c \"exit 1\""]);
        await Json(0, ["add", .. on, "--id", "o-then", "--after", "o-first", "true"]);
        await Json(0, ["add", .. on, "--id", "o-cat", "--priority", "3", "--stdin", "typed in\n", "--max-processes", "50", "--memory", "256M", "cat"]);
        var wait = await Json(1, ["wait", .. on, "o-first", "o-then", "o-cat"]);
        Assert.Equal(["failed", "skipped", "succeeded"], wait["jobs"]!.AsArray().Select(j => (string?)j!["outcome"]));
        Assert.Equal(2, (int?)wait["jobs"]![0]!["attempt"]);
        Assert.Equal("typed in\n", (string?)wait["jobs"]![2]!["results"]![0]!["output"]);

        var bad = await tool.RunAsync(["add", .. on, "--memory", "lots", "true"]);
        Assert.Equal(2, bad.Exit);
        Assert.Contains("--memory 'lots'", bad.Err, StringComparison.Ordinal);
        await Json(0, ["kill", .. on, "o-later"]);
    }

    private async Task<JsonNode> Json(int expectedExit, string[] arguments)
    {
        var (exit, output, error) = await tool.RunAsync(arguments);
        Assert.True(exit == expectedExit, $"dispatcher {string.Join(' ', arguments)} exited {exit}, expected {expectedExit}:\n{output}\n{error}");
        return JsonNode.Parse(output) ?? throw new InvalidOperationException("no JSON");
    }
}
