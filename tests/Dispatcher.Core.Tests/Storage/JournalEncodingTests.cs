using System.Buffers;
using System.Text;
using Dispatcher.Storage;

namespace Dispatcher.Tests.Storage;

/// <summary>
/// The journal writes its most frequent records (a job's start, process and end, a plain enqueue) straight to JSON, without the
/// general <see cref="StoredRecord"/>: the bytes must be exactly those the general path writes, so that nothing about the file
/// depends on which path wrote a record.
/// </summary>
public sealed class JournalEncodingTests
{
    private static readonly DateTimeOffset[] Times =
    [
        new(2026, 11, 30, 7, 32, 57, TimeSpan.Zero),
        new DateTimeOffset(2026, 11, 30, 7, 32, 57, TimeSpan.Zero).AddTicks(6781657),
        new DateTimeOffset(1999, 1, 2, 3, 4, 5, TimeSpan.FromMinutes(330)).AddTicks(1000),
        new DateTimeOffset(2040, 12, 31, 23, 59, 59, TimeSpan.FromHours(-8)).AddTicks(9_999_999),
    ];

    private static readonly string[] Texts =
    [
        "a", "c12345", "with \"quotes\" and \\backslashes\\", "tab\there\nnewline\r", "nul\0and\u0001control\u007f",
        "unicode é ü 中文 🎉", "<html>&amp;'</html>", "surrogate \ud83d\ude00 pair", new string('x', 5000),
    ];

    public static TheoryData<string> Cases() => new(Enumerable.Range(0, Records().Count).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)));

    [Theory]
    [MemberData(nameof(Cases))]
    public void DirectEncoding_IsByteForByteTheGeneralOne_AndDecodesBack(string index)
    {
        var record = Records()[int.Parse(index, System.Globalization.CultureInfo.InvariantCulture)];
        var direct = new ArrayBufferWriter<byte>();
        FileJobStore.Encode(record, direct);
        var general = new ArrayBufferWriter<byte>();
        FileJobStore.EncodeThroughStoredRecord(record, general);

        Assert.Equal(Encoding.UTF8.GetString(general.WrittenSpan), Encoding.UTF8.GetString(direct.WrittenSpan));
        Assert.True(FileJobStore.TryDecode(direct.WrittenSpan[..^1], out var decoded, out var problem), problem);
        Assert.Equal(Encoding.UTF8.GetString(general.WrittenSpan), Encoding.UTF8.GetString(FileJobStore.Encode(decoded)));
    }

    public static TheoryData<string> OddTexts() => new(
        "lone \ud800 high", "lone \udc00 low", "\udbff\udbff", "\ud83d\ud83d\ud83d", "\u2028\u2029\u0085\ufeff\ufffe\uffff\ufffd", "", " ",
        "\u001b[0m\b\f\v", "e\u0301", "+`'\u00a0</script>", new string('\u00ff', 70_000));

    /// <summary>
    /// Values no request that passes validation holds, or that do not survive decoding (a lone surrogate becomes U+FFFD, an empty
    /// id or boot is refused): whatever the journal is given, both paths must still write the same bytes.
    /// </summary>
    [Theory]
    [MemberData(nameof(OddTexts))]
    public void DirectEncoding_OfOddValues_IsStillTheGeneralOne(string text)
    {
        var time = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.FromHours(14)).AddTicks(1);
        JobStoreRecord[] records =
        [
            new JobStartedRecord(text, time),
            new JobStartedRecord(text, DateTimeOffset.MinValue),
            new JobStartedRecord(text, DateTimeOffset.MaxValue),
            new JobProcessStartedRecord(text, int.MaxValue, int.MaxValue, ulong.MaxValue, null!),
            new JobProcessStartedRecord(text, -1, -1, 0, string.Empty),
            new JobEnqueuedRecord(new JobRequest(text, [text, string.Empty]) { Queue = text, WorkingDirectory = text, StandardInput = text, IdempotencyKey = text, Priority = int.MinValue, Timeout = TimeSpan.MaxValue }, DateTimeOffset.MaxValue),
            new JobEnqueuedRecord(new JobRequest(text, [text]) { Queue = text, WorkingDirectory = string.Empty, StandardInput = string.Empty, IdempotencyKey = string.Empty, Timeout = TimeSpan.FromTicks(3) }, DateTimeOffset.MinValue),
            new JobEnqueuedRecord(new JobRequest(text, [null!]) { Queue = text, Labels = null, After = [] }, time),
            new JobFinishedRecord(new JobResult(text, text, [text, null!], JobOutcome.TimedOut,
                [new CommandResult(0, text, text, -1, -1, time, time) { Usage = new CommandUsage { UserCpuTime = TimeSpan.MaxValue, SystemCpuTime = TimeSpan.MinValue, PeakMemoryBytes = -1 } }],
                DateTimeOffset.MinValue, DateTimeOffset.MaxValue, time) { IdempotencyKey = text, Attempt = 0 }),
            new JobFinishedRecord(new JobResult(text, text, [text], (JobOutcome)42, [], time, null, time)),
        ];
        foreach (var record in records)
        {
            var direct = new ArrayBufferWriter<byte>();
            FileJobStore.Encode(record, direct);
            var general = new ArrayBufferWriter<byte>();
            FileJobStore.EncodeThroughStoredRecord(record, general);
            Assert.Equal(Encoding.UTF8.GetString(general.WrittenSpan), Encoding.UTF8.GetString(direct.WrittenSpan));
            Assert.True(general.WrittenSpan.SequenceEqual(direct.WrittenSpan));
        }
    }

    private static List<JobStoreRecord> Records()
    {
        var records = new List<JobStoreRecord>();
        foreach (var time in Times)
        {
            foreach (var text in Texts)
            {
                records.Add(new JobStartedRecord(text, time));
                records.Add(new JobProcessStartedRecord(text, 3, 4_000_000, ulong.MaxValue, text));
                records.Add(new JobEnqueuedRecord(new JobRequest(text, [text, "true", "sh -c \"echo $HOME\""]) { Queue = text }, time));
                records.Add(new JobFinishedRecord(new JobResult(text, text, [text, "true"], JobOutcome.Failed,
                    [
                        new CommandResult(0, text, text, 0, 0, time, time.AddTicks(1)),
                        new CommandResult(1, "true", text + "\n", 12, 1, time, time) { Usage = new CommandUsage { UserCpuTime = TimeSpan.FromTicks(12_345), SystemCpuTime = TimeSpan.Zero } },
                    ], time, time, time.AddSeconds(1))));
            }

            // A job's end record: every outcome, output that is kept as text or as base64, usage with and without the peak.
            foreach (var outcome in Enum.GetValues<JobOutcome>())
            {
                records.Add(new JobFinishedRecord(new JobResult("f-" + outcome, "q", ["true"], outcome,
                    [new CommandResult(0, "true", string.Empty, 0, 0, time, time) { Usage = new CommandUsage { UserCpuTime = TimeSpan.FromMilliseconds(1.5), SystemCpuTime = TimeSpan.FromTicks(9), PeakMemoryBytes = 1L << 40 } }],
                    time, time, time)));
            }

            records.Add(new JobFinishedRecord(new JobResult("unstarted", "q", ["a", "b"], JobOutcome.Skipped, [], time, null, time) { IdempotencyKey = "k\"é", Attempt = 3 }));
            records.Add(new JobFinishedRecord(new JobResult("nul", "q", ["x"], JobOutcome.Succeeded,
                [new CommandResult(0, "x", "\0\0\0\u0001\u0002 mostly control", long.MaxValue, int.MinValue, DateTimeOffset.MinValue, DateTimeOffset.MaxValue)], time, time, time)));

            // Through the general path in both encodings: labels, earlier attempts.
            records.Add(new JobFinishedRecord(new JobResult("labels", "q", ["true"], JobOutcome.Succeeded, [], time, time, time) { Labels = new Dictionary<string, string> { ["l"] = "v" } }));
            records.Add(new JobFinishedRecord(new JobResult("retried", "q", ["true"], JobOutcome.Succeeded, [], time, time, time)
            {
                Attempt = 2,
                PreviousAttempts = [new JobResult("retried", "q", ["true"], JobOutcome.Failed, [new CommandResult(0, "true", "out", 0, 1, time, time)], time, time, time)],
            }));

            records.Add(new JobProcessStartedRecord("p", 0, 1, 0, "boot"));
            records.Add(new JobEnqueuedRecord(new JobRequest("full", ["true"])
            {
                Queue = DispatcherQueues.PkgQueue,
                WorkingDirectory = "/tmp/wd \"x\"",
                Timeout = TimeSpan.FromMilliseconds(1500.25),
                RerunIfInterrupted = true,
                Priority = -3,
                StandardInput = "line 1\nline 2\0é",
                IdempotencyKey = "key-é",
            }, time));
            records.Add(new JobEnqueuedRecord(new JobRequest("tiny-timeout", ["true"]) { Timeout = TimeSpan.FromTicks(1), Priority = int.MaxValue }, time));
            records.Add(new JobEnqueuedRecord(new JobRequest("long-timeout", ["true"]) { Timeout = TimeSpan.FromDays(3650) / 7, After = [] }, time));

            // Through the general path in both encodings (a rarer field is set): still the same bytes.
            records.Add(new JobEnqueuedRecord(new JobRequest("env", ["true"]) { Environment = new Dictionary<string, string> { ["A"] = "b" } }, time));
            records.Add(new JobEnqueuedRecord(new JobRequest("labels", ["true"]) { Labels = new Dictionary<string, string> { ["l"] = "v" }, After = ["a"] }, time));
            records.Add(new JobEnqueuedRecord(new JobRequest("retry", ["true"]) { Retry = new RetryPolicy(2, TimeSpan.FromSeconds(1)), Delay = TimeSpan.FromSeconds(2) }, time));
            records.Add(new JobEnqueuedRecord(new JobRequest("argv", ["true"]) { ArgumentVectors = [["true"]], RunAs = "nobody", StartAt = time }, time));
            records.Add(new QueueStateRecord("q", 2, true, false));
        }

        return records;
    }
}
