using System.Collections.Concurrent;
using Dispatcher.Internal;
using Dispatcher.Running;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Dispatcher.Tests.Telemetry;

/// <summary>
/// The levels of the per-job log lines: at the usual Information level a job that ends gives one line (JobFinished, with its
/// outcome, exit code and duration); its enqueue and start are Debug. A console line per job costs the host CPU on the path of
/// every job (benchmarks/ANALYSIS.md), and these two say nothing the finished line and the events do not.
/// </summary>
public sealed class LogLevelTests
{
    [Fact]
    public async Task AJobThatEnds_LogsOneInformationLine_EnqueueAndStartAreDebug()
    {
        var logger = new CollectingLogger();
        var runner = JobRunners.CreateDefault();
        await using (var dispatcher = new DefaultDispatcher(Options.Create(new DispatcherOptions()), runner, TimeProvider.System, logger))
        {
            await dispatcher.StartAsync().WaitAsync(TestDispatcher.Patience);
            await dispatcher.EnqueueAsync(new JobRequest("logged", ["true"]));
            var result = await dispatcher.WaitForCompletionAsync("logged").WaitAsync(TestDispatcher.Patience);
            Assert.Equal(JobOutcome.Succeeded, result.Outcome);
        }

        (runner as IDisposable)?.Dispose();
        var lines = logger.Entries.Where(e => e.Message.Contains("logged", StringComparison.Ordinal)).ToList();
        Assert.Equal(LogLevel.Debug, Assert.Single(lines, e => e.EventId.Name == "JobEnqueued").Level);
        Assert.Equal(LogLevel.Debug, Assert.Single(lines, e => e.EventId.Name == "JobStarted").Level);
        var finished = Assert.Single(lines, e => e.Level >= LogLevel.Information);
        Assert.Equal("JobFinished", finished.EventId.Name);
        Assert.Contains("Succeeded", finished.Message, StringComparison.Ordinal);
    }

    private sealed class CollectingLogger : ILogger<DefaultDispatcher>
    {
        public ConcurrentQueue<(LogLevel Level, EventId EventId, string Message)> Entries { get; } = new();

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Enqueue((logLevel, eventId, formatter(state, exception)));
    }
}
