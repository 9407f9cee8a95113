using System.Globalization;
using System.Text.Json.Nodes;
using Dispatcher.Protocol;

namespace Dispatcher.SampleHost.Sysadm;

/// <summary>
/// The read-only actions of sysadm's <c>sysadm/systemmanager</c> class, in its documented reply shapes, from /proc:
/// <c>systeminfo</c> (host name, architecture, cores, CPU type, kernel, total memory in MiB, uptime), <c>memorystats</c> (MiB as
/// strings) and <c>cpupercentage</c> (busy percentage in total and per CPU, over the time since the previous call).
/// </summary>
internal sealed class SystemManagerHandler(TimeProvider time) : IProtocolHandler
{
    private static readonly TimeSpan FirstSample = TimeSpan.FromMilliseconds(250);
    private readonly object _gate = new();
    private (long Busy, long Total)[]? _lastCpu;

    public async ValueTask<ProtocolResult> HandleAsync(ProtocolRequest request, CancellationToken cancellationToken)
    {
        switch (request.Action)
        {
            case "systeminfo":
                return ProtocolResult.Ok(new JsonObject { ["systeminfo"] = SystemInfo() });
            case "memorystats":
                return ProtocolResult.Ok(new JsonObject { ["memorystats"] = MemoryStats() });
            case "cpupercentage":
                return ProtocolResult.Ok(new JsonObject { ["cpupercentage"] = await CpuPercentageAsync(cancellationToken).ConfigureAwait(false) });
            case null:
                return ProtocolResult.Error(ProtocolErrorCode.BadRequest, "sysadm/systemmanager needs an \"action\": systeminfo, memorystats or cpupercentage.");
            default:
                return ProtocolResult.Error(ProtocolErrorCode.BadRequest,
                    $"Unknown action '{request.Action}'; this server's sysadm/systemmanager offers systeminfo, memorystats and cpupercentage.");
        }
    }

    private static JsonObject SystemInfo()
    {
        var mem = ProcFs.MemInfo();
        var release = ProcFs.Kernel("osrelease");
        return new JsonObject
        {
            ["arch"] = ProcFs.Architecture(),
            ["cpucores"] = Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture),
            ["cputype"] = ProcFs.CpuType(),
            ["hostname"] = Environment.MachineName,
            ["kernelident"] = ProcFs.Kernel("version"),
            ["kernelversion"] = $"{ProcFs.Kernel("ostype")} {release}".Trim(),
            ["systemversion"] = release,
            ["totalmem"] = mem.GetValueOrDefault("MemTotal") / 1024,
            ["uptime"] = ProcFs.UptimeText(ProcFs.Uptime()),
        };
    }

    /// <summary>FreeBSD's page queues mapped onto Linux: wired is the kernel's own unpageable memory (slab, stacks, page tables).</summary>
    private static JsonObject MemoryStats()
    {
        var m = ProcFs.MemInfo();
        static string Mib(long kib) => (kib / 1024).ToString(CultureInfo.InvariantCulture);
        return new JsonObject
        {
            ["active"] = Mib(m.GetValueOrDefault("Active")),
            ["cache"] = Mib(m.GetValueOrDefault("Cached")),
            ["free"] = Mib(m.GetValueOrDefault("MemFree")),
            ["inactive"] = Mib(m.GetValueOrDefault("Inactive")),
            ["wired"] = Mib(m.GetValueOrDefault("Slab") + m.GetValueOrDefault("KernelStack") + m.GetValueOrDefault("PageTables")),
        };
    }

    private async Task<JsonObject> CpuPercentageAsync(CancellationToken cancellationToken)
    {
        (long Busy, long Total)[]? before;
        lock (_gate)
        {
            before = _lastCpu;
        }

        if (before is null)
        {
            before = ProcFs.CpuTimes();
            await Task.Delay(FirstSample, time, cancellationToken).ConfigureAwait(false);
        }

        var now = ProcFs.CpuTimes();
        lock (_gate)
        {
            _lastCpu = now;
        }

        var result = new JsonObject();
        long busy = 0, total = 0;
        for (var i = 0; i < now.Length; i++)
        {
            var (b, t) = i < before.Length ? (now[i].Busy - before[i].Busy, now[i].Total - before[i].Total) : (0L, 0L);
            busy += b;
            total += t;
            result["cpu" + (i + 1).ToString(CultureInfo.InvariantCulture)] = new JsonObject { ["busy"] = Percent(b, t) };
        }

        result["busytotal"] = Percent(busy, total);
        return result;
    }

    private static string Percent(long busy, long total) =>
        (total <= 0 ? 0 : (int)Math.Round(100.0 * busy / total)).ToString(CultureInfo.InvariantCulture);
}
