using Dispatcher.Events;
using Dispatcher.Testing;

namespace Dispatcher.Consumer.Tests;

/// <summary>
/// Code a package user writes against <see cref="IDispatcher"/> (here a status board), and its unit tests, which build the
/// dispatcher's models with <see cref="DispatcherModelFactory"/> and fake the dispatcher: no process is started.
/// </summary>
public sealed class JobBoardTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 29, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Describe_APendingJob_SaysWhereItWaits()
    {
        var job = DispatcherModelFactory.JobInfo("build-7", ["make"], queue: "builds", state: JobState.Pending, queuePosition: 2, enqueuedAt: T0);
        var board = new JobBoard(new FakeDispatcher { Jobs = { job } });

        Assert.Equal("build-7 is pending in builds at position 2", board.Describe("build-7"));
    }

    [Fact]
    public void Describe_AFinishedJob_GivesItsOutcomeAndExitCode()
    {
        var result = new JobResult("build-6", "builds", ["make"], JobOutcome.Failed,
            [new CommandResult(0, "make", "error\n", 0, 2, T0, T0.AddSeconds(3))], T0, T0, T0.AddSeconds(3));
        var board = new JobBoard(new FakeDispatcher { Results = { result } });

        Assert.Equal("build-6 failed with exit code 2", board.Describe("build-6"));
        Assert.Equal("build-5 is unknown", board.Describe("build-5"));
    }

    [Fact]
    public void Line_OfEachEvent()
    {
        var job = DispatcherModelFactory.JobInfo("build-7", ["make"], state: JobState.Running, startedAt: T0, currentCommand: 0);
        var result = new JobResult("build-7", "no_queue", ["make"], JobOutcome.Succeeded, [], T0, T0, T0.AddSeconds(1));
        DispatcherEvent[] events =
        [
            DispatcherModelFactory.JobPending(job, T0),
            DispatcherModelFactory.JobStarted(job, T0),
            DispatcherModelFactory.JobCommandStarted("build-7", 0, "make", T0),
            DispatcherModelFactory.JobOutput("build-7", 0, "compiling\n", T0),
            DispatcherModelFactory.JobCommandFinished("build-7", 0, "make", 0, T0),
            DispatcherModelFactory.JobFinished(result),
        ];

        Assert.Equal(
            ["build-7 pending", "build-7 started", "build-7 $ make", "build-7 | compiling", "build-7 $ make -> 0", "build-7 succeeded"],
            events.Select(JobBoard.Line));
        Assert.Equal(T0.AddSeconds(1), events[^1].Timestamp);
    }

    /// <summary>The user's code under test.</summary>
    private sealed class JobBoard(IDispatcher dispatcher)
    {
        public static string Line(DispatcherEvent e) => e switch
        {
            JobPendingEvent p => $"{p.JobId} pending",
            JobStartedEvent s => $"{s.JobId} started",
            JobCommandStartedEvent c => $"{c.JobId} $ {c.Command}",
            JobOutputEvent o => $"{o.JobId} | {o.Text.TrimEnd()}",
            JobCommandFinishedEvent f => $"{f.JobId} $ {f.Command} -> {f.ExitCode}",
            JobFinishedEvent f => $"{f.JobId} {f.Result.Outcome.ToString().ToLowerInvariant()}",
            _ => e.JobId,
        };

        public string Describe(string id) =>
            dispatcher.GetJob(id) is { } job ? $"{job.Id} is {job.State.ToString().ToLowerInvariant()} in {job.Queue} at position {job.QueuePosition}"
            : dispatcher.GetResult(id) is { } result ? $"{result.Id} {result.Outcome.ToString().ToLowerInvariant()} with exit code {result.ExitCode}"
            : $"{id} is unknown";
    }

    private sealed class FakeDispatcher : IDispatcher
    {
        public List<JobInfo> Jobs { get; } = [];

        public List<JobResult> Results { get; } = [];

        public IReadOnlyCollection<string> Queues => ["no_queue", "builds"];

        public ValueTask<JobInfo> EnqueueAsync(JobRequest request, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public IReadOnlyList<JobInfo> List() => Jobs;

        public JobInfo? GetJob(string jobId) => Jobs.Find(j => j.Id == jobId);

        public ValueTask<IReadOnlyList<string>> KillAsync(IEnumerable<string> jobIds, CancellationToken cancellationToken = default) =>
            ValueTask.FromResult<IReadOnlyList<string>>([]);

        public ValueTask<bool> KillAsync(string jobId, CancellationToken cancellationToken = default) => ValueTask.FromResult(false);

        public JobResult? GetResult(string jobId) => Results.Find(r => r.Id == jobId);

        public IReadOnlyList<JobResult> ListFinished() => Results;

        public Task<JobResult> WaitForCompletionAsync(string jobId, CancellationToken cancellationToken = default) =>
            Task.FromResult(GetResult(jobId) ?? throw new JobNotFoundException(jobId));

        public DispatcherSubscription Subscribe() => throw new NotSupportedException();

        public IReadOnlyList<QueueInfo> GetQueues() => [];

        public ValueTask<QueueInfo> AddQueueAsync(string name, int limit, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public ValueTask<QueueInfo> SetQueueLimitAsync(string name, int limit, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public ValueTask<QueueInfo> PauseQueueAsync(string name, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public ValueTask<QueueInfo> ResumeQueueAsync(string name, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public ValueTask<QueueInfo> DrainQueueAsync(string name, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public ValueTask<RecurrenceInfo> AddRecurrenceAsync(Recurrence recurrence, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public ValueTask<bool> RemoveRecurrenceAsync(string id, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public IReadOnlyList<RecurrenceInfo> ListRecurrences() => [];

        public ValueTask<JobLogChunk> ReadLogAsync(string jobId, long offset, int limit, CancellationToken cancellationToken = default) => throw new NotSupportedException();
    }
}
