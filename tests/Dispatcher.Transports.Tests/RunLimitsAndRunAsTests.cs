using System.Net;
using System.Text.Json.Nodes;
using Dispatcher.Containment;
using Dispatcher.Internal;
using Dispatcher.Protocol;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Dispatcher.Transports.Tests;

/// <summary>
/// A job's <c>limits</c> and <c>run_as</c> in <c>run</c>, over real WebSocket and HTTP connections, with real processes. Tests
/// that need cgroups or root say which containment they checked, or are skipped with the reason.
/// </summary>
public sealed class RunLimitsAndRunAsTests(ITestOutputHelper output)
{
    public static TheoryData<string> Transports => new() { "websocket", "rest" };

    [SkippableTheory]
    [MemberData(nameof(Transports))]
    public async Task Run_WithRunAsNobody_SeesUid65534(string transport)
    {
        Skip.If(Environment.UserName != "root", "running as another user needs the host to be root");
        await using var server = await TestServer.StartAsync(dispatcher: d => d.Services.Configure<DispatcherOptions>(o => o.AllowedRunAsUsers.Add("nobody")));

        var reply = await RunAsync(server, transport, new JsonObject
        {
            ["who"] = new JsonObject { ["commands"] = new JsonArray("id -u", "id -g"), ["run_as"] = "nobody" },
        });

        Assert.Equal("who", (string?)reply["started"]![0]);
        var result = await server.Dispatcher.WaitForCompletionAsync("who").WaitAsync(TestServer.Patience);
        Assert.Equal(JobOutcome.Succeeded, result.Outcome);
        Assert.Equal("65534\n", result.CommandResults[0].Output);
        Assert.Equal("65534\n", result.CommandResults[1].Output);
    }

    /// <summary>Each transport with each way of tracking a job (the test name says which; one the machine lacks is skipped with the reason).</summary>
    public static TheoryData<string, ContainmentMode> TransportsAndModes => new()
    {
        { "websocket", ContainmentMode.CgroupV2 },
        { "rest", ContainmentMode.CgroupV2 },
        { "websocket", ContainmentMode.CgroupV1 },
        { "rest", ContainmentMode.CgroupV1 },
    };

    [SkippableTheory]
    [MemberData(nameof(TransportsAndModes))]
    public async Task Run_WithAMemoryLimit_EndsOomKilled(string transport, ContainmentMode mode)
    {
        var unavailable = CgroupLayout.Detect().WhyUnavailable(mode);
        Skip.If(unavailable is not null, $"{mode} is not available here: {unavailable}");
        await using var server = await TestServer.StartAsync(dispatcher: d => d.Services.Configure<DispatcherOptions>(o => o.Containment.Mode = mode));
        var containment = ((DefaultDispatcher)server.Dispatcher).Containment!;
        Skip.If(!containment.CanLimit("memory"), $"no memory cgroup hierarchy can be used here ({containment.Description})");
        output.WriteLine($"checked with containment: {containment.Description}");

        // A string that doubles until the kernel stops it at 32 MiB.
        var reply = await RunAsync(server, transport, new JsonObject
        {
            ["hog"] = new JsonObject
            {
                ["commands"] = "sh -c \"a=xxxxxxxxxxxxxxxx; while :; do a=$a$a; done\"",
                ["limits"] = new JsonObject { ["memory_bytes"] = 32 * 1024 * 1024, ["max_processes"] = 20, ["cpu_weight"] = 50 },
            },
        });

        Assert.Equal("hog", (string?)reply["started"]![0]);
        var result = await server.Dispatcher.WaitForCompletionAsync("hog").WaitAsync(TestServer.Patience);
        Assert.Equal(JobOutcome.OomKilled, result.Outcome);
        var history = await server.PutAsync("/rpc/dispatcher", """{"action":"history","job_id":"hog"}""");
        Assert.Equal("oom_killed", (string?)history.Body!["args"]!["history"]![0]!["outcome"]);
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Run_LimitsAndRunAs_ReachThePolicy_WhichCanRejectThem(string transport)
    {
        var policy = new RecordingPolicy();
        await using var server = await TestServer.StartAsync(dispatcher: d =>
        {
            d.Services.AddSingleton<IJobPolicy>(policy);
            d.Services.Configure<DispatcherOptions>(o => o.AllowedRunAsUsers.Add("nobody"));
        });

        var reply = await RunAsync(server, transport, new JsonObject
        {
            ["limited"] = new JsonObject
            {
                ["commands"] = "true",
                ["limits"] = new JsonObject { ["memory_bytes"] = 1L << 30, ["max_processes"] = 64, ["cpu_weight"] = 200 },
            },
            ["as_root"] = new JsonObject { ["commands"] = "true", ["run_as"] = "root" },
        });

        Assert.Equal(["limited"], reply["started"]!.AsArray().Select(s => (string?)s));
        Assert.Equal("Rejected by the host's policy: no job runs as root.", (string?)reply["rejected"]!["as_root"]);
        Assert.Equal(new JobLimits { MemoryBytes = 1L << 30, MaxProcesses = 64, CpuWeight = 200 }, policy.Seen["limited"].Limits);
        Assert.Null(policy.Seen["limited"].RunAs);
        Assert.Equal("root", policy.Seen["as_root"].RunAs);
        Assert.Null(server.Dispatcher.GetJob("as_root"));
    }

    [Theory]
    [InlineData("""{"memory_bytes":"100"}""", "\"limits\": \"memory_bytes\" must be a positive whole number of bytes (a JSON number), not a string.")]
    [InlineData("""{"memory_bytes":1.5}""", "\"limits\": \"memory_bytes\" must be a positive whole number of bytes (a JSON number), not 1.5.")]
    [InlineData("""{"memory_bytes":0}""", "\"limits\": \"memory_bytes\" must be a positive whole number of bytes (a JSON number), not 0.")]
    [InlineData("""{"max_processes":-1}""", "\"limits\": \"max_processes\" must be a whole number from 1 to 2147483647 (a JSON number), not -1.")]
    [InlineData("""{"cpu_weight":20000}""", "\"limits\": \"cpu_weight\" must be a whole number from 1 to 10000 (a JSON number; 100 is an ordinary share), not 20000.")]
    [InlineData("""{"memory":5}""", "\"limits\" has the unknown member \"memory\"; it may have memory_bytes, max_processes and cpu_weight.")]
    [InlineData("""[1]""", "\"limits\" must be an object with memory_bytes, max_processes and/or cpu_weight, not an array.")]
    public async Task Run_InvalidLimits_AreRejectedSayingWhat_AndTheRestRuns(string limits, string expected)
    {
        await using var server = await TestServer.StartAsync();

        var reply = await server.PutAsync("/rpc/dispatcher", $$"""{"action":"run","bad":{"commands":"true","limits":{{limits}}},"good":"true"}""");

        Assert.Equal(HttpStatusCode.OK, reply.Status);
        Assert.Equal(expected, (string?)reply.Body!["args"]!["rejected"]!["bad"]);
        Assert.Equal("good", (string?)reply.Body!["args"]!["started"]![0]);
        Assert.Null(server.Dispatcher.GetJob("bad"));
        await server.Dispatcher.WaitForCompletionAsync("good").WaitAsync(TestServer.Patience);
    }

    [Theory]
    [InlineData("\"\"", "\"run_as\" must be a user name (a non-empty string).")]
    [InlineData("65534", "\"run_as\" must be a user name (a non-empty string).")]
    [InlineData("\"daemon\"", "Job 'bad' asks to run as 'daemon', which is neither its queue's user nor listed in Dispatcher:AllowedRunAsUsers.")]
    public async Task Run_RunAsNotAllowed_IsRejectedSayingWhy(string runAs, string expected)
    {
        await using var server = await TestServer.StartAsync();

        var reply = await server.PutAsync("/rpc/dispatcher", $$$"""{"action":"run","bad":{"commands":"true","run_as":{{{runAs}}}}}""");

        Assert.Equal(HttpStatusCode.OK, reply.Status);
        Assert.Equal(expected, (string?)reply.Body!["args"]!["rejected"]!["bad"]);
        Assert.Null(server.Dispatcher.GetJob("bad"));
    }

    /// <summary>A <c>run</c> request over <paramref name="transport"/>; returns the reply's args.</summary>
    private static async Task<JsonNode> RunAsync(TestServer server, string transport, JsonObject jobs)
    {
        jobs["action"] = "run";
        if (transport == "rest")
        {
            var reply = await server.PutAsync("/rpc/dispatcher", jobs.ToJsonString());
            Assert.Equal(HttpStatusCode.OK, reply.Status);
            return reply.Body!["args"]!;
        }

        await using var ws = await server.ConnectAsync("admin");
        var frame = await ws.DispatcherAsync(jobs);
        Assert.Equal("response", (string?)frame["name"]);
        return frame["args"]!;
    }

    private sealed class RecordingPolicy : IJobPolicy
    {
        public Dictionary<string, JobRequest> Seen { get; } = [];

        public ValueTask<JobPolicyDecision> EvaluateAsync(JobPolicyContext context, CancellationToken cancellationToken)
        {
            lock (Seen)
            {
                Seen[context.Job.Id] = context.Job;
            }

            return ValueTask.FromResult(context.Job.RunAs == "root" ? JobPolicyDecision.Reject("no job runs as root.") : JobPolicyDecision.Approve());
        }
    }
}
