using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Dispatcher.ReadmeTesting;

namespace Dispatcher.Samples.Tests;

/// <summary>
/// The README's "Talking to it" examples, read from README.md at test time and run as shown against the real sample host,
/// started with the users the README configures: the curl commands give the output printed under them, and the WebSocket
/// program's output matches the transcript (tokens, host name and times aside).
/// </summary>
public sealed partial class ReadmeCommandTests
{
    private const string ReadmeAddress = "127.0.0.1:12150";

    [Fact]
    public async Task CurlExamples_GiveTheOutputShown()
    {
        var commands = ParseSession(Readme.Block("curl").Text);
        Assert.True(commands.Count >= 4, "the curl block has fewer commands than expected");
        await using var host = await StartWithReadmeUsersAsync();

        foreach (var (command, expected) in commands)
        {
            var (exit, output) = await ShellAsync(command.Replace(ReadmeAddress, host.Address, StringComparison.Ordinal));

            Assert.True(exit == 0, $"`{command}` exited {exit}: {output}");
            Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected), JsonNode.Parse(output)),
                $"`{command}`\n README shows: {expected}\n   real output: {output}");
        }
    }

    [Fact]
    public async Task WebSocketExample_RunsAgainstTheSampleHost_AsTheTranscriptShows()
    {
        var shown = Readme.Block("ws-transcript").Text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        await using var host = await StartWithReadmeUsersAsync();

        // The program as its own process (`dotnet run ws-demo.cs` builds the same program), given the host's address.
        var dir = Directory.CreateTempSubdirectory("readme-ws-").FullName;
        string[] real;
        try
        {
            real = await RunProgramAsync(Readme.Block("ws-client"), dir, $"ws://{host.Address}/");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }

        Assert.Equal(Requests(shown), Requests(real));
        Assert.Equal(Replies(shown), Replies(real));
        Assert.Equal(EventStates(shown), EventStates(real));
    }

    private static async Task<SampleHostAtAddress> StartWithReadmeUsersAsync()
    {
        // "Users__0__Name=admin Users__0__Password=s3cret … dotnet run --project samples/Dispatcher.SampleHost"
        var environment = EnvironmentAssignment().Matches(Readme.Block("users").Text).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
        Assert.Contains("Users__0__Password", environment.Keys);
        var port = SampleProcess.FreePort();
        var process = SampleProcess.Start("Dispatcher.SampleHost", ["--urls", $"http://127.0.0.1:{port}"], environment);
        await process.WaitForOutputAsync("Press Ctrl+C to stop.");
        return new SampleHostAtAddress(process, $"127.0.0.1:{port}");
    }

    /// <summary>"$ command" lines (with "\" continuations), each followed by the output it prints.</summary>
    private static List<(string Command, string Output)> ParseSession(string block)
    {
        var result = new List<(string, string)>();
        var lines = block.Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            if (!lines[i].StartsWith("$ ", StringComparison.Ordinal))
            {
                continue;
            }

            var command = lines[i][2..];
            while (command.EndsWith('\\') && i + 1 < lines.Length)
            {
                command = command[..^1] + " " + lines[++i].Trim();
            }

            var output = new List<string>();
            while (i + 1 < lines.Length && lines[i + 1].Length > 0 && !lines[i + 1].StartsWith("$ ", StringComparison.Ordinal))
            {
                output.Add(lines[++i]);
            }

            result.Add((command, string.Join('\n', output)));
        }

        return result;
    }

    private static async Task<(int Exit, string Output)> ShellAsync(string command)
    {
        var info = new ProcessStartInfo("sh") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(command);
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(SampleProcess.Patience);
        await process.WaitForExitAsync(cts.Token);
        return (process.ExitCode, (await output).Trim() + (await error).Trim());
    }

    /// <summary>Compiles the program to a folder with a runtime configuration and runs it with `dotnet`, returning its output lines.</summary>
    private static async Task<string[]> RunProgramAsync(ReadmeBlock block, string dir, string argument)
    {
        var dll = Path.Combine(dir, "ws-demo.dll");
        await File.WriteAllBytesAsync(dll, CSharpBlock.CompileCleanlyToImage(block, ProjectKind.BclOnly));
        var version = Environment.Version;
        await File.WriteAllTextAsync(Path.ChangeExtension(dll, ".runtimeconfig.json"),
            new JsonObject
            {
                ["runtimeOptions"] = new JsonObject
                {
                    ["tfm"] = $"net{version.Major}.0",
                    ["framework"] = new JsonObject { ["name"] = "Microsoft.NETCore.App", ["version"] = $"{version.Major}.{version.Minor}.0" },
                },
            }.ToJsonString());

        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(dll);
        info.ArgumentList.Add(argument);
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();

        // Generous: a .NET start-up, six requests and a kill take seconds, but minutes on a loaded 2-core machine.
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"ws-demo did not end within 4 minutes; its output so far:\n{await output}");
        }

        Assert.True(process.ExitCode == 0, $"ws-demo exited {process.ExitCode}: {await error}\n{await output}");
        return (await output).Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    private static List<string> Requests(IEnumerable<string> lines) => [.. lines.Where(l => l.StartsWith("> ", StringComparison.Ordinal))];

    /// <summary>The replies in order, without what changes from run to run (the token, the host name).</summary>
    private static List<string> Replies(IEnumerable<string> lines) =>
        [.. Frames(lines).Where(f => (string?)f["id"] is { Length: > 0 }).Select(f =>
        {
            if (f["args"] is JsonArray token)
            {
                token[0] = "TOKEN";
            }

            if (f["args"] is JsonObject { } args && args.ContainsKey("hostname"))
            {
                args["hostname"] = "HOST";
            }

            return f.ToJsonString();
        })];

    /// <summary>The job's event states in order, repeats of a running job's event (each with newer output) counted once.</summary>
    private static List<string> EventStates(IEnumerable<string> lines)
    {
        var states = new List<string>();
        foreach (var f in Frames(lines).Where(f => (string?)f["id"] == ""))
        {
            var state = $"{f["args"]?["process_id"]} {f["args"]?["state"]}";
            if (states.Count == 0 || states[^1] != state)
            {
                states.Add(state);
            }
        }

        return states;
    }

    private static IEnumerable<JsonNode> Frames(IEnumerable<string> lines) =>
        lines.Where(l => l.StartsWith("< ", StringComparison.Ordinal)).Select(l => JsonNode.Parse(l[2..])!);

    [GeneratedRegex(@"\b(Users__\d+__\w+)=(\S+)")]
    private static partial Regex EnvironmentAssignment();

    private sealed record SampleHostAtAddress(SampleProcess Process, string Address) : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => Process.DisposeAsync();
    }
}
