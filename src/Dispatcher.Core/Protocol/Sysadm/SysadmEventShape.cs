using System.Text.Json.Nodes;

namespace Dispatcher.Protocol.Sysadm;

/// <summary>
/// The sysadm server's event shapes, applied after every enricher (<see cref="DispatcherEventShape.Sysadm"/>). A job some enricher
/// recognised (it set <c>event_system</c>) keeps its events, with <c>process_id</c> only inside <c>process_details</c>, and a pending
/// event that carries <c>process_details</c> (<c>cmd_list</c>, <c>process_id</c>, <c>state</c>). Any other job gets what the sysadm
/// server sent for it: a start marker <c>{"process_id", "state": "running"}</c>, no pending or progress events, and the flat raw log
/// (<c>cmd_list</c>, one key per command, <c>return_codes/…</c>, times) as the finished event's args.
/// </summary>
internal static class SysadmEventShape
{
    public static void Apply(DispatcherEventContext context)
    {
        var args = context.Args;
        if (args.ContainsKey("event_system"))
        {
            args.Remove("process_id");
            if (context.Kind == DispatcherEventKind.Pending && !args.ContainsKey("process_details"))
            {
                args["process_details"] = new JsonObject
                {
                    ["cmd_list"] = new JsonArray([.. context.Commands.Select(c => (JsonNode?)c)]),
                    ["process_id"] = context.JobId,
                    ["state"] = "pending",
                };
            }

            return;
        }

        switch (context.Kind)
        {
            case DispatcherEventKind.Started:
                context.Args = new JsonObject { ["process_id"] = context.JobId, ["state"] = "running" };
                break;
            case DispatcherEventKind.Finished when args["process_details"] is JsonObject details:
                args.Remove("process_details");
                context.Args = details;
                break;
            default:
                context.Suppressed = true;
                break;
        }
    }
}
