using System.Net;
using System.Text.Json.Nodes;
using Dispatcher.Protocol;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

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

    [Fact]
    public async Task AuditFile_OneRunOfManyJobs_IsOneWrite_WithALineForEachJobInRequestOrder()
    {
        var data = Directory.CreateTempSubdirectory("dispatcher-audit-").FullName;
        try
        {
            await using (var server = await TestServer.StartAsync(dispatcher: d => d
                .UseJobPolicy<OnlyEchoPolicy>()
                .Services.Configure<DispatcherOptions>(o => o.DataDirectory = data)))
            {
                var audit = server.Services.GetRequiredService<AuditTrail>();
                var before = audit.FileWrites;
                var reply = await server.PutAsync("/rpc/dispatcher",
                    """{"action":"run","first":"echo 1","refused":"sleep 1","second":["echo 2","echo 3"],"jobs":[{"commands":"echo 4"}]}""");
                Assert.Equal(HttpStatusCode.OK, reply.Status);
                var generated = (string?)reply.Body!["args"]!["started"]![2];

                // The reply came after the lines were written: all of them, in one write.
                Assert.Equal(1, audit.FileWrites - before);
                var lines = File.ReadAllLines(Path.Combine(data, "audit.log")).Select(l => JsonNode.Parse(l)!).ToArray();
                Assert.Equal(["run_rejected", "run", "run", "run"], lines.Select(l => (string?)l["action"]));
                Assert.Equal(["refused", "first", "second", generated], lines.Select(l => (string?)l["job"]));
                Assert.Equal(["echo 2", "echo 3"], lines[2]["commands"]!.AsArray().Select(c => (string?)c));
                Assert.Contains("may run only echo", (string?)lines[0]["reason"], StringComparison.Ordinal);
                Assert.All(lines, l =>
                {
                    Assert.Equal("admin", (string?)l["user"]);
                    Assert.Equal("127.0.0.1", (string?)l["address"]);
                    Assert.Equal("http", (string?)l["transport"]);
                });

                // A request on its own still writes its line at once.
                await server.PutAsync("/rpc/dispatcher", """{"action":"kill","job_id":"nope"}""");
                Assert.Equal(2, audit.FileWrites - before);
                Assert.Equal(5, File.ReadAllLines(Path.Combine(data, "audit.log")).Length);
            }
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }

    [Fact]
    public async Task AuditTrail_RecordsQueueOperationsAndRecurrenceRemoval_WithUserAndAddress()
    {
        var data = Directory.CreateTempSubdirectory("dispatcher-audit-").FullName;
        var events = new AuditEvents();
        try
        {
            await using (var server = await TestServer.StartAsync(
                dispatcher: d => d.Services.Configure<DispatcherOptions>(o => o.DataDirectory = data),
                host: b => b.Logging.AddProvider(events)))
            {
                // Over HTTP.
                await Ok(server.PutAsync("/rpc/dispatcher", """{"action":"pause","queue":"pkg_queue"}"""));
                await Ok(server.PutAsync("/rpc/dispatcher", """{"action":"resume","queue":["pkg_queue"]}"""));
                await Ok(server.PutAsync("/rpc/dispatcher", """{"action":"add_queue","queue":"builds","limit":3}"""));
                await Ok(server.PutAsync("/rpc/dispatcher", """{"action":"run","tick":{"commands":"true","cron":"0 0 1 1 *"}}"""));

                // Over WebSocket.
                await using var ws = await server.ConnectAsync("admin");
                Assert.Equal("response", (string?)(await ws.DispatcherAsync(new JsonObject { ["action"] = "set_limit", ["queue"] = "builds", ["limit"] = 5 }))["name"]);
                Assert.Equal("response", (string?)(await ws.DispatcherAsync(new JsonObject { ["action"] = "drain", ["queue"] = "builds" }))["name"]);
                Assert.Equal("response", (string?)(await ws.DispatcherAsync(new JsonObject { ["action"] = "remove_recurrence", ["recurrence"] = new JsonArray("tick", "nope") }))["name"]);

                // Refused (a read-only user) and invalid requests change nothing and are not audited as changes.
                await server.PutAsync("/rpc/dispatcher", """{"action":"pause","queue":"no_such_queue"}""");
            }

            var lines = File.ReadAllLines(Path.Combine(data, "audit.log")).Select(l => JsonNode.Parse(l)!).Where(l => (string?)l["action"] != "run").ToArray();
            Assert.Equal(["pause", "resume", "add_queue", "set_limit", "drain", "remove_recurrence"], lines.Select(l => (string?)l["action"]));
            Assert.All(lines, l =>
            {
                Assert.Equal("admin", (string?)l["user"]);
                Assert.Equal("127.0.0.1", (string?)l["address"]);
                Assert.True(DateTimeOffset.TryParse((string?)l["time"], System.Globalization.CultureInfo.InvariantCulture, out _));
            });
            Assert.Equal(["http", "http", "http", "ws", "ws", "ws"], lines.Select(l => (string?)l["transport"]));
            Assert.Equal(["pkg_queue"], lines[0]["queues"]!.AsArray().Select(q => (string?)q));
            Assert.Equal(["pkg_queue"], lines[1]["queues"]!.AsArray().Select(q => (string?)q));
            Assert.Equal(("builds", 3), ((string?)lines[2]["queues"]![0], (int)lines[2]["limit"]!));
            Assert.Equal(("builds", 5), ((string?)lines[3]["queues"]![0], (int)lines[3]["limit"]!));
            Assert.Equal(["builds"], lines[4]["queues"]!.AsArray().Select(q => (string?)q));
            Assert.Equal(["tick", "nope"], lines[5]["requested"]!.AsArray().Select(r => (string?)r));
            Assert.Equal(["tick"], lines[5]["removed"]!.AsArray().Select(r => (string?)r));

            // The same actions as structured log events, with user and address.
            Assert.Equal(5, events.Messages.Count(m => m.Id == 605));
            Assert.Single(events.Messages, m => m.Id == 606);
            Assert.Contains(events.Messages, m => m.Id == 605 && m.Text.Contains("user admin from 127.0.0.1 (ws): set_limit of queue(s) builds (limit 5)", StringComparison.Ordinal));
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }

        static async Task Ok(Task<(HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response)> request) =>
            Assert.Equal(HttpStatusCode.OK, (await request).Status);
    }

    /// <summary>Keeps the audit trail's log events (ids 601 to 606).</summary>
    private sealed class AuditEvents : ILoggerProvider, ILogger
    {
        public List<(int Id, string Text)> Messages { get; } = [];

        public ILogger CreateLogger(string categoryName) => this;

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (eventId.Id is >= 601 and <= 606)
            {
                lock (Messages)
                {
                    Messages.Add((eventId.Id, formatter(state, exception)));
                }
            }
        }

        public void Dispose()
        {
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
