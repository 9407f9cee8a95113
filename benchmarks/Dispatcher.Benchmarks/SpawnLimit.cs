using System.Diagnostics;
using System.Globalization;

namespace Dispatcher.Benchmarks;

/// <summary>
/// The spawn limit of this machine: a C loop of <c>posix_spawn</c> + pipe + <c>waitpid</c> running <c>true</c>, compiled by the
/// benchmark with <c>cc</c> when one exists (otherwise the figures say so), and the .NET <see cref="Process"/> loop.
/// Every child gets a pipe as its stdout and stderr that the parent reads to its end, then reaps the child: the least work
/// any job runner that captures output can do.
/// </summary>
internal static class SpawnLimit
{
    private const string Source = """
        #define _GNU_SOURCE
        #include <fcntl.h>
        #include <poll.h>
        #include <spawn.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <sys/resource.h>
        #include <sys/wait.h>
        #include <time.h>
        #include <unistd.h>

        extern char **environ;

        /* spawnloop JOBS CONCURRENCY PROGRAM (concurrency 0 = all at once; PROGRAM an absolute path, looked up once, as
           every runner compared here does): prints jobs per second, then the loop's own CPU per job in microseconds. */
        static const char *program;
        static int spawn_one(pid_t *pid) {
            int fds[2];
            if (pipe2(fds, O_CLOEXEC) != 0) { perror("pipe"); exit(1); }
            posix_spawn_file_actions_t fa;
            posix_spawn_file_actions_init(&fa);
            posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
            posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
            char *argv[] = { "true", NULL };
            if (posix_spawn(pid, program, &fa, NULL, argv, environ) != 0) { perror("posix_spawn"); exit(1); }
            posix_spawn_file_actions_destroy(&fa);
            close(fds[1]);
            return fds[0];
        }

        int main(int argc, char **argv) {
            int jobs = atoi(argv[1]);
            int limit = atoi(argv[2]);
            program = argv[3];
            if (limit <= 0 || limit > jobs) limit = jobs;
            struct pollfd *p = calloc(limit, sizeof *p);
            pid_t *pids = calloc(limit, sizeof *pids);
            char buf[4096];
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            int started = 0, done = 0, live = 0;
            for (; live < limit; live++, started++) { p[live].fd = spawn_one(&pids[live]); p[live].events = POLLIN; }
            while (done < jobs) {
                if (poll(p, live, -1) < 0) { perror("poll"); return 1; }
                for (int i = 0; i < live; i++) {
                    if (!p[i].revents) continue;
                    if (read(p[i].fd, buf, sizeof buf) > 0) continue;
                    close(p[i].fd);
                    int status;
                    waitpid(pids[i], &status, 0);
                    done++;
                    if (started < jobs) { p[i].fd = spawn_one(&pids[i]); p[i].revents = 0; started++; }
                    else { p[i] = p[live - 1]; pids[i] = pids[live - 1]; live--; i--; }
                }
            }
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
            struct rusage self;
            getrusage(RUSAGE_SELF, &self);
            double cpu = (self.ru_utime.tv_sec + self.ru_stime.tv_sec) * 1e6 + self.ru_utime.tv_usec + self.ru_stime.tv_usec;
            printf("%.3f %.1f\n", jobs / s, cpu / jobs);
            return 0;
        }
        """;

    private static readonly Lazy<string?> Binary = new(Compile);

    private static readonly Lazy<string> True = new(() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':').Select(d => Path.Combine(d, "true")).FirstOrDefault(File.Exists)
        ?? throw new FileNotFoundException("no `true` on PATH"));

    /// <summary>Whether the C loop could be built here.</summary>
    public static bool Available => Binary.Value is not null;

    /// <summary>Jobs per second of the C loop (null without a C compiler).</summary>
    public static async Task<double?> CLoopAsync(int jobs, int concurrency) =>
        await CLoopWithCpuAsync(jobs, concurrency) is { } r ? r.Rate : null;

    /// <summary>Jobs per second of the C loop and the loop process's own CPU per job in µs (null without a C compiler).</summary>
    public static async Task<(double Rate, double CpuPerJob)?> CLoopWithCpuAsync(int jobs, int concurrency)
    {
        if (Binary.Value is not { } binary)
        {
            return null;
        }

        var info = new ProcessStartInfo(binary) { RedirectStandardOutput = true, UseShellExecute = false };
        info.ArgumentList.Add(jobs.ToString(CultureInfo.InvariantCulture));
        info.ArgumentList.Add(concurrency.ToString(CultureInfo.InvariantCulture));
        info.ArgumentList.Add(True.Value);
        using var p = Process.Start(info)!;
        var text = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"spawn loop failed ({p.ExitCode})");
        }

        var parts = text.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return (double.Parse(parts[0], CultureInfo.InvariantCulture), double.Parse(parts[1], CultureInfo.InvariantCulture));
    }

    /// <summary>Jobs per second of Process.Start (stdout and stderr redirected and read to the end) + WaitForExit, <paramref name="concurrency"/> in flight (0: all).</summary>
    public static async Task<double> ProcessLoopAsync(int jobs, int concurrency)
    {
        using var gate = new SemaphoreSlim(concurrency <= 0 ? jobs : concurrency);
        var sw = Stopwatch.StartNew();
        var tasks = new List<Task>(jobs);
        for (var i = 0; i < jobs; i++)
        {
            await gate.WaitAsync();
            tasks.Add(Task.Run(async () =>
            {
                try
                {
                    using var p = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true })!;
                    await Task.WhenAll(p.StandardOutput.ReadToEndAsync(), p.StandardError.ReadToEndAsync());
                    await p.WaitForExitAsync();
                }
                finally
                {
                    gate.Release();
                }
            }));
        }

        await Task.WhenAll(tasks);
        return jobs / sw.Elapsed.TotalSeconds;
    }

    private static string? Compile()
    {
        var dir = Directory.CreateTempSubdirectory("bench-spawnloop-").FullName;
        var source = Path.Combine(dir, "spawnloop.c");
        var binary = Path.Combine(dir, "spawnloop");
        File.WriteAllText(source, Source);
        try
        {
            using var cc = Process.Start(new ProcessStartInfo("cc", ["-O2", "-o", binary, source]) { UseShellExecute = false, RedirectStandardError = true })!;
            var errors = cc.StandardError.ReadToEnd();
            cc.WaitForExit();
            if (cc.ExitCode != 0)
            {
                Console.Error.WriteLine($"cc failed, no C spawn loop: {errors}");
                return null;
            }

            return binary;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            Console.WriteLine("no C compiler (cc): the C spawn loop is not measured");
            return null;
        }
    }
}
