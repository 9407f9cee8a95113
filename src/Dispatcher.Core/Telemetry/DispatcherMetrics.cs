using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Dispatcher.Telemetry;

/// <summary>The dispatcher's instruments, on the meter <see cref="MeterName"/>. Tags hold queue names and outcomes, never job ids.</summary>
internal sealed class DispatcherMetrics : IDisposable
{
    public const string MeterName = DispatcherTelemetry.MeterName;
    public const string QueueTag = "dispatcher.queue.name";
    public const string OutcomeTag = "dispatcher.job.outcome";

    private readonly Meter _meter;
    private readonly Counter<long> _started;
    private readonly Counter<long> _finished;
    private readonly Counter<long> _killed;
    private readonly Counter<long> _rejected;
    private readonly UpDownCounter<long> _queueLength;
    private readonly Histogram<double> _duration;
    private readonly Histogram<double> _cpuTime;
    private readonly Histogram<long> _peakMemory;
    private readonly Histogram<int> _commitRecords;
    private readonly Histogram<double> _commitDuration;

    public DispatcherMetrics(IMeterFactory? meterFactory)
    {
        _meter = meterFactory?.Create(MeterName) ?? new Meter(MeterName);
        _started = _meter.CreateCounter<long>("dispatcher.jobs.started", "{job}", "Jobs that started running.");
        _finished = _meter.CreateCounter<long>("dispatcher.jobs.finished", "{job}", "Jobs that finished, by outcome.");
        _killed = _meter.CreateCounter<long>("dispatcher.jobs.killed", "{job}", "Jobs killed on request.");
        _rejected = _meter.CreateCounter<long>("dispatcher.jobs.rejected", "{job}", "Jobs that were not accepted.");
        _queueLength = _meter.CreateUpDownCounter<long>("dispatcher.queue.length", "{job}", "Jobs waiting in a queue.");
        _duration = _meter.CreateHistogram<double>("dispatcher.job.duration", "s", "Time from a job's start to its end.");
        _cpuTime = _meter.CreateHistogram<double>("dispatcher.job.cpu_time", "s", "CPU time (user and system) a job's commands used.");
        _peakMemory = _meter.CreateHistogram<long>("dispatcher.job.peak_memory", "By", "The largest resident set size among a job's commands, where known (above the host's own).");
        _commitRecords = _meter.CreateHistogram<int>("dispatcher.journal.commit.records", "{record}", "Journal records written and flushed together (group commit).");
        _commitDuration = _meter.CreateHistogram<double>("dispatcher.journal.commit.duration", "s", "Time to write and flush one group of journal records.");
    }

    public void JournalCommitted(int records, TimeSpan duration)
    {
        _commitRecords.Record(records);
        _commitDuration.Record(duration.TotalSeconds);
    }

    public void Enqueued(string queue) => _queueLength.Add(1, new KeyValuePair<string, object?>(QueueTag, queue));

    public void Started(string queue)
    {
        var tag = new KeyValuePair<string, object?>(QueueTag, queue);
        _queueLength.Add(-1, tag);
        _started.Add(1, tag);
    }

    public void LeftQueueUnstarted(string queue) => _queueLength.Add(-1, new KeyValuePair<string, object?>(QueueTag, queue));

    public void Killed(string queue) => _killed.Add(1, new KeyValuePair<string, object?>(QueueTag, queue));

    public void Rejected() => _rejected.Add(1);

    public void Finished(string queue, JobOutcome outcome, TimeSpan? duration, CommandUsage? usage = null)
    {
        var tags = new TagList { { QueueTag, queue }, { OutcomeTag, outcome.ToString() } };
        _finished.Add(1, tags);
        if (duration is { } d)
        {
            _duration.Record(d.TotalSeconds, tags);
        }

        if (usage is not null)
        {
            _cpuTime.Record((usage.UserCpuTime + usage.SystemCpuTime).TotalSeconds, tags);
            if (usage.PeakMemoryBytes is { } peak)
            {
                _peakMemory.Record(peak, tags);
            }
        }
    }

    public void Dispose() => _meter.Dispose();
}
