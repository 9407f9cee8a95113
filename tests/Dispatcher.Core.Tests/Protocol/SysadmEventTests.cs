using System.Text.Json.Nodes;
using Dispatcher.Protocol;
using Dispatcher.Protocol.Sysadm;

namespace Dispatcher.Tests.Protocol;

public sealed class SysadmEventTests
{
    private const string PkgJob = "sysadm_pkg_check_upgrade-{0f8e}";
    private static readonly string[] PkgCommands = ["pkg update", "pkg upgrade -n"];

    private static DispatcherEventContext Shape(DispatcherEventContext context, bool enrich = true)
    {
        if (enrich)
        {
            new SysadmEventEnricher().Enrich(context);
        }

        SysadmEventShape.Apply(context);
        return context;
    }

    private static DispatcherEventContext Pending(string id, string[] commands) =>
        new(id, JobState.Pending, commands, null, new JsonObject { ["state"] = "pending", ["process_id"] = id });

    private static DispatcherEventContext Running(string id, string[] commands, JsonObject details, bool start = false) =>
        new(id, JobState.Running, commands, null, new JsonObject { ["state"] = "running", ["process_id"] = id, ["process_details"] = details })
        {
            Kind = start ? DispatcherEventKind.Started : DispatcherEventKind.Update,
        };

    private static DispatcherEventContext Finished(string id, string[] commands, params (string Command, string Output, int Code)[] ran)
    {
        var now = DateTimeOffset.Now;
        var result = new JobResult(id, "pkg_queue", commands, ran.All(r => r.Code == 0) && ran.Length == commands.Length ? JobOutcome.Succeeded : JobOutcome.Failed,
            [.. ran.Select((r, i) => new CommandResult(i, r.Command, r.Output, 0, r.Code, now, now))], now, now, now);
        var details = new JsonObject { ["process_id"] = id, ["state"] = "finished", ["cmd_list"] = new JsonArray([.. commands.Select(c => (JsonNode?)c)]) };
        foreach (var r in ran)
        {
            details[r.Command] = r.Output;
            details["return_codes/" + r.Command] = r.Code.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        return new(id, JobState.Finished, commands, result, new JsonObject { ["state"] = "finished", ["process_id"] = id, ["process_details"] = details });
    }

    [Fact]
    public void PkgPending_CarriesProcessDetails_EventSystem_Action_AndAnEmptyLog()
    {
        var args = Shape(Pending(PkgJob, PkgCommands)).Args;

        Assert.Equal(
            """{"state":"pending","event_system":"sysadm/pkg","action":"pkg_check_upgrade","pkg_log":"","process_details":{"cmd_list":["pkg update","pkg upgrade -n"],"process_id":"sysadm_pkg_check_upgrade-{0f8e}","state":"pending"}}""",
            args.ToJsonString());
    }

    [Fact]
    public void PkgRunning_LogHoldsOnlyTheNewOutput()
    {
        var context = Shape(Running(PkgJob, PkgCommands, new JsonObject { ["pkg update"] = "b\n", ["return_codes/pkg update"] = "0", ["pkg upgrade -n"] = "c\n" }));

        Assert.Equal("b\nc\n", (string?)context.Args["pkg_log"]);
        Assert.False(context.Args.ContainsKey("process_id"));
        Assert.False(context.Suppressed);
    }

    [Fact]
    public void PkgFinished_LogIsTheLastCommandsOutput_AndUpdatesAvailableIsAString()
    {
        var args = Shape(Finished(PkgJob, PkgCommands, ("pkg update", "updated\n", 0), ("pkg upgrade -n", "Your packages are up to date.\n", 0))).Args;

        Assert.Equal("Your packages are up to date.\n", (string?)args["pkg_log"]);
        Assert.Equal("false", (string?)args["updates_available"]);
        Assert.Equal("finished", (string?)args["state"]);
        Assert.Equal(PkgJob, (string?)args["process_details"]!["process_id"]);
    }

    [Fact]
    public void PkgFinished_StoppedBeforeTheLastCommand_HasAnEmptyLog()
    {
        var args = Shape(Finished(PkgJob, PkgCommands, ("pkg update", "no network\n", 1))).Args;
        Assert.Equal(string.Empty, (string?)args["pkg_log"]);
    }

    [Fact]
    public void PkgAudit_ListsVulnerableAndImpactedPackages()
    {
        const string log = "curl-7.50 is vulnerable:\n  curl -- several issues\nPackages that depend on curl: git, cmake\n\n1 problem(s) in 1 installed package(s) found.\n";
        var args = Shape(Finished("sysadm_pkg_audit-{1}", ["pkg audit -F"], ("pkg audit -F", log, 1))).Args;

        Assert.Equal("""["curl-7.50"]""", args["vulnerable_pkgs"]!.ToJsonString());
        Assert.Equal("""["git","cmake"]""", args["impacts_pkgs"]!.ToJsonString());
    }

    [Theory]
    [InlineData("sysadm_update_runupdates::{42}", "sysadm/update", "update_log")]
    [InlineData("sysadm_sourcectl_fetch_ports", "sysadm/sourcectl", "update_log")]
    [InlineData("sysadm_iohyve_fetch-{9}", "sysadm/iohyve", null)]
    public void OtherSubsystems_AreRecognisedByTheirIds(string id, string eventSystem, string? logField)
    {
        var args = Shape(Running(id, ["x"], new JsonObject { ["x"] = "out" })).Args;

        Assert.Equal(eventSystem, (string?)args["event_system"]);
        if (logField is null)
        {
            Assert.False(args.ContainsKey("update_log") || args.ContainsKey("pkg_log"));
        }
        else
        {
            Assert.Equal("out", (string?)args[logField]);
        }
    }

    [Theory]
    [InlineData("sysadm_update_checkupdates")]
    [InlineData("sysadm_iocage_fetch_release_13")]
    [InlineData("internal_sysadm_pkg_repo_update_sync")]
    [InlineData("my-job")]
    public void UnrecognisedJobs_GetAStartMarker_NoProgress_AndTheFlatLogWhenFinished(string id)
    {
        Assert.True(Shape(Pending(id, ["a"])).Suppressed);
        Assert.Equal($$"""{"process_id":"{{id}}","state":"running"}""", Shape(Running(id, ["a"], new JsonObject(), start: true)).Args.ToJsonString());
        Assert.True(Shape(Running(id, ["a"], new JsonObject { ["a"] = "x" })).Suppressed);

        var finished = Shape(Finished(id, ["a"], ("a", "x\n", 0))).Args;
        Assert.Equal(id, (string?)finished["process_id"]);
        Assert.Equal("x\n", (string?)finished["a"]);
        Assert.Equal("0", (string?)finished["return_codes/a"]);
        Assert.False(finished.ContainsKey("process_details"));
    }

    [Fact]
    public void AHostsOwnEnricher_MakesItsJobsRecognised()
    {
        var context = Pending("mine-1", ["a"]);
        context.SetEventSystem("acme/backup");

        var args = Shape(context, enrich: false).Args;
        Assert.False(context.Suppressed);
        Assert.Equal("mine-1", (string?)args["process_details"]!["process_id"]);
    }

    [Theory]
    [InlineData("sysadm_pkg_install-{0f8e}", "pkg_install")]
    [InlineData("sysadm_pkg_check_upgrade-{a-b}", "pkg_check_upgrade")]
    [InlineData("sysadm_update_runupdates::{1}", "update_runupdates::{1}")]
    public void Action_IsTheIdCutAtTheFirstDash_WithoutItsFirstWord(string id, string action) =>
        Assert.Equal(action, SysadmEventEnricher.Action(id));
}
