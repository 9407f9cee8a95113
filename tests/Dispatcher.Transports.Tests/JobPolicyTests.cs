using System.Net;
using System.Text.Json.Nodes;
using Dispatcher.Protocol;
using Microsoft.Extensions.DependencyInjection;

namespace Dispatcher.Transports.Tests;

/// <summary>The host's job policy and the audit trail, over real HTTP and WebSocket connections.</summary>
public sealed class JobPolicyTests
{
    [Fact]
    public async Task Run_RejectedByPolicy_NeverStarts_AndTheRejectionSaysWhy()
    {
        var marker = Path.Combine(Path.GetTempPath(), "policy-" + Guid.NewGuid().ToString("N"));
        await using var server = await TestServer.StartAsync(dispatcher: d => d.UseJobPolicy<OnlyEchoPolicy>());

        var reply = await server.PutAsync("/rpc/dispatcher", $$"""{"action":"run","bad":"touch {{marker}}","good":"echo hi"}""");

        Assert.Equal(HttpStatusCode.OK, reply.Status);
        Assert.Equal("good", (string?)reply.Body!["args"]!["started"]![0]);
        Assert.Equal("Rejected by the host's policy: user 'admin' may run only echo, not 'touch'.", (string?)reply.Body!["args"]!["rejected"]!["bad"]);
        Assert.Null(server.Dispatcher.GetResult("bad"));
        Assert.DoesNotContain(server.Dispatcher.List(), j => j.Id == "bad");
        await server.Dispatcher.WaitForCompletionAsync("good").WaitAsync(TestServer.Patience);
        Assert.False(File.Exists(marker));
    }

    [Fact]
    public async Task Run_RewrittenByPolicy_RunsInTheForcedQueue()
    {
        await using var server = await TestServer.StartAsync(dispatcher: d => d.UseJobPolicy<ForcePkgQueuePolicy>());

        var reply = await server.PutAsync("/rpc/dispatcher", """{"action":"run","moved":"echo hi"}""");

        Assert.Equal("moved", (string?)reply.Body!["args"]!["started"]![0]);
        var result = await server.Dispatcher.WaitForCompletionAsync("moved").WaitAsync(TestServer.Patience);
        Assert.Equal(DispatcherQueues.PkgQueue, result.Queue);
    }

    [Fact]
    public async Task AuditFile_RecordsRunAndKill_WithUserAndAddress()
    {
        var data = Directory.CreateTempSubdirectory("dispatcher-audit-").FullName;
        try
        {
            await using (var server = await TestServer.StartAsync(dispatcher: d => d.Services.Configure<DispatcherOptions>(o => o.DataDirectory = data)))
            {
                await server.PutAsync("/rpc/dispatcher", """{"action":"run","audited":"sleep 300"}""");
                await server.PutAsync("/rpc/dispatcher", """{"action":"kill","job_id":["audited","nope"]}""");
                await server.Dispatcher.WaitForCompletionAsync("audited").WaitAsync(TestServer.Patience);
            }

            var lines = File.ReadAllLines(Path.Combine(data, "audit.log")).Select(l => JsonNode.Parse(l)!).ToArray();
            Assert.Equal(2, lines.Length);
            var run = lines[0];
            Assert.Equal("run", (string?)run["action"]);
            Assert.Equal("admin", (string?)run["user"]);
            Assert.Equal("127.0.0.1", (string?)run["address"]);
            Assert.Equal("audited", (string?)run["job"]);
            Assert.Equal("sleep 300", (string?)run["commands"]![0]);
            Assert.True(DateTimeOffset.TryParse((string?)run["time"], System.Globalization.CultureInfo.InvariantCulture, out _));
            var kill = lines[1];
            Assert.Equal("kill", (string?)kill["action"]);
            Assert.Equal("admin", (string?)kill["user"]);
            Assert.Equal("127.0.0.1", (string?)kill["address"]);
            Assert.Equal(["audited"], kill["killed"]!.AsArray().Select(k => (string?)k));
            Assert.Equal(["audited", "nope"], kill["requested"]!.AsArray().Select(k => (string?)k));
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }

    private sealed class OnlyEchoPolicy : IJobPolicy
    {
        public ValueTask<JobPolicyDecision> EvaluateAsync(JobPolicyContext context, CancellationToken cancellationToken)
        {
            var program = context.Job.Commands[0].Split(' ')[0];
            return ValueTask.FromResult(program == "echo"
                ? JobPolicyDecision.Approve()
                : JobPolicyDecision.Reject($"user '{context.User.Name}' may run only echo, not '{program}'."));
        }
    }

    private sealed class ForcePkgQueuePolicy : IJobPolicy
    {
        public ValueTask<JobPolicyDecision> EvaluateAsync(JobPolicyContext context, CancellationToken cancellationToken) =>
            ValueTask.FromResult(JobPolicyDecision.Rewrite(context.Job with { Queue = DispatcherQueues.PkgQueue }));
    }
}
