using System.Text;
using System.Text.Json.Nodes;
using Dispatcher.Client.Internal;

namespace Dispatcher.Client.Tests;

/// <summary>The request envelope the client writes.</summary>
public sealed class WireTests
{
    [Fact]
    public void Envelope_OfTheSameArgsTwice_IsTheSameRequest()
    {
        // A request sent again after a lapsed login reuses its args: attaching them to a second envelope threw "The node
        // already has a parent" (seen in ReconnectTests.Requests_AfterTheTokenLifetime_StillSucceed over WebSocket).
        var args = new JsonObject { ["action"] = "list" };

        var first = Encoding.UTF8.GetString(Wire.Envelope("rpc", "dispatcher", "c1", args));
        var second = Encoding.UTF8.GetString(Wire.Envelope("rpc", "dispatcher", "c1", args));

        Assert.Equal("""{"namespace":"rpc","name":"dispatcher","id":"c1","args":{"action":"list"}}""", first);
        Assert.Equal(first, second);
        Assert.Null(args.Parent);
    }

    [Fact]
    public void JobValue_WithOnlyCommands_IsTheArrayEverySysadmServerAccepts()
    {
        var value = Wire.JobValue(new RemoteJobSpec { Id = "a", Commands = ["true", "echo x"] });

        Assert.Equal("""["true","echo x"]""", value.ToJsonString());
    }

    [Fact]
    public void JobValue_WritesEveryMember_UnderItsWireName()
    {
        var value = Wire.JobValue(new RemoteJobSpec
        {
            Id = "a",
            Commands = ["true"],
            Priority = -3,
            After = ["b", "c"],
            Delay = TimeSpan.FromSeconds(1.5),
            Retry = new RemoteRetryPolicy { Count = 2, Delay = TimeSpan.FromSeconds(10) },
            Labels = new Dictionary<string, string> { ["team"] = "ops" },
            StandardInput = "in",
            IdempotencyKey = "k",
            Limits = new RemoteJobLimits { MemoryBytes = 1L << 33, CpuWeight = 50 },
            RunAs = "nobody",
        });

        Assert.Equal(
            """{"commands":["true"],"priority":-3,"after":["b","c"],"delay":1.5,"retry":{"count":2,"delay":10},"labels":{"team":"ops"},"stdin":"in","idempotency_key":"k","limits":{"memory_bytes":8589934592,"cpu_weight":50},"run_as":"nobody"}""",
            value.ToJsonString());
        var simple = Wire.JobValue(new RemoteJobSpec { Id = "a", Commands = ["true"], Retry = new RemoteRetryPolicy { Count = 3 }, StartAt = new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero) });
        Assert.Equal("2026-01-02T03:04:05.0000000+00:00", (string?)simple["start_at"]);
        Assert.Equal(3, (int?)simple["retry"]);
    }
}
