using Dispatcher.Scheduling;

namespace Dispatcher.Tests.Scheduling;

/// <summary>The scheduler's chunked priority set against a sorted list of the same jobs, through splits, merges and removals.</summary>
public sealed class JobSetTests
{
    [Theory]
    [InlineData(1, 5)]
    [InlineData(2, 3)]
    [InlineData(3, 1000)]
    public void RandomAddsAndRemoves_KeepPriorityThenSubmissionOrder(int seed, int priorities)
    {
        var random = new Random(seed);
        var set = new JobSet();
        var model = new List<Job>();
        long sequence = 0;
        for (var step = 0; step < 20_000; step++)
        {
            var op = random.Next(10);
            if (op < 6 || model.Count == 0)
            {
                // Mostly new jobs, sometimes one with an old sequence (a retried or released job keeps its place).
                var job = new Job(random.Next(priorities)) { Sequence = random.Next(8) == 0 && sequence > 0 ? -random.NextInt64(1, 1_000_000) : ++sequence };
                if (model.Exists(j => j.Priority == job.Priority && j.Sequence == job.Sequence))
                {
                    continue;
                }

                Assert.True(set.Add(job));
                model.Add(job);
            }
            else if (op < 8)
            {
                var job = model[random.Next(model.Count)];
                Assert.True(set.Remove(job));
                Assert.False(set.Remove(job));
                model.Remove(job);
            }
            else
            {
                var first = model.OrderBy(j => j, Order.Instance).First();
                Assert.Same(first, set.Min);
                Assert.True(set.Remove(first));
                model.Remove(first);
            }

            if (step % 997 == 0)
            {
                var expected = model.OrderBy(j => j, Order.Instance).ToList();
                Assert.Equal(expected, set.ToList());
                Assert.Equal(expected.Count, set.Count);
                if (expected.Count > 0)
                {
                    Assert.Same(expected[^1], set.Max);
                    var k = random.Next(expected.Count);
                    Assert.Equal(k, set.IndexOf(expected[k]));
                }
            }
        }

        Assert.False(set.Remove(new Job(0) { Sequence = long.MaxValue }));
        Assert.Equal(-1, set.IndexOf(new Job(0) { Sequence = long.MaxValue }));
    }

    [Fact]
    public void ManyEqualPriorities_DrainInSubmissionOrder()
    {
        var set = new JobSet();
        var jobs = Enumerable.Range(1, 10 * JobSet.MaxChunk).Select(i => new Job(7) { Sequence = i }).ToList();
        foreach (var job in jobs.AsEnumerable().Reverse())
        {
            set.Add(job);
        }

        var drained = new List<ScheduledJob>();
        while (set.Min is { } first)
        {
            drained.Add(first);
            set.Remove(first);
        }

        Assert.Equal(jobs, drained);
        Assert.Null(set.Max);
    }

    private sealed class Job(int priority) : ScheduledJob("j", "q", priority);

    private sealed class Order : IComparer<Job>
    {
        public static readonly Order Instance = new();

        public int Compare(Job? x, Job? y) => JobSet.Compare(x!, y!);
    }
}
