using System.Collections;
using System.Runtime.InteropServices;
using System.Text;

namespace Dispatcher.Running;

/// <summary>
/// A NULL-terminated array of UTF-8 C strings (an <c>argv</c> or <c>envp</c>) in one native allocation: the pointers first,
/// then the strings. Reference-counted like any <see cref="SafeHandle"/>, so a block can be shared by concurrent spawns and
/// replaced while one is still using it.
/// </summary>
internal sealed class NativeStringArray : SafeHandle
{
    public NativeStringArray()
        : base(IntPtr.Zero, ownsHandle: true)
    {
    }

    public override bool IsInvalid => handle == IntPtr.Zero;

    public static NativeStringArray Create(IReadOnlyCollection<string> strings)
    {
        var pointers = (strings.Count + 1) * IntPtr.Size;
        var size = pointers;
        foreach (var s in strings)
        {
            size += Encoding.UTF8.GetByteCount(s) + 1;
        }

        var bytes = new byte[size - pointers];
        var offsets = new int[strings.Count];
        var position = 0;
        var index = 0;
        foreach (var s in strings)
        {
            offsets[index++] = position;
            position += Encoding.UTF8.GetBytes(s, 0, s.Length, bytes, position) + 1; // the array is zeroed: the terminator is there
        }

        var array = new NativeStringArray();
        var block = Marshal.AllocHGlobal(size);
        array.SetHandle(block);
        for (var i = 0; i < offsets.Length; i++)
        {
            Marshal.WriteIntPtr(block, i * IntPtr.Size, block + pointers + offsets[i]);
        }

        Marshal.WriteIntPtr(block, offsets.Length * IntPtr.Size, IntPtr.Zero);
        Marshal.Copy(bytes, 0, block + pointers, bytes.Length);
        return array;
    }

    protected override bool ReleaseHandle()
    {
        Marshal.FreeHGlobal(handle);
        return true;
    }
}

/// <summary>Which of the host's environment variables jobs do not inherit (<see cref="DispatcherOptions.ExcludedEnvironmentVariables"/>).</summary>
internal sealed class EnvironmentFilter
{
    public static readonly string[] DefaultPatterns =
    [
        "*PASSWORD*", "*PASSWD*", "*PASSPHRASE*", "*SECRET*", "*TOKEN*", "*APIKEY*", "*API_KEY*", "*PRIVATE_KEY*", "*CREDENTIAL*",
        "*CONNECTIONSTRING*", "ConnectionStrings__*", "Users__*", "Kestrel__Certificates__*", "ASPNETCORE_Kestrel__Certificates__*",
    ];

    private readonly string[][] _patterns;

    public EnvironmentFilter(IEnumerable<string> patterns) =>
        _patterns = [.. patterns.Where(p => !string.IsNullOrEmpty(p)).Select(p => p.Replace(":", "__", StringComparison.Ordinal).Split('*'))];

    public static EnvironmentFilter Default { get; } = new(DefaultPatterns);

    public bool Excludes(string name)
    {
        if (_patterns.Length == 0)
        {
            return false;
        }

        name = name.Replace(":", "__", StringComparison.Ordinal);
        foreach (var parts in _patterns)
        {
            if (Matches(name, parts))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>A glob whose only wildcard is '*', split at the stars: the first part starts the name, the last ends it.</summary>
    private static bool Matches(string name, string[] parts)
    {
        if (parts.Length == 1)
        {
            return string.Equals(name, parts[0], StringComparison.OrdinalIgnoreCase);
        }

        if (!name.StartsWith(parts[0], StringComparison.OrdinalIgnoreCase) || !name.EndsWith(parts[^1], StringComparison.OrdinalIgnoreCase)
            || name.Length < parts[0].Length + parts[^1].Length)
        {
            return false;
        }

        var position = parts[0].Length;
        var end = name.Length - parts[^1].Length;
        for (var i = 1; i < parts.Length - 1; i++)
        {
            var found = name.IndexOf(parts[i], position, end - position, StringComparison.OrdinalIgnoreCase);
            if (found < 0)
            {
                return false;
            }

            position = found + parts[i].Length;
        }

        return true;
    }
}

/// <summary>
/// The environment a command starts with: this process's environment (as .NET sees it, with the host's own changes) less what
/// the <see cref="EnvironmentFilter"/> holds back, plus the job's overrides. The block for the process's environment alone is built once and reused for as long as that environment
/// stays the same (checked on every spawn, by comparing a fresh snapshot with the one it was built from).
/// </summary>
internal static class SpawnEnvironment
{
    private static readonly object s_gate = new();
    private static Hashtable? s_snapshot;
    private static NativeStringArray? s_block;
    private static string? s_path;
    private static EnvironmentFilter? s_filter;

    /// <summary>Gets the block to spawn with, and its PATH. Dispose the lease once the spawn has returned.</summary>
    public static Lease Acquire(IReadOnlyDictionary<string, string>? overrides, EnvironmentFilter? filter = null)
    {
        filter ??= EnvironmentFilter.Default;
        var current = (Hashtable)Environment.GetEnvironmentVariables();
        if (overrides is { Count: > 0 })
        {
            var merged = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (DictionaryEntry e in current)
            {
                if (!filter.Excludes((string)e.Key))
                {
                    merged[(string)e.Key] = (string?)e.Value ?? string.Empty;
                }
            }

            foreach (var (k, v) in overrides)
            {
                merged[k] = v;
            }

            var own = NativeStringArray.Create([.. merged.Select(kv => kv.Key + "=" + kv.Value)]);
            return new Lease(own, merged.GetValueOrDefault("PATH"), owned: true);
        }

        lock (s_gate)
        {
            if (s_block is null || !ReferenceEquals(s_filter, filter) || !Same(s_snapshot!, current))
            {
                var previous = s_block;
                s_block = NativeStringArray.Create([.. current.Cast<DictionaryEntry>()
                    .Where(e => !filter.Excludes((string)e.Key))
                    .Select(e => (string)e.Key + "=" + (string?)e.Value)]);
                s_snapshot = current;
                s_filter = filter;
                s_path = (string?)current["PATH"];
                previous?.Dispose(); // freed once no spawn holds it
            }

            return new Lease(s_block, s_path, owned: false);
        }
    }

    private static bool Same(Hashtable snapshot, Hashtable current)
    {
        if (snapshot.Count != current.Count)
        {
            return false;
        }

        foreach (DictionaryEntry e in current)
        {
            // The runtime hands out the same string instances until a variable changes, so this is mostly reference checks.
            if (snapshot[e.Key] is not string value || !string.Equals(value, (string?)e.Value, StringComparison.Ordinal))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>A block held for one spawn.</summary>
    internal readonly struct Lease : IDisposable
    {
        private readonly NativeStringArray _block;
        private readonly bool _owned;

        public Lease(NativeStringArray block, string? path, bool owned)
        {
            var added = false;
            block.DangerousAddRef(ref added);
            _block = block;
            _owned = owned;
            Path = path;
        }

        public string? Path { get; }

        public IntPtr Pointer => _block.DangerousGetHandle();

        public void Dispose()
        {
            _block.DangerousRelease();
            if (_owned)
            {
                _block.Dispose();
            }
        }
    }
}
