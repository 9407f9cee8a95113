namespace Dispatcher;

/// <summary>Names under which the dispatcher publishes telemetry, for hosts that subscribe to it.</summary>
public static class DispatcherTelemetry
{
    /// <summary>
    /// The name of the dispatcher's <see cref="System.Diagnostics.Metrics.Meter"/> (for example
    /// <c>metrics.AddMeter(DispatcherTelemetry.MeterName)</c> with OpenTelemetry).
    /// </summary>
    public const string MeterName = "Dispatcher";

    /// <summary>
    /// The name of the dispatcher's <see cref="System.Diagnostics.ActivitySource"/> (for example
    /// <c>tracing.AddSource(DispatcherTelemetry.ActivitySourceName)</c> with OpenTelemetry). Each job is a trace of its own: a
    /// <c>dispatcher.job</c> span from enqueue to finish, linked to the span that was current when the job was enqueued, with one
    /// <c>dispatcher.command</c> child span per command. The enqueue itself is a <c>dispatcher.enqueue</c> span in the caller's trace.
    /// </summary>
    public const string ActivitySourceName = "Dispatcher";
}
