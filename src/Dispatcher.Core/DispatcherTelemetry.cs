namespace Dispatcher;

/// <summary>Names under which the dispatcher publishes telemetry, for hosts that subscribe to it.</summary>
public static class DispatcherTelemetry
{
    /// <summary>
    /// The name of the dispatcher's <see cref="System.Diagnostics.Metrics.Meter"/> (for example
    /// <c>metrics.AddMeter(DispatcherTelemetry.MeterName)</c> with OpenTelemetry).
    /// </summary>
    public const string MeterName = "Dispatcher";
}
