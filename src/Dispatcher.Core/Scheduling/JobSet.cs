using System.Collections;

namespace Dispatcher.Scheduling;

/// <summary>
/// Jobs in priority order (higher first, then submission order), kept as a list of sorted chunks of at most
/// <see cref="MaxChunk"/> entries with an array of each chunk's last key: an insert or a removal is two binary searches over
/// contiguous memory (O(log n)) and a move of at most one chunk's entries; the first job is read in O(1). Each entry holds the
/// job's priority and sequence inline, so a comparison never reads the job object. The red-black tree this replaces
/// (<see cref="SortedSet{T}"/> of jobs) chased two pointers per level and walked the left spine for every <c>Min</c>: the
/// scheduler's submit-and-complete cycle cost 3.08× more at 100 000 pending jobs than at 1 000 (benchmarks/RESULTS.md).
/// </summary>
internal sealed class JobSet : IEnumerable<ScheduledJob>
{
    internal const int MaxChunk = 128;

    private readonly List<List<Entry>> _chunks = [];
    private readonly List<Entry> _last = [];

    public int Count { get; private set; }

    /// <summary>Gets the first job (highest priority, earliest submitted), or null.</summary>
    public ScheduledJob? Min => Count == 0 ? null : _chunks[0][0].Job;

    /// <summary>Gets the last job, or null.</summary>
    public ScheduledJob? Max => Count == 0 ? null : _last[^1].Job;

    /// <summary>Adds a job; false when it is already in the set (same priority and sequence).</summary>
    public bool Add(ScheduledJob job)
    {
        var entry = new Entry(job.Priority, job.Sequence, job);
        if (_chunks.Count == 0)
        {
            _chunks.Add(NewChunk(entry));
            _last.Add(entry);
            Count = 1;
            return true;
        }

        var c = ChunkFor(entry);
        if (c == _chunks.Count)
        {
            c--; // after every job: the last chunk takes it
        }

        var chunk = _chunks[c];
        var i = chunk.BinarySearch(entry, EntryOrder.Instance);
        if (i >= 0)
        {
            return false;
        }

        i = ~i;
        if (i == MaxChunk && c == _chunks.Count - 1)
        {
            // After every job, with the last chunk full (the usual case: equal priorities, in submission order): a new chunk,
            // so that chunks filled in order stay full (24 bytes a job, where halves would leave 48).
            _chunks.Add(NewChunk(entry));
            _last.Add(entry);
            Count++;
            return true;
        }

        chunk.Insert(i, entry);
        _last[c] = chunk[^1];
        Count++;
        if (chunk.Count > MaxChunk)
        {
            var half = chunk.Count / 2;
            var right = new List<Entry>(MaxChunk + 1);
            right.AddRange(chunk.GetRange(half, chunk.Count - half));
            chunk.RemoveRange(half, chunk.Count - half);
            _chunks.Insert(c + 1, right);
            _last[c] = chunk[^1];
            _last.Insert(c + 1, right[^1]);
        }

        return true;
    }

    /// <summary>Removes a job; false when it is not in the set.</summary>
    public bool Remove(ScheduledJob job)
    {
        var entry = new Entry(job.Priority, job.Sequence, job);
        var c = ChunkFor(entry);
        if (c == _chunks.Count)
        {
            return false;
        }

        var chunk = _chunks[c];
        var i = chunk.BinarySearch(entry, EntryOrder.Instance);
        if (i < 0 || !ReferenceEquals(chunk[i].Job, job))
        {
            return false;
        }

        chunk.RemoveAt(i);
        Count--;
        if (chunk.Count == 0)
        {
            _chunks.RemoveAt(c);
            _last.RemoveAt(c);
            return true;
        }

        _last[c] = chunk[^1];

        // A chunk left small joins its successor when both fit in one: the chunk count stays about n / (MaxChunk / 2).
        if (chunk.Count < MaxChunk / 4 && c + 1 < _chunks.Count && chunk.Count + _chunks[c + 1].Count <= MaxChunk)
        {
            chunk.AddRange(_chunks[c + 1]);
            _chunks.RemoveAt(c + 1);
            _last.RemoveAt(c + 1);
            _last[c] = chunk[^1];
        }

        return true;
    }

    /// <summary>The job's index in the set's order, or -1; O(log n + n / <see cref="MaxChunk"/>).</summary>
    public int IndexOf(ScheduledJob job)
    {
        var entry = new Entry(job.Priority, job.Sequence, job);
        var c = ChunkFor(entry);
        if (c == _chunks.Count)
        {
            return -1;
        }

        var i = _chunks[c].BinarySearch(entry, EntryOrder.Instance);
        if (i < 0 || !ReferenceEquals(_chunks[c][i].Job, job))
        {
            return -1;
        }

        for (var k = 0; k < c; k++)
        {
            i += _chunks[k].Count;
        }

        return i;
    }

    public IEnumerator<ScheduledJob> GetEnumerator()
    {
        foreach (var chunk in _chunks)
        {
            foreach (var entry in chunk)
            {
                yield return entry.Job;
            }
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>The set's order between two jobs: negative when <paramref name="x"/> comes first.</summary>
    internal static int Compare(ScheduledJob x, ScheduledJob y) => Compare(x.Priority, x.Sequence, y.Priority, y.Sequence);

    private static int Compare(int xPriority, long xSequence, int yPriority, long ySequence)
    {
        var c = yPriority.CompareTo(xPriority);
        return c != 0 ? c : xSequence.CompareTo(ySequence);
    }

    // Room for one more than the bound: a chunk splits after it passes MaxChunk, and its array never doubles.
    private static List<Entry> NewChunk(Entry first) => new(MaxChunk + 1) { first };

    /// <summary>The first chunk whose last entry is not before <paramref name="entry"/>, or the chunk count.</summary>
    private int ChunkFor(Entry entry)
    {
        int lo = 0, hi = _last.Count;
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (EntryOrder.Instance.Compare(_last[mid], entry) < 0)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        return lo;
    }

    private readonly record struct Entry(int Priority, long Sequence, ScheduledJob Job);

    private sealed class EntryOrder : IComparer<Entry>
    {
        public static readonly EntryOrder Instance = new();

        public int Compare(Entry x, Entry y) => JobSet.Compare(x.Priority, x.Sequence, y.Priority, y.Sequence);
    }
}
