using System.Text.Encodings.Web;
using System.Text.Json;
using Dispatcher;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Dispatcher.SampleHost;

/// <summary>OpenTelemetry and the <c>/healthz</c> report of the sample host.</summary>
internal static class Observability
{
    private static readonly JsonWriterOptions s_indented = new() { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>
    /// Traces (the dispatcher's spans and ASP.NET Core's request spans) and metrics (the dispatcher's meter). They go to an OTLP
    /// collector when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set, and to the console when <c>Telemetry:Console</c> is true;
    /// with neither, nothing is collected.
    /// </summary>
    public static void AddOpenTelemetry(WebApplicationBuilder builder)
    {
        var otlp = !string.IsNullOrEmpty(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        var console = builder.Configuration.GetValue<bool>("Telemetry:Console");
        if (!otlp && !console)
        {
            return;
        }

        var telemetry = builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("dispatcher-sample-host"))
            .WithTracing(tracing =>
            {
                tracing.AddSource(DispatcherTelemetry.ActivitySourceName).AddSource("Microsoft.AspNetCore");
                if (console)
                {
                    tracing.AddConsoleExporter();
                }
            })
            .WithMetrics(metrics =>
            {
                metrics.AddMeter(DispatcherTelemetry.MeterName);
                if (console)
                {
                    metrics.AddConsoleExporter();
                }
            });
        if (otlp)
        {
            // Reads OTEL_EXPORTER_OTLP_ENDPOINT (and OTEL_EXPORTER_OTLP_PROTOCOL, headers...) for traces and metrics.
            telemetry.UseOtlpExporter();
        }
    }

    /// <summary>Writes the health report as JSON: the overall status, then each check's status and description.</summary>
    public static async Task WriteHealthAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json; charset=utf-8";
        await using var json = new Utf8JsonWriter(context.Response.Body, s_indented);
        json.WriteStartObject();
        json.WriteString("status", report.Status.ToString());
        json.WriteStartObject("checks");
        foreach (var (name, entry) in report.Entries)
        {
            json.WriteStartObject(name);
            json.WriteString("status", entry.Status.ToString());
            json.WriteString("description", entry.Description);
            json.WriteEndObject();
        }

        json.WriteEndObject();
        json.WriteEndObject();
        await json.FlushAsync(context.RequestAborted);
    }
}
