namespace Dispatcher.Internal;

/// <summary>
/// The output of one job, per command, bounded over the whole job: when the total passes the limit the oldest characters are
/// dropped (from the earliest command that still has some), and each command remembers how many it lost.
/// </summary>
internal sealed class OutputLog
{
    private readonly object _gate = new();
    private readonly int _limit;
    private readonly List<TailBuffer> _commands = [];
    private long _total;

    public OutputLog(int limit) => _limit = limit;

    /// <summary>Starts the buffer of the next command.</summary>
    public void StartCommand()
    {
        lock (_gate)
        {
            _commands.Add(new TailBuffer());
        }
    }

    public void Append(ReadOnlySpan<char> text)
    {
        lock (_gate)
        {
            var current = _commands[^1];
            if (text.Length >= _limit)
            {
                // Only the last _limit characters can survive: drop everything older at once.
                foreach (var c in _commands)
                {
                    c.DropFront(c.Length);
                }

                current.Dropped += text.Length - _limit;
                text = text[^_limit..];
                _total = 0;
            }

            current.Append(text, _limit);
            _total += text.Length;
            for (var i = 0; _total > _limit && i < _commands.Count; i++)
            {
                var excess = (int)Math.Min(_total - _limit, _commands[i].Length);
                _commands[i].DropFront(excess);
                _total -= excess;
            }
        }
    }

    public (string Text, long Dropped) Snapshot(int index)
    {
        lock (_gate)
        {
            var buffer = _commands[index];
            var text = buffer.ToString();
            return (buffer.Dropped > 0 ? $"[dispatcher: {buffer.Dropped} earlier characters of output were dropped]\n{text}" : text, buffer.Dropped);
        }
    }

    /// <summary>A growable ring of characters.</summary>
    private sealed class TailBuffer
    {
        private char[] _ring = [];
        private int _start;

        public int Length { get; private set; }

        public long Dropped { get; set; }

        public void Append(ReadOnlySpan<char> text, int limit)
        {
            if (Length + text.Length > _ring.Length)
            {
                Grow(Math.Min(Math.Max(Math.Max(_ring.Length * 2, 4096), Length + text.Length), Math.Max(limit, Length + text.Length)));
            }

            var end = (_start + Length) % _ring.Length;
            var first = Math.Min(text.Length, _ring.Length - end);
            text[..first].CopyTo(_ring.AsSpan(end));
            text[first..].CopyTo(_ring);
            Length += text.Length;
        }

        public void DropFront(int count)
        {
            if (count <= 0)
            {
                return;
            }

            Length -= count;
            Dropped += count;
            if (Length == 0)
            {
                // Give the memory back: a command trimmed to nothing keeps no ring.
                _ring = [];
                _start = 0;
            }
            else
            {
                _start = (_start + count) % _ring.Length;
            }
        }

        public override string ToString()
        {
            if (Length == 0)
            {
                return string.Empty;
            }

            var first = Math.Min(Length, _ring.Length - _start);
            return string.Concat(_ring.AsSpan(_start, first), _ring.AsSpan(0, Length - first));
        }

        private void Grow(int capacity)
        {
            var next = new char[capacity];
            if (Length > 0)
            {
                var first = Math.Min(Length, _ring.Length - _start);
                _ring.AsSpan(_start, first).CopyTo(next);
                _ring.AsSpan(0, Length - first).CopyTo(next.AsSpan(first));
            }

            _ring = next;
            _start = 0;
        }
    }
}
