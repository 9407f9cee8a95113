using System.Text;
using System.Text.Json.Nodes;
using Dispatcher.Protocol;
using Dispatcher.Protocol.Sysadm;

namespace Dispatcher.Transports.Tests;

/// <summary>
/// The two shapes of a dispatcher event: the sysadm frame is made from the nested one only when a connection asks for it, and is
/// byte for byte what reshaping the enriched args at once (as the feed did before) gave.
/// </summary>
public sealed class DispatcherWireEventTests
{
    public static TheoryData<string, JobState, int, bool> Events => new()
    {
        { "pending", JobState.Pending, (int)DispatcherEventKind.Pending, false },
        { "pending, recognised", JobState.Pending, (int)DispatcherEventKind.Pending, true },
        { "started", JobState.Running, (int)DispatcherEventKind.Started, false },
        { "started, recognised", JobState.Running, (int)DispatcherEventKind.Started, true },
        { "update", JobState.Running, (int)DispatcherEventKind.Update, false },
        { "update, recognised", JobState.Running, (int)DispatcherEventKind.Update, true },
        { "finished", JobState.Finished, (int)DispatcherEventKind.Finished, false },
        { "finished, recognised", JobState.Finished, (int)DispatcherEventKind.Finished, true },
    };

    [Theory]
    [MemberData(nameof(Events))]
    public void BothShapes_AreTheFramesOfTheEagerReshaping_ByteForByte(string what, JobState state, int kindValue, bool recognised)
    {
        _ = what;
        var kind = (DispatcherEventKind)kindValue;
        string[] commands = ["echo \"é ü 漢字 <tag> & 'q'\"", "printf '\\001\\t'"];
        var args = Args(state, commands, recognised);
        var expectedNested = Serialize((JsonObject)args.DeepClone(), 42);
        var reshaped = new DispatcherEventContext("job-é", state, commands, null, (JsonObject)args.DeepClone()) { Kind = kind };
        SysadmEventShape.Apply(reshaped);
        var expectedSysadm = reshaped.Suppressed ? null : Serialize(reshaped.Args, 42);

        var wire = new DispatcherWireEvent("job-é", state, 42, args, kind, commands);

        Assert.Equal(expectedNested, wire.GetFrame(DispatcherEventShape.Nested)!.Value.ToArray());
        Assert.False(wire.SysadmMade);
        var sysadm = wire.GetFrame(DispatcherEventShape.Sysadm);
        Assert.True(wire.SysadmMade);
        if (expectedSysadm is null)
        {
            Assert.Null(sysadm);
        }
        else
        {
            Assert.Equal(Encoding.UTF8.GetString(expectedSysadm), Encoding.UTF8.GetString(sysadm!.Value.Span));
            Assert.Equal(expectedSysadm, sysadm.Value.ToArray());

            // Made once: the same bytes for every connection that reads this shape.
            Assert.True(sysadm.Value.Span == wire.GetFrame(DispatcherEventShape.Sysadm)!.Value.Span);
        }
    }

    /// <summary>Args like the feed's, with strings that need escaping, doubles and integers, enriched or not.</summary>
    private static JsonObject Args(JobState state, string[] commands, bool recognised)
    {
        var details = new JsonObject
        {
            ["process_id"] = "job-é",
            ["state"] = state == JobState.Finished ? "finished" : "running",
            ["cmd_list"] = new JsonArray([.. commands.Select(c => (JsonNode?)c)]),
            ["time_started"] = "2026-11-30T07:30:00.1234567Z",
            [commands[0]] = "é ü 漢字 <tag> & 'q' \" \\ \u0001\n",
            ["return_codes/" + commands[0]] = "0",
            ["cpu_user_seconds"] = Math.Round(0.000123456789, 6),
            ["cpu_system_seconds"] = 1e-7,
            ["peak_memory_bytes"] = 123456789012L,
            ["duration"] = 0.1 + 0.2,
        };
        var args = state == JobState.Pending
            ? new JsonObject { ["state"] = "pending", ["process_id"] = "job-é" }
            : new JsonObject { ["state"] = state == JobState.Finished ? "finished" : "running", ["process_id"] = "job-é", ["process_details"] = details };
        if (recognised)
        {
            args["event_system"] = "sysadm/pkg";
            args["pkg_log"] = "línea\r\n";
        }

        return args;
    }

    private static byte[] Serialize(JsonObject args, long sequence)
    {
        var envelope = WireFormat.Envelope("events", "dispatcher", string.Empty, args);
        envelope["seq"] = sequence;
        return Encoding.UTF8.GetBytes(envelope.ToJsonString(WireFormat.JsonOptions));
    }
}
