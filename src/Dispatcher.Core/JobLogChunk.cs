namespace Dispatcher;

/// <summary>A piece of a job's full log, as returned by <see cref="IDispatcher.ReadLogAsync"/>. Offsets count UTF-8 bytes from the job's first output.</summary>
public sealed class JobLogChunk
{
    internal JobLogChunk(string text, long offset, long nextOffset, long endOffset, bool finished, long trimmed)
    {
        Text = text;
        Offset = offset;
        NextOffset = nextOffset;
        EndOffset = endOffset;
        Finished = finished;
        Trimmed = trimmed;
    }

    /// <summary>Gets the output, whole characters only.</summary>
    public string Text { get; }

    /// <summary>Gets where <see cref="Text"/> starts: the offset asked for, or later when that part was trimmed or fell inside a character.</summary>
    public long Offset { get; }

    /// <summary>Gets the offset to ask for next.</summary>
    public long NextOffset { get; }

    /// <summary>Gets the end of the log when it was read.</summary>
    public long EndOffset { get; }

    /// <summary>Gets whether the job has finished (then nothing is added to the log any more).</summary>
    public bool Finished { get; }

    /// <summary>Gets how many bytes were cut from the front of the log (<see cref="DispatcherOptions.MaxLogBytes"/>); earlier offsets are gone.</summary>
    public long Trimmed { get; }
}
