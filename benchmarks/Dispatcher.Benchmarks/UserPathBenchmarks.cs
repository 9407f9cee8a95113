using System.Diagnostics;
using System.Globalization;
using System.Text;
using static Dispatcher.Benchmarks.Stats;

namespace Dispatcher.Benchmarks;

/// <summary>
/// The path users run: the sample host process with a data directory (journal, fsync), jobs sent as one <c>run</c> over
/// WebSocket or REST, watched by WebSocket subscribers; against the C spawn loop ("limit") and the .NET Process loop,
/// in alternating rounds of this one run.
/// </summary>
internal static class UserPathBenchmarks
{
    /// <summary>
    /// Rounds of 1 000 jobs a host runs before it is measured. The host's CPU per job falls from about 1.5 ms in its first three
    /// rounds to about 0.6 ms from the fourth on (tiered JIT and PGO still compiling the per-job path; perf: 30 % of a third
    /// round's samples in the JIT thread), and a served host runs at the last tier.
    /// </summary>
    internal const int WarmRounds = 4;

    private static int _round;

    /// <summary>
    /// 1 000 serial `true` jobs in pkg_queue, one `run`, timed to the last `finished` event every subscriber sees. The judged rows
    /// run the sample host with containment off (<c>--Dispatcher:Containment:Mode=Off</c>, the library's default); the sample
    /// host's own default (containment <c>Auto</c>: a /bin/sh stub and a cgroup per command where cgroups are writable) is
    /// measured in the same rounds and reported beside them with its extra cost per job.
    /// </summary>
    public static async Task SerialAsync(Report report, int jobs, int rounds)
    {
        const string Off = "--Dispatcher:Containment:Mode=Off";
        var cases = new (string Transport, int Subscribers)[] { ("WebSocket", 1), ("REST", 1), ("WebSocket", 100), ("REST", 100) };
        var results = cases.ToDictionary(c => c, _ => new List<Round>());
        var c = new List<double>();
        var dotnet = new List<double>();
        var warm = Math.Min(jobs, 1000);

        // BENCH_BASELINE_HOST: the sample host dll of another build (for example main before a change), with the judged
        // composition (journal + fsync, containment off), measured in the same rounds over WebSocket and REST with 1 and 100 subscribers.
        var baselineDll = Environment.GetEnvironmentVariable("BENCH_BASELINE_HOST");
        var baselineName = Environment.GetEnvironmentVariable("BENCH_BASELINE_NAME") ?? "the baseline build";
        await using var beforeHost = baselineDll is null ? null : await HostProcess.StartAsync(baselineDll, durable: true, Off);
        var before = cases.ToDictionary(c => c, _ => new List<Round>());

        var breakdown = new List<(string What, HostProcess Host, List<Round> Rounds)>();
        await using (var host = await HostProcess.StartAsync(durable: true, Off))
        await using (var containedHost = await HostProcess.StartAsync(durable: true))
        await using (var memoryHost = await HostProcess.StartAsync(durable: false, Off))
        await using (var noFsyncHost = await HostProcess.StartAsync(durable: true, Off, "--Dispatcher:FlushToDisk=false"))
        {
            breakdown.Add(("the sample host's default containment (Auto: where cgroups are writable, a /bin/sh stub and a cgroup per command), journal + fsync", containedHost, []));
            breakdown.Add(("containment off, no data directory (in memory)", memoryHost, []));
            breakdown.Add(("containment off, journal without fsync", noFsyncHost, []));

            // Warm-up (not reported): a served host runs its per-job path at the last JIT tier; see WarmRounds.
            foreach (var h in new[] { host, containedHost, memoryHost, noFsyncHost }.Concat(beforeHost is null ? [] : [beforeHost]))
            {
                for (var i = 0; i < WarmRounds; i++)
                {
                    await RoundAsync(h, i % 2 == 0 ? "WebSocket" : "REST", 1, warm, "pkg_queue", measureLatency: false);
                }
            }

            await RoundAsync(host, "WebSocket", 100, Math.Min(jobs, 300), "pkg_queue", measureLatency: false);
            _ = await SpawnLimit.CLoopAsync(jobs / 4, 1);
            _ = await SpawnLimit.ProcessLoopAsync(jobs / 4, 1);
            for (var r = 0; r < rounds; r++)
            {
                if (await SpawnLimit.CLoopAsync(jobs, 1) is { } limit)
                {
                    c.Add(limit);
                }

                dotnet.Add(await SpawnLimit.ProcessLoopAsync(jobs, 1));
                foreach (var k in cases)
                {
                    // The baseline build goes first in every other round, so that neither build always follows the other.
                    if (beforeHost is not null && r % 2 == 1)
                    {
                        before[k].Add(await RoundAsync(beforeHost, k.Transport, k.Subscribers, jobs, "pkg_queue", measureLatency: false));
                    }

                    results[k].Add(await RoundAsync(host, k.Transport, k.Subscribers, jobs, "pkg_queue", measureLatency: false));
                    if (beforeHost is not null && r % 2 == 0)
                    {
                        before[k].Add(await RoundAsync(beforeHost, k.Transport, k.Subscribers, jobs, "pkg_queue", measureLatency: false));
                    }
                }

                foreach (var (_, h, list) in breakdown)
                {
                    list.Add(await RoundAsync(h, "WebSocket", 1, jobs, "pkg_queue", measureLatency: false));
                }
            }
        }

        var cRate = c.Count > 0 ? Median(c) : double.NaN;
        var pRate = Median(dotnet);
        string Baseline() => double.IsNaN(cRate)
            ? $"no C compiler; .NET Process loop {F(pRate, 0)} jobs/s"
            : $"limit (C posix_spawn loop) {F(cRate, 0)} jobs/s; .NET Process loop {F(pRate, 0)} jobs/s";
        string Ratio(double rate) => double.IsNaN(cRate) ? $"{F(rate / pRate, 2)}× the Process loop" : $"{F(rate / cRate, 2)}× limit, {F(rate / pRate, 2)}× Process loop";
        double CpuPerJob(List<Round> rs) => rs.Average(x => x.HostCpu.TotalMilliseconds * 1000 / jobs);
        double SwitchesPerJob(List<Round> rs) => rs.Average(x => (double)x.ContextSwitches / jobs);
        string Rounds(List<Round> rs) => string.Join("/", rs.Select(x => F(x.Rate, 0)));
        foreach (var k in cases)
        {
            var rs = results[k];
            var rate = Median(rs.Select(x => x.Rate));
            var lost = rs.Sum(x => x.Lost);
            var disorder = rs.Sum(x => x.OutOfOrder);
            report.Add($"user's path: sample host process, journal + fsync, containment off, {jobs} serial `true` in pkg_queue as one `run` over {k.Transport}, {k.Subscribers} subscriber{(k.Subscribers > 1 ? "s" : string.Empty)}",
                $"{F(rate, 0)} jobs/s", Baseline(), Ratio(rate), "≥ 0.8× limit, 0 lost", !double.IsNaN(cRate) && rate / cRate >= 0.8 && lost == 0,
                $"to the last `finished` at every subscriber; rounds {Rounds(rs)}, C {string.Join("/", c.Select(x => F(x, 0)))}, Process {string.Join("/", dotnet.Select(x => F(x, 0)))}; "
                + $"{lost} lost, {disorder} out of order; host CPU {F(CpuPerJob(rs), 0)} µs per job, {F(SwitchesPerJob(rs), 1)} context switches per job");
        }

        var judged = results[cases[0]];
        var judgedRate = Median(judged.Select(x => x.Rate));
        foreach (var (what, _, rs) in breakdown)
        {
            var rate = Median(rs.Select(x => x.Rate));
            var extra = what.StartsWith("the sample host's default", StringComparison.Ordinal)
                ? $"; against containment off in the same rounds: +{F(CpuPerJob(rs) - CpuPerJob(judged), 0)} µs of host CPU and +{F((1e6 / rate) - (1e6 / judgedRate), 0)} µs of time per job"
                : string.Empty;
            report.Add($"user's path, the same over WebSocket with 1 subscriber, {what}", $"{F(rate, 0)} jobs/s", Baseline(), Ratio(rate), "(breakdown)", null,
                $"rounds {Rounds(rs)}; host CPU {F(CpuPerJob(rs), 0)} µs per job, {F(SwitchesPerJob(rs), 1)} context switches per job{extra}; {rs.Sum(x => x.Lost)} lost");
        }

        foreach (var ((transport, subscribers), rs) in before)
        {
            if (rs.Count == 0)
            {
                continue;
            }

            var rate = Median(rs.Select(x => x.Rate));
            var now = results[(transport, subscribers)];
            report.Add($"user's path, the same over {transport} with {subscribers} subscriber{(subscribers > 1 ? "s" : string.Empty)}, journal + fsync, containment off, {baselineName}", $"{F(rate, 0)} jobs/s", Baseline(), Ratio(rate), "(before/after)", null,
                $"rounds {Rounds(rs)}; host CPU {F(CpuPerJob(rs), 0)} µs per job, {F(SwitchesPerJob(rs), 1)} context switches per job; this build in the same rounds: {F(Median(now.Select(x => x.Rate)), 0)} jobs/s, {F(CpuPerJob(now), 0)} µs per job, {F(SwitchesPerJob(now), 1)} context switches per job"
                + $"; load {File.ReadAllText("/proc/loadavg").Trim()}");
        }
    }

    /// <summary>
    /// A burst of jobs (one `run` over REST into a queue of limit 8) to 10, 100 and 1 000 WebSocket subscribers; the judged
    /// 100-subscriber burst three times (its p99 moved 18.5–76 ms between runs of the same code), and with BENCH_BASELINE_HOST
    /// each burst also on that build, alternating.
    /// </summary>
    public static async Task FanOutAsync(Report report, int jobs, int[] subscriberCounts)
    {
        const string Queue = "--Dispatcher:Queues:bench8:MaxConcurrency=8";
        await using var host = await HostProcess.StartAsync(durable: true, Queue);
        var baselineDll = Environment.GetEnvironmentVariable("BENCH_BASELINE_HOST");
        var baselineName = Environment.GetEnvironmentVariable("BENCH_BASELINE_NAME") ?? "the baseline build";
        await using var beforeHost = baselineDll is null ? null : await HostProcess.StartAsync(baselineDll, durable: true, Queue);

        // Warm-up at 10 and at 100 subscribers: a profile of the 100-subscriber round after a 10-subscriber warm-up alone had 22 %
        // of the host's samples in the JIT compiling the fan-out path (a long-running host has that code at its last tier).
        foreach (var h in new[] { host }.Concat(beforeHost is null ? [] : [beforeHost]))
        {
            await RoundAsync(h, "REST", 10, jobs, "bench8", measureLatency: true);
            await RoundAsync(h, "REST", 100, jobs, "bench8", measureLatency: true);
        }

        var one = await RoundAsync(host, "REST", 1, jobs, "bench8", measureLatency: true);

        // BENCH_FANOUT_SUBSCRIBERS=1000 (comma-separated): only these subscriber counts (a before/after check of one of them).
        if (Environment.GetEnvironmentVariable("BENCH_FANOUT_SUBSCRIBERS") is { Length: > 0 } only)
        {
            subscriberCounts = [.. only.Split(',').Select(x => int.Parse(x, CultureInfo.InvariantCulture))];
        }

        foreach (var n in subscriberCounts)
        {
            var rs = new List<Round>();
            var before = new List<Round>();
            var rounds = Environment.GetEnvironmentVariable("BENCH_FANOUT_ROUNDS") is { Length: > 0 } r0 ? int.Parse(r0, CultureInfo.InvariantCulture) : n == 100 ? 3 : 1;
            for (var i = 0; i < rounds; i++)
            {
                // With a baseline build, the two take turns going first.
                if (beforeHost is not null && i % 2 == 1)
                {
                    before.Add(await RoundAsync(beforeHost, "REST", n, jobs, "bench8", measureLatency: true));
                }

                rs.Add(await RoundAsync(host, "REST", n, jobs, "bench8", measureLatency: true));
                if (beforeHost is not null && i % 2 == 0)
                {
                    before.Add(await RoundAsync(beforeHost, "REST", n, jobs, "bench8", measureLatency: true));
                }
            }

            // The round of median p99 is reported; the others are in the note.
            var r = rs.OrderBy(x => x.P99).ElementAt(rs.Count / 2);
            var extraCpu = r.HostCpu - one.HostCpu;
            var extraFrames = r.Frames - one.Frames;
            var cpuPerFrame = extraFrames > 0 ? extraCpu.TotalMilliseconds * 1000 / extraFrames : double.NaN;
            var lost = rs.Sum(x => x.Lost);
            var disorder = rs.Sum(x => x.OutOfOrder);
            report.Add($"events: burst of {jobs} jobs (one `run`, queue limit 8) to {n} WebSocket subscribers, sample host process with journal",
                $"{lost} lost, {disorder} out of order; delivery p50 {F(r.P50, 1)} ms, p99 {F(r.P99, 1)} ms",
                $"1 subscriber: p50 {F(one.P50, 1)} ms, p99 {F(one.P99, 1)} ms", $"{F(r.P99 / one.P99, 1)}× at p99",
                "0 lost, order kept, p99 ≤ 50 ms", lost == 0 && disorder == 0 && r.P99 <= 50,
                (rs.Count > 1 ? $"p99 of the rounds {string.Join("/", rs.Select(x => F(x.P99, 1)))} ms (median reported); " : string.Empty)
                + $"the benchmark's own GC paused {string.Join("/", rs.Select(x => F(x.ClientGcPause.TotalMilliseconds, 0)))} ms ({string.Join("/", rs.Select(x => x.ClientGen2))} gen-2) in those rounds; "
                + (before.Count > 0 ? $"{baselineName} in alternating rounds: p99 {string.Join("/", before.Select(x => F(x.P99, 1)))} ms, {before.Sum(x => x.Lost)} lost, host CPU {string.Join("/", before.Select(x => F(x.HostCpu.TotalSeconds, 2)))} s, frames in {string.Join("/", before.Select(x => F(x.Elapsed.TotalSeconds, 1)))} s (this build: host CPU {string.Join("/", rs.Select(x => F(x.HostCpu.TotalSeconds, 2)))} s, frames in {string.Join("/", rs.Select(x => F(x.Elapsed.TotalSeconds, 1)))} s); load {File.ReadAllText("/proc/loadavg").Trim()}; " : string.Empty)
                + $"{r.Frames} frames in {F(r.Elapsed.TotalSeconds, 1)} s; host CPU {F(r.HostCpu.TotalSeconds, 2)} s (1 subscriber: {F(one.HostCpu.TotalSeconds, 2)} s), "
                + $"{F(cpuPerFrame, 1)} µs per extra delivered frame; host RSS peak +{F(r.RssGrowth / 1048576.0, 1)} MB ({F(r.RssGrowth / 1024.0 / n, 1)} KiB per subscriber); latency = receipt − `time_finished`");
        }
    }

    /// <summary>`warmup`: one host's CPU per job in successive rounds of 1 000 jobs (WebSocket, 1 subscriber), with the load.</summary>
    public static async Task WarmupCurveAsync(string[] hostSettings)
    {
        var dll = Environment.GetEnvironmentVariable("BENCH_HOST");
        await using var host = dll is null ? await HostProcess.StartAsync(true, hostSettings) : await HostProcess.StartAsync(dll, true, hostSettings);
        for (var i = 0; i < 12; i++)
        {
            var r = await OneRoundAsync(host, 1000);
            Console.WriteLine($"round {i}: {F(r.Rate, 0)} jobs/s, host CPU {F(r.HostCpu.TotalMilliseconds, 0)} µs per job, load {File.ReadAllText("/proc/loadavg").Trim()}");
        }
    }

    internal static Task WarmAsync(HostProcess host, int jobs) => RoundAsync(host, "WebSocket", 1, jobs, "pkg_queue", measureLatency: false);

    internal static Task<Round> OneRoundAsync(HostProcess host, int jobs) => RoundAsync(host, "WebSocket", 1, jobs, "pkg_queue", measureLatency: false);

    internal static Task<Round> BurstRoundAsync(HostProcess host, int jobs, int subscribers) => RoundAsync(host, "REST", subscribers, jobs, "bench8", measureLatency: true);

    internal sealed record Round(double Rate, TimeSpan Elapsed, long Lost, long OutOfOrder, long Frames, double P50, double P99, TimeSpan HostCpu, long RssGrowth)
    {
        /// <summary>The benchmark's own GC pauses during the round (its clients' receipt times include them) and its gen-2 collections.</summary>
        public TimeSpan ClientGcPause { get; init; }

        public int ClientGen2 { get; init; }

        /// <summary>The host's threads' context switches (voluntary and not) during the round: its wake-ups and thread hops.</summary>
        public long ContextSwitches { get; init; }
    }

    /// <summary>
    /// One round: <paramref name="subscribers"/> connections subscribe; one `run` carries <paramref name="jobs"/> jobs of `true`
    /// (sent on the first subscriber's connection over WebSocket, or as a PUT over REST); the round ends when every subscriber
    /// has seen every job's `finished` event (or after 5 minutes: then the missing events count as lost).
    /// </summary>
    private static async Task<Round> RoundAsync(HostProcess host, string transport, int subscribers, int jobs, string queue, bool measureLatency)
    {
        var prefix = $"u{Interlocked.Increment(ref _round)}-";
        var subs = new List<Subscriber>(subscribers);
        for (var i = 0; i < subscribers; i++)
        {
            var client = await host.ConnectAsync();
            await client.SubscribeAsync();
            subs.Add(new Subscriber(client, prefix, jobs, measureLatency));
        }

        var body = new StringBuilder("{\"action\":\"run\"");
        for (var i = 0; i < jobs; i++)
        {
            body.Append(CultureInfo.InvariantCulture, $",\"{prefix}{i}\":{{\"commands\":\"true\",\"queue\":\"{queue}\"}}");
        }

        body.Append('}');
        GC.Collect();
        var rssBefore = host.RssBytes();
        var rssPeak = rssBefore;
        using var stop = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                rssPeak = Math.Max(rssPeak, host.RssBytes());
                await Task.Delay(5);
            }
        });
        var cpu0 = host.Cpu();
        var switches0 = host.ContextSwitches();
        var pause0 = GC.GetTotalPauseDuration();
        var gen2 = GC.CollectionCount(2);
        var readers = subs.Select(s => Task.Run(s.ReadAsync)).ToArray();
        var t0 = Stopwatch.GetTimestamp();
        string reply;
        if (transport == "WebSocket")
        {
            await subs[0].Client.SendAsync($"{{\"namespace\":\"rpc\",\"name\":\"dispatcher\",\"id\":\"run\",\"args\":{body}}}");
            reply = await subs[0].Reply.Task.WaitAsync(TimeSpan.FromMinutes(2));
        }
        else
        {
            using var response = await host.Http.PutAsync("/rpc/dispatcher", new StringContent(body.ToString(), Encoding.UTF8, "application/json"));
            reply = await response.Content.ReadAsStringAsync();
        }

        if (!reply.Contains("\"started\"", StringComparison.Ordinal) || reply.Contains("\"rejected\"", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"run was not accepted: {reply[..Math.Min(reply.Length, 500)]}");
        }

        try
        {
            await Task.WhenAll(readers).WaitAsync(TimeSpan.FromMinutes(5));
        }
        catch (TimeoutException)
        {
            // Counted as lost below.
        }

        var end = subs.Max(s => s.Done);
        var elapsed = Stopwatch.GetElapsedTime(t0, end == 0 ? Stopwatch.GetTimestamp() : end);
        var cpu = host.Cpu() - cpu0;
        var switches = host.ContextSwitches() - switches0;
        await stop.CancelAsync();
        await sampler;
        foreach (var s in subs)
        {
            s.Client.Dispose();
        }

        var latencies = subs.SelectMany(s => s.Latencies).ToList();
        return new Round(jobs / elapsed.TotalSeconds, elapsed, subs.Sum(s => (2L * jobs) - s.Pending - s.Finished), subs.Sum(s => s.OutOfOrder),
            subs.Sum(s => s.Frames), measureLatency ? Median(latencies) : double.NaN, measureLatency ? Percentile(latencies, 99) : double.NaN, cpu, rssPeak - rssBefore)
        {
            ClientGcPause = GC.GetTotalPauseDuration() - pause0,
            ClientGen2 = GC.CollectionCount(2) - gen2,
            ContextSwitches = switches,
        };
    }

    /// <summary>
    /// A subscriber that checks what it receives: every job's `pending` in request order, no `running` or `finished` before
    /// that job's `pending`, exactly one `finished` per job.
    /// </summary>
    private sealed class Subscriber(WireClient client, string prefix, int jobs, bool measureLatency)
    {
        private readonly byte[] _state = new byte[jobs]; // 0 none, 1 pending seen, 2 finished seen

        public WireClient Client { get; } = client;

        public TaskCompletionSource<string> Reply { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Pending { get; private set; }

        public int Finished { get; private set; }

        public int OutOfOrder { get; private set; }

        public long Frames { get; private set; }

        public long Done { get; private set; }

        public List<double> Latencies { get; } = measureLatency ? new(jobs) : [];

        private static readonly byte[] EventsNamespace = "\"namespace\":\"events\""u8.ToArray();
        private static readonly byte[] PendingStart = "{\"args\":{\"state\":\"pending\""u8.ToArray();
        private static readonly byte[] FinishedStart = "{\"args\":{\"state\":\"finished\""u8.ToArray();
        private static readonly byte[] TimeFinished = "\"time_finished\":\""u8.ToArray();
        private readonly byte[] _processId = Encoding.UTF8.GetBytes("\"process_id\":\"" + prefix);

        /// <summary>Reads frames as bytes in the client's buffer (no string per frame: see <see cref="WireClient.ReceiveBytesAsync"/>).</summary>
        public async Task ReadAsync()
        {
            while (Finished < jobs)
            {
                var frame = await Client.ReceiveBytesAsync();
                var now = DateTimeOffset.UtcNow;
                if (Handle(frame.Span, now) is { } reply)
                {
                    Reply.TrySetResult(reply);
                }
            }

            Done = Stopwatch.GetTimestamp();
        }

        /// <summary>Checks one frame; returns its text when it is not an event (a reply).</summary>
        private string? Handle(ReadOnlySpan<byte> text, DateTimeOffset now)
        {
            if (text.IndexOf(EventsNamespace) < 0)
            {
                return Encoding.UTF8.GetString(text);
            }

            Frames++;
            var state = text.StartsWith(PendingStart) ? 1 : text.StartsWith(FinishedStart) ? 2 : 0;
            var at = text.IndexOf(_processId);
            if (at < 0)
            {
                return null;
            }

            var digits = text[(at + _processId.Length)..];
            digits = digits[..digits.IndexOf((byte)'"')];
            var index = 0;
            foreach (var d in digits)
            {
                index = (index * 10) + (d - '0');
            }

            switch (state)
            {
                case 1:
                    if (index != Pending || _state[index] != 0)
                    {
                        OutOfOrder++;
                    }

                    _state[index] = 1;
                    Pending++;
                    break;
                case 2:
                    if (_state[index] != 1)
                    {
                        OutOfOrder++;
                    }

                    _state[index] = 2;
                    Finished++;
                    if (measureLatency)
                    {
                        var time = text[(text.IndexOf(TimeFinished) + TimeFinished.Length)..];
                        time = time[..time.IndexOf((byte)'"')];
                        Span<char> chars = stackalloc char[time.Length];
                        var n = Encoding.UTF8.GetChars(time, chars);
                        Latencies.Add((now - DateTimeOffset.Parse(chars[..n], CultureInfo.InvariantCulture)).TotalMilliseconds);
                    }

                    break;
                default:
                    if (_state[index] != 1)
                    {
                        OutOfOrder++;
                    }

                    break;
            }

            return null;
        }
    }
}

/// <summary>
/// `profile`: one serial user's-path round (WebSocket, 1 subscriber) recorded by `perf record -g -p HOST` (host only; `memory` as an argument: the host without a data directory), with the .NET
/// perf map on in the host, so that kernel threads (the file system's journal), the children and the host are all seen.
/// Writes perf.data to the given directory; read it with `perf report -i DIR/perf.data --sort comm,dso` or `--sort sym`.
/// </summary>
internal static class UserPathProfile
{
    public static async Task RunAsync(int jobs, string outputDirectory, params string[] hostSettings)
    {
        // W^X off: with it on, JIT code runs from a memfd double mapping that perf cannot match to the perf map.
        Environment.SetEnvironmentVariable("DOTNET_PerfMapEnabled", "1");
        Environment.SetEnvironmentVariable("DOTNET_EnableWriteXorExecute", "0");
        var durable = !hostSettings.Contains("memory");
        if (!hostSettings.Any(s => s.StartsWith("--Dispatcher:Containment:Mode", StringComparison.Ordinal)))
        {
            // The judged composition (containment off, the library's default); pass --Dispatcher:Containment:Mode=Auto for the sample's.
            hostSettings = [.. hostSettings, "--Dispatcher:Containment:Mode=Off"];
        }

        var burst = hostSettings.Contains("fanout");
        var strace = hostSettings.Contains("strace");
        // BENCH_HOST=<dll>: profile another build of the sample host (for example main, for a before/after trace).
        string[] settings = [.. hostSettings.Where(s => s is not "memory" and not "fanout" and not "strace"), .. burst ? ["--Dispatcher:Queues:bench8:MaxConcurrency=8"] : Array.Empty<string>()];
        await using var host = Environment.GetEnvironmentVariable("BENCH_HOST") is { Length: > 0 } dll
            ? await HostProcess.StartAsync(dll, durable, settings)
            : await HostProcess.StartAsync(durable, settings);
        Environment.SetEnvironmentVariable("DOTNET_PerfMapEnabled", null);
        Environment.SetEnvironmentVariable("DOTNET_EnableWriteXorExecute", null);
        if (burst)
        {
            // `fanout`: the burst of the fan-out figure (1 000 jobs, queue limit 8) to 100 subscribers.
            _ = await UserPathBenchmarks.BurstRoundAsync(host, jobs, 10);
            _ = await UserPathBenchmarks.BurstRoundAsync(host, jobs, 100);
        }
        else
        {
            for (var i = 0; i < UserPathBenchmarks.WarmRounds; i++)
            {
                await UserPathBenchmarks.WarmAsync(host, jobs);
            }
        }

        Directory.CreateDirectory(outputDirectory);
        // `strace`: syscall counts of the host's threads (strace -c -f) instead of a perf profile, written to strace.txt.
        var pid = host.Pid.ToString(CultureInfo.InvariantCulture);
        var info = strace
            ? new ProcessStartInfo("strace", ["-c", "-f", "-p", pid, "-o", Path.Combine(outputDirectory, "strace.txt")]) { UseShellExecute = false, RedirectStandardError = true }
            : new ProcessStartInfo("perf", [
                "record",

                // BENCH_PERF_ARGS replaces the recording's arguments (`{pid}` is the host's), e.g. a system-wide trace of the
                // scheduler's tracepoints (`-a -k CLOCK_MONOTONIC -e sched:sched_switch -e sched:sched_wakeup ...`) that puts the
                // host's threads, its children and the clients on each CPU's timeline.
                .. Environment.GetEnvironmentVariable("BENCH_PERF_ARGS") is { Length: > 0 } perfArgs
                    ? perfArgs.Replace("{pid}", pid, StringComparison.Ordinal).Split(' ', StringSplitOptions.RemoveEmptyEntries)
                    : [
                        "-g",

                        // BENCH_PERF_EVENT=sched:sched_switch records where the host's threads block (their wake-ups) instead of CPU samples.
                        .. Environment.GetEnvironmentVariable("BENCH_PERF_EVENT") is { Length: > 0 } perfEvent ? ["-e", perfEvent] : new[] { "-F", "1999" },
                        "-p", pid,
                    ],
                "-o", Path.Combine(outputDirectory, "perf.data")]) { UseShellExecute = false, RedirectStandardError = true };
        using var perf = Process.Start(info)!;
        await Task.Delay(1000); // perf's own start-up, so that the round is recorded whole
        var threads0 = host.ContextSwitchesByThread();
        var round = burst ? await UserPathBenchmarks.BurstRoundAsync(host, jobs, 100) : await UserPathBenchmarks.OneRoundAsync(host, jobs);
        var threads1 = host.ContextSwitchesByThread();
        _ = kill(perf.Id, 2);

        // Context switches per job by thread name (threads that exited during the round are missing).
        foreach (var group in threads1.GroupBy(t => t.Value.Name).OrderByDescending(g => g.Sum(t => t.Value.Switches - threads0.GetValueOrDefault(t.Key).Switches)))
        {
            var switches = group.Sum(t => t.Value.Switches - threads0.GetValueOrDefault(t.Key).Switches);
            if (switches > 0)
            {
                Console.WriteLine($"  {F((double)switches / jobs, 2),6} context switches per job: {group.Key} ({group.Count()} threads)");
            }
        }

        await perf.WaitForExitAsync();
        Console.WriteLine($"profiled round: {F(round.Rate, 0)} jobs/s, host CPU {F(round.HostCpu.TotalMilliseconds * 1000 / jobs, 0)} µs per job, {F((double)round.ContextSwitches / jobs, 1)} context switches per job, "
            + $"p50 {F(round.P50, 1)} ms, p99 {F(round.P99, 1)} ms; {(strace ? "strace.txt" : "perf.data")} in {outputDirectory}");
    }

    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern int kill(int pid, int signal);
}
