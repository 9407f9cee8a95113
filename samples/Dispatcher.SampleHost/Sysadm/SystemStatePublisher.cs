using System.Globalization;
using System.Text.Json.Nodes;
using Dispatcher.Protocol;
using Microsoft.Extensions.Options;

namespace Dispatcher.SampleHost.Sysadm;

/// <summary>Options of the <c>system-state</c> events (configuration section <c>SystemState</c>).</summary>
public sealed class SystemStateOptions
{
    /// <summary>Gets or sets how often the state is checked and published.</summary>
    /// <value>The default value is 60 seconds.</value>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(60);
}

/// <summary>
/// Publishes sysadm's <c>system-state</c> event: at start, then every <see cref="SystemStateOptions.Interval"/>. Its args hold
/// <c>hostname</c>, <c>hostnamechanged</c> (only when the name changed since the last check) and <c>priority</c>, the string
/// <c>"N - Information|Warning|Critical|Urgent"</c> the sysadm tray reads (3 when the host name changed, else 0). The channel
/// replays the last event to each new subscriber.
/// </summary>
internal sealed class SystemStatePublisher(IProtocolEventPublisher events, IOptions<SystemStateOptions> options, TimeProvider time) : BackgroundService
{
    public const string Channel = "system-state";
    private string? _lastHostName;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.Interval, time);
        do
        {
            events.Publish(Channel, Check());
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    internal JsonObject Check()
    {
        var hostName = Environment.MachineName;
        var args = new JsonObject { ["hostname"] = hostName };
        var priority = 0;
        if (_lastHostName is not null && _lastHostName != hostName)
        {
            args["hostnamechanged"] = "true";
            priority = Math.Max(priority, 3);
        }

        _lastHostName = hostName;
        args["priority"] = DisplayPriority(priority);
        return args;
    }

    /// <summary>sysadm's priority text: 0–2 Information, 3–5 Warning, 6–8 Critical, 9–10 Urgent.</summary>
    internal static string DisplayPriority(int priority) => priority switch
    {
        <= 2 => string.Create(CultureInfo.InvariantCulture, $"{priority} - Information"),
        <= 5 => string.Create(CultureInfo.InvariantCulture, $"{priority} - Warning"),
        <= 8 => string.Create(CultureInfo.InvariantCulture, $"{priority} - Critical"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{priority} - Urgent"),
    };
}
