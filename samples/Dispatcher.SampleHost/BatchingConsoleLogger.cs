using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace Dispatcher.SampleHost;

/// <summary>
/// The sample host's console logger: the same lines as the framework's console logger (each formatted on the logging thread by
/// the configured <see cref="ConsoleFormatter"/>, the sample's, or the journal's format under systemd), written by one
/// background thread that gathers the lines of <see cref="Linger"/> into one <c>write</c>.
/// </summary>
/// <remarks>
/// The framework's logger wakes its thread for every line, and signals it inside its queue's lock: a kernel trace of the
/// sample host running serial jobs (benchmarks/ANALYSIS.md, userpath5) showed 2.1–2.3 wake-ups of the console thread per
/// job from the dispatcher's child I/O thread, one more after the pulse when that thread released the lock, and the woken
/// console thread preempting the child I/O thread on its CPU 0.4–1.3 times per job, on the serial chain. Here a line is
/// appended under a lock that nothing holds for long, and the writer is woken only when it was idle: while lines keep coming
/// it sleeps <see cref="Linger"/> between writes and takes what gathered. A line comes out at most that much later than
/// before; none is lost at a normal stop (the provider's disposal and process exit drain it), nor changed.
/// </remarks>
[ProviderAlias("Console")]
internal sealed class BatchingConsoleLoggerProvider : ILoggerProvider, ISupportExternalScope
{
    /// <summary>How long the writer gathers lines after a write before it writes again.</summary>
    public static readonly TimeSpan Linger = TimeSpan.FromMilliseconds(20);

    private readonly IOptionsMonitor<ConsoleLoggerOptions> _options;
    private readonly Dictionary<string, ConsoleFormatter> _formatters;
    private readonly ConsoleLineWriter _writer;
    private IExternalScopeProvider? _scopes;

    public BatchingConsoleLoggerProvider(IOptionsMonitor<ConsoleLoggerOptions> options, IEnumerable<ConsoleFormatter> formatters)
    {
        _options = options;
        _formatters = formatters.GroupBy(f => f.Name, StringComparer.OrdinalIgnoreCase).ToDictionary(g => g.Key, g => g.Last(), StringComparer.OrdinalIgnoreCase);
        _writer = new ConsoleLineWriter(Console.OpenStandardOutput(), Console.OpenStandardError(), Linger);
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void SetScopeProvider(IExternalScopeProvider scopeProvider) => _scopes = scopeProvider;

    public void Dispose() => _writer.Dispose();

    private ConsoleFormatter Formatter(string? name) =>
        name is not null && _formatters.TryGetValue(name, out var formatter) ? formatter
        : _formatters.TryGetValue(ConsoleFormatterNames.Simple, out var simple) ? simple
        : _formatters.Values.First();

    private sealed class Logger(BatchingConsoleLoggerProvider provider, string category) : ILogger
    {
        [ThreadStatic]
        private static StringWriter? t_text;

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => provider._scopes?.Push(state) ?? NullScope.Instance;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            var options = provider._options.CurrentValue;
            var text = t_text ??= new StringWriter();
            var entry = new LogEntry<TState>(logLevel, category, eventId, state, exception, formatter);
            provider.Formatter(options.FormatterName).Write(in entry, provider._scopes, text);
            var builder = text.GetStringBuilder();
            if (builder.Length == 0)
            {
                return;
            }

            var line = builder.ToString();
            builder.Clear();
            if (builder.Capacity > 1024)
            {
                builder.Capacity = 1024;
            }

            provider._writer.Write(line, toStandardError: logLevel >= options.LogToStandardErrorThreshold, options.MaxQueueLength, options.QueueFullMode);
        }
    }

    private sealed class NullScope : IDisposable
    {
        public static readonly NullScope Instance = new();

        public void Dispose()
        {
        }
    }
}

/// <summary>
/// Writes lines to standard output and error in the order given, from one background thread: the first line after a quiet
/// spell at once, then whatever gathered during each <c>linger</c>, as one write per stream and batch.
/// </summary>
/// <remarks>
/// Bounded as the framework's console logger is (<see cref="ConsoleLoggerOptions.MaxQueueLength"/>, 2 500 lines unless
/// configured): when the console does not take lines (a pipe nobody reads), a full queue makes the logging thread wait for
/// room (<see cref="ConsoleLoggerQueueFullMode.Wait"/>) or drops the line and says later how many were dropped
/// (<see cref="ConsoleLoggerQueueFullMode.DropWrite"/>).
/// </remarks>
internal sealed class ConsoleLineWriter : IDisposable
{
    private readonly object _gate = new();
    private readonly ManualResetEventSlim _wake = new(false, spinCount: 0);
    private readonly Stream _stdout;
    private readonly Stream _stderr;
    private readonly TimeSpan _linger;
    private readonly Thread _thread;
    private readonly Encoding _encoding;
    private List<(string Text, bool Error)> _pending = [];
    private List<(string Text, bool Error)> _spare = [];
    private long _dropped;
    private bool _idle;
    private bool _stopping;
    private bool _exited;

    public ConsoleLineWriter(Stream stdout, Stream stderr, TimeSpan linger)
    {
        _stdout = stdout;
        _stderr = stderr;
        _linger = linger;

        // As Console.Out encodes (UTF-8 unless the locale says otherwise; GetBytes writes no byte order mark).
        _encoding = Console.OutputEncoding;
        _thread = new Thread(Run) { IsBackground = true, Name = "Console logger" };
        _thread.Start();

        // A crash or an exit without the host's disposal still gets the lines gathered so far out.
        AppDomain.CurrentDomain.ProcessExit += OnExit;
        AppDomain.CurrentDomain.UnhandledException += OnExit;
    }

    public void Write(string text, bool toStandardError, int maxQueued = 2500, ConsoleLoggerQueueFullMode whenFull = ConsoleLoggerQueueFullMode.Wait)
    {
        bool wake;
        lock (_gate)
        {
            while (!_exited && !_stopping && _pending.Count >= maxQueued)
            {
                if (whenFull == ConsoleLoggerQueueFullMode.DropWrite)
                {
                    _dropped++;
                    return;
                }

                // Full: the writer is busy writing (or stuck on a console that takes nothing). Wake it if it lingers, and wait
                // until it has taken the queue.
                _wake.Set();
                Monitor.Wait(_gate);
            }

            if (_exited)
            {
                // After the stop, once the writer has drained: straight out, in the caller's thread.
                WriteOut([(text, toStandardError)]);
                return;
            }

            if (_dropped > 0)
            {
                _pending.Add(($"{_dropped} log line(s) dropped: the console did not take them fast enough (Logging:Console:MaxQueueLength, QueueFullMode).{Environment.NewLine}", false));
                _dropped = 0;
            }

            _pending.Add((text, toStandardError));
            wake = _idle || _stopping;
            _idle = false;
        }

        // Outside the lock, so that the woken thread does not find it taken.
        if (wake)
        {
            _wake.Set();
        }
    }

    public void Dispose()
    {
        Stop();
        _thread.Join(TimeSpan.FromSeconds(2));
        AppDomain.CurrentDomain.ProcessExit -= OnExit;
        AppDomain.CurrentDomain.UnhandledException -= OnExit;
    }

    private void OnExit(object? sender, EventArgs e)
    {
        Stop();
        _thread.Join(TimeSpan.FromSeconds(2));
    }

    private void Stop()
    {
        lock (_gate)
        {
            _stopping = true;
            Monitor.PulseAll(_gate);
        }

        _wake.Set();
    }

    private void Run()
    {
        while (true)
        {
            bool idle;
            lock (_gate)
            {
                idle = _pending.Count == 0 && !_stopping;
                if (idle)
                {
                    _idle = true;
                    _wake.Reset();
                }
            }

            if (idle)
            {
                _wake.Wait();
            }

            List<(string Text, bool Error)> batch;
            lock (_gate)
            {
                batch = _pending;
                _pending = _spare;
                _idle = false;
                _wake.Reset();

                // Room again for a logging thread that waits on a full queue.
                Monitor.PulseAll(_gate);
            }

            if (batch.Count > 0)
            {
                WriteOut(batch);
                batch.Clear();
            }

            bool stopping;
            lock (_gate)
            {
                _spare = batch;
                stopping = _stopping;
                if (stopping && _pending.Count == 0)
                {
                    _exited = true;
                    return;
                }
            }

            if (!stopping)
            {
                // Gather: lines written meanwhile do not wake this thread (only a stop does).
                _wake.Wait(_linger);
            }
        }
    }

    private void WriteOut(List<(string Text, bool Error)> lines)
    {
        try
        {
            var start = 0;
            while (start < lines.Count)
            {
                // One write for each run of lines to the same stream, in order.
                var error = lines[start].Error;
                var end = start;
                var text = new StringBuilder();
                while (end < lines.Count && lines[end].Error == error)
                {
                    text.Append(lines[end].Text);
                    end++;
                }

                var stream = error ? _stderr : _stdout;
                stream.Write(_encoding.GetBytes(text.ToString()));
                stream.Flush();
                start = end;
            }
        }
        catch (IOException)
        {
            // The console went away (a closed pipe): the lines have nowhere to go, as with Console.Out.
        }
    }
}
