using System.Text;
using Dispatcher.Telemetry;

namespace Dispatcher.Internal;

/// <summary>Full job logs: a file per job under the data directory, read by offset while the job runs and after.</summary>
internal sealed partial class DefaultDispatcher
{
    public const int MaxLogReadBytes = 1024 * 1024;

    /// <summary>Gets the job logs (with a data directory), for tests.</summary>
    internal JobLogs? Logs => _logs;

    public ValueTask<JobLogChunk> ReadLogAsync(string jobId, long offset, int limit, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(jobId);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(limit, MaxLogReadBytes);
        cancellationToken.ThrowIfCancellationRequested();
        JobLogs.JobLog? log = null;
        string? memory = null;
        bool finished;
        lock (_gate)
        {
            if (_scheduler.TryGetJob(jobId, out var job))
            {
                finished = false;
                log = job.Log;
                if (_logs is null)
                {
                    memory = KeptOutput(job);
                }
                else if (log is null)
                {
                    // Pending, never started: nothing written yet.
                    return ValueTask.FromResult(JobLogs.ReadText(string.Empty, offset, limit, finished: false));
                }
            }
            else
            {
                Prune();
                if (!_finished.TryGetValue(jobId, out var result))
                {
                    throw new JobNotFoundException(jobId);
                }

                finished = true;
                if (_logs is null)
                {
                    memory = string.Concat(result.CommandResults.Select(c => c.Output));
                }
            }
        }

        // File reads happen outside the dispatcher's lock (the log has its own).
        var chunk = memory is not null ? JobLogs.ReadText(memory, offset, limit, finished)
            : log is not null ? log.Read(offset, limit, finished)
            : _logs!.ReadFinished(jobId, offset, limit) ?? JobLogs.ReadText(string.Empty, offset, limit, finished);
        return ValueTask.FromResult(chunk);
    }

    private static string KeptOutput(Job job)
    {
        var text = new StringBuilder();
        for (var i = 0; job.Run is { } run && i <= job.CurrentCommand; i++)
        {
            text.Append(run.Output.Snapshot(i).Text);
        }

        return text.ToString();
    }

    /// <summary>Opens the job's log when its first attempt starts; a later attempt writes a line saying so. Under the lock.</summary>
    private void OpenLog(Job job)
    {
        if (_logs is null)
        {
            return;
        }

        try
        {
            if (job.Log is null)
            {
                job.Log = _logs.Create(job.Id);
            }
            else
            {
                job.Log.Append($"--- attempt {job.Attempt} ---\n");
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Without its log file the job still runs; its output stays in memory as always.
            DispatcherLog.RunnerFault(_logger, job.Id, ex);
        }
    }

    /// <summary>Writes the job's standard input to a private file the commands read (none: null, /dev/null).</summary>
    private static string? WriteStandardInput(Job job)
    {
        if (job.Request.StandardInput is not { } text)
        {
            return null;
        }

        var path = Path.Combine(Path.GetTempPath(), "dispatcher-stdin-" + Guid.NewGuid().ToString("N"));
        using (var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.Read))
        {
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(file.SafeFileHandle, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }

            file.Write(Encoding.UTF8.GetBytes(text));
        }

        return path;
    }

    private static void DeleteStandardInput(Job job)
    {
        if (job.StandardInputFile is { } path)
        {
            job.StandardInputFile = null;
            try
            {
                File.Delete(path);
            }
            catch (IOException)
            {
            }
        }
    }
}
