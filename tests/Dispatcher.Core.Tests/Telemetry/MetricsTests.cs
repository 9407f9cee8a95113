using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;

namespace Dispatcher.Tests.Telemetry;

/// <summary>The instruments of the "Dispatcher" meter, measured by a listener on this dispatcher's own meter factory.</summary>
public sealed class MetricsTests
{
    [Fact]
    public async Task JobsQueueAndJournal_AreMeasured()
    {
        var directory = Directory.CreateTempSubdirectory("dispatcher-metrics-");
        try
        {
            var services = new ServiceCollection();
            services.AddMetrics();
            services.AddDispatcher(o =>
            {
                o.DataDirectory = directory.FullName;
                o.FlushToDisk = false;
            });
            var provider = services.BuildServiceProvider();
            var factory = provider.GetRequiredService<IMeterFactory>();
            var measurements = new ConcurrentQueue<(string Instrument, double Value, Dictionary<string, object?> Tags)>();
            using var listener = new MeterListener();
            listener.InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == "Dispatcher" && ReferenceEquals(instrument.Meter.Scope, factory))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            };
            listener.SetMeasurementEventCallback<long>((i, v, tags, _) => measurements.Enqueue((i.Name, v, Tags(tags))));
            listener.SetMeasurementEventCallback<int>((i, v, tags, _) => measurements.Enqueue((i.Name, v, Tags(tags))));
            listener.SetMeasurementEventCallback<double>((i, v, tags, _) => measurements.Enqueue((i.Name, v, Tags(tags))));
            listener.Start();
            var dispatcher = provider.GetRequiredService<IDispatcher>();

            await dispatcher.EnqueueAsync(new JobRequest("ok", ["true"]));
            await dispatcher.EnqueueAsync(new JobRequest("bad", ["false"]));
            await Assert.ThrowsAsync<JobRejectedException>(async () => await dispatcher.EnqueueAsync(new JobRequest("nowhere", ["true"]) { Queue = "no-such-queue" }));
            await dispatcher.WaitForCompletionAsync("ok").WaitAsync(TestDispatcher.Patience);
            await dispatcher.WaitForCompletionAsync("bad").WaitAsync(TestDispatcher.Patience);

            // Stopping the dispatcher waits for the journal to commit what it was given (the finished records are not awaited).
            await provider.DisposeAsync();
            var all = measurements.ToArray();
            double Sum(string name, string? outcome = null) => all
                .Where(m => m.Instrument == name && (outcome is null || Equals(m.Tags.GetValueOrDefault("dispatcher.job.outcome"), outcome)))
                .Sum(m => m.Value);
            Assert.Equal(2, Sum("dispatcher.jobs.started"));
            Assert.Equal(1, Sum("dispatcher.jobs.finished", "Succeeded"));
            Assert.Equal(1, Sum("dispatcher.jobs.finished", "Failed"));
            Assert.Equal(1, Sum("dispatcher.jobs.rejected"));
            Assert.Equal(0, Sum("dispatcher.queue.length"));
            Assert.Equal(2, all.Count(m => m.Instrument == "dispatcher.job.duration"));
            Assert.Equal(2, all.Count(m => m.Instrument == "dispatcher.job.cpu_time"));
            // `true` and `false` stay below the host's own peak, where the kernel's figure is not theirs: not recorded.
            Assert.DoesNotContain(all, m => m.Instrument == "dispatcher.job.peak_memory");
            Assert.All(all.Where(m => m.Instrument == "dispatcher.jobs.started"), m => Assert.Equal("no_queue", m.Tags["dispatcher.queue.name"]));

            // Every journal record went through a commit: enqueued, started, the command's process and finished, for both jobs.
            Assert.Equal(8, Sum("dispatcher.journal.commit.records"));
            Assert.Equal(all.Count(m => m.Instrument == "dispatcher.journal.commit.records"), all.Count(m => m.Instrument == "dispatcher.journal.commit.duration"));
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    private static Dictionary<string, object?> Tags(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var result = new Dictionary<string, object?>();
        foreach (var (key, value) in tags)
        {
            result[key] = value;
        }

        return result;
    }
}
