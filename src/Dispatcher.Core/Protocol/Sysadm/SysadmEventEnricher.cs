using System.Text;
using System.Text.Json.Nodes;

namespace Dispatcher.Protocol.Sysadm;

/// <summary>
/// The sysadm server's event fields for the jobs it recognised by id: <c>sysadm_pkg…</c> (<c>sysadm/pkg</c>, <c>pkg_log</c>),
/// <c>sysadm_update_runupdates::…</c> (<c>sysadm/update</c>, <c>update_log</c>), <c>sysadm_sourcectl_…</c> (<c>sysadm/sourcectl</c>,
/// <c>update_log</c>) and <c>sysadm_iohyve…</c> (<c>sysadm/iohyve</c>, no log). Every recognised event gets <c>event_system</c> and
/// <c>action</c>; the log field is empty while pending, holds only the output new since the previous event while running (the GUI
/// appends it), and the whole output of the last command when finished. Finished <c>pkg</c> jobs add <c>updates_available</c>
/// (check_upgrade) or <c>vulnerable_pkgs</c> and <c>impacts_pkgs</c> (audit). Turn it on with <c>AddSysadmEventCompatibility()</c>.
/// </summary>
internal sealed class SysadmEventEnricher : IDispatcherEventEnricher
{
    public void Enrich(DispatcherEventContext context)
    {
        if (Recognise(context.JobId) is not { } subsystem)
        {
            return;
        }

        var args = context.Args;
        context.SetEventSystem(subsystem.EventSystem);
        args["action"] = Action(context.JobId);
        if (subsystem.LogField is not { } logField)
        {
            return;
        }

        args[logField] = context.Kind switch
        {
            DispatcherEventKind.Pending => string.Empty,
            DispatcherEventKind.Finished => LastCommandOutput(context),
            _ => NewOutput(context),
        };

        if (context.Kind == DispatcherEventKind.Finished && subsystem.EventSystem == "sysadm/pkg")
        {
            AddPkgResults(context, (string)args[logField]!);
        }
    }

    /// <summary>The subsystem that owns a job id, by the sysadm server's rules, or <see langword="null"/>. iocage jobs never were recognised.</summary>
    internal static (string EventSystem, string? LogField)? Recognise(string jobId)
    {
        if (jobId.StartsWith("sysadm_pkg", StringComparison.Ordinal))
        {
            return ("sysadm/pkg", "pkg_log");
        }

        var cut = jobId.IndexOf("::", StringComparison.Ordinal);
        if ((cut < 0 ? jobId : jobId[..cut]) == "sysadm_update_runupdates")
        {
            return ("sysadm/update", "update_log");
        }

        if (jobId.StartsWith("sysadm_sourcectl_", StringComparison.Ordinal))
        {
            return ("sysadm/sourcectl", "update_log");
        }

        return jobId.StartsWith("sysadm_iohyve", StringComparison.Ordinal) ? ("sysadm/iohyve", null) : null;
    }

    /// <summary>The id cut at its first <c>-</c>, without everything up to and including its first <c>_</c>: <c>sysadm_pkg_install-{…}</c> gives <c>pkg_install</c>.</summary>
    internal static string Action(string jobId)
    {
        var dash = jobId.IndexOf('-', StringComparison.Ordinal);
        var head = dash < 0 ? jobId : jobId[..dash];
        var underscore = head.IndexOf('_', StringComparison.Ordinal);
        return underscore < 0 ? head : head[(underscore + 1)..];
    }

    /// <summary>The output of this running event: the per-command deltas, in command order.</summary>
    private static string NewOutput(DispatcherEventContext context)
    {
        if (context.Args["process_details"] is not JsonObject details)
        {
            return string.Empty;
        }

        var text = new StringBuilder();
        foreach (var command in context.Commands.Distinct(StringComparer.Ordinal))
        {
            if (details[command] is JsonValue value && value.TryGetValue<string>(out var delta))
            {
                text.Append(delta);
            }
        }

        return text.ToString();
    }

    /// <summary>The whole output of the last command in the job's list, or empty when the job ended before it.</summary>
    private static string LastCommandOutput(DispatcherEventContext context)
    {
        if (context.Result is not { } result || result.Commands.Count == 0)
        {
            return string.Empty;
        }

        var last = result.Commands[^1];
        var ran = result.CommandResults.Count == result.Commands.Count ? result.CommandResults[^1] : null;
        return ran is not null && ran.Command == last ? ran.Output : string.Empty;
    }

    private static void AddPkgResults(DispatcherEventContext context, string log)
    {
        var action = Action(context.JobId);
        if (action == "pkg_check_upgrade")
        {
            context.Args["updates_available"] = log.Contains("Your packages are up to date", StringComparison.Ordinal) ? "false" : "true";
        }
        else if (action == "pkg_audit")
        {
            var vulnerable = new JsonArray();
            var impacts = new JsonArray();
            foreach (var raw in log.Split('\n'))
            {
                var line = raw.Trim();
                if (line.EndsWith(" is vulnerable:", StringComparison.Ordinal))
                {
                    vulnerable.Add((JsonNode?)line[..^" is vulnerable:".Length]);
                }
                else if (line.StartsWith("Packages that depend on ", StringComparison.Ordinal) && line.IndexOf(':', StringComparison.Ordinal) is var colon and > 0)
                {
                    foreach (var name in line[(colon + 1)..].Split([',', ' '], StringSplitOptions.RemoveEmptyEntries))
                    {
                        impacts.Add((JsonNode?)name);
                    }
                }
            }

            context.Args["vulnerable_pkgs"] = vulnerable;
            context.Args["impacts_pkgs"] = impacts;
        }
    }
}
