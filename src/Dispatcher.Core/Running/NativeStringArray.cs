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
/// the <see cref="EnvironmentFilter"/> holds back, plus the job's overrides. The block for the process's environment alone is
/// built once and reused for as long as that environment stays the same, which is checked on every spawn: by comparing the
/// runtime's own environment block with the one the cache was built from (<see cref="RuntimeEnvironmentBlock"/>, about 3 µs
/// for 46 variables), or, where the runtime offers no such block, by comparing a fresh
/// <see cref="Environment.GetEnvironmentVariables()"/> with the snapshot (17–21 µs and 7 KB per spawn: measured on the child
/// event loop's thread, between one job's end and the next one's spawn).
/// </summary>
internal static class SpawnEnvironment
{
    private static readonly object s_gate = new();
    private static Hashtable? s_snapshot;
    private static char[]? s_snapshotBlock;
    private static NativeStringArray? s_block;
    private static string? s_path;
    private static EnvironmentFilter? s_filter;

    /// <summary>Gets how many times the cached block was built (tests: a spawn with an unchanged environment builds none).</summary>
    internal static long Builds { get; private set; }

    /// <summary>Gets the block to spawn with, and its PATH. Dispose the lease once the spawn has returned.</summary>
    public static Lease Acquire(IReadOnlyDictionary<string, string>? overrides, EnvironmentFilter? filter = null)
    {
        filter ??= EnvironmentFilter.Default;
        Hashtable current;
        lock (s_gate)
        {
            Refresh(filter);
            if (overrides is not { Count: > 0 })
            {
                return new Lease(s_block!, s_path, owned: false);
            }

            current = s_snapshot!; // never changed once stored: read outside the lock
        }

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

    /// <summary>Makes the cached snapshot and block those of the environment now. Under the lock.</summary>
    private static void Refresh(EnvironmentFilter filter)
    {
        if (s_snapshot is not null)
        {
            if (s_snapshotBlock is not null)
            {
                if (RuntimeEnvironmentBlock.Matches(s_snapshotBlock))
                {
                    if (!ReferenceEquals(s_filter, filter))
                    {
                        Build(s_snapshot, s_snapshotBlock, filter);
                    }

                    return;
                }
            }
            else if (!RuntimeEnvironmentBlock.IsAvailable)
            {
                var fresh = (Hashtable)Environment.GetEnvironmentVariables();
                if (Same(s_snapshot, fresh))
                {
                    if (!ReferenceEquals(s_filter, filter))
                    {
                        Build(s_snapshot, null, filter);
                    }

                    return;
                }

                Build(fresh, null, filter);
                return;
            }
        }

        // The block is taken before the variables: a change between the two makes the next check fail and build again, never
        // keeps a block that does not match what it was built from.
        var block = RuntimeEnvironmentBlock.IsAvailable ? RuntimeEnvironmentBlock.Copy() : null;
        Build((Hashtable)Environment.GetEnvironmentVariables(), block, filter);
    }

    private static void Build(Hashtable snapshot, char[]? block, EnvironmentFilter filter)
    {
        var previous = s_block;
        s_block = NativeStringArray.Create([.. snapshot.Cast<DictionaryEntry>()
            .Where(e => !filter.Excludes((string)e.Key))
            .Select(e => (string)e.Key + "=" + (string?)e.Value)]);
        s_snapshot = snapshot;
        s_snapshotBlock = block;
        s_filter = filter;
        s_path = (string?)snapshot["PATH"];
        Builds++;
        previous?.Dispose(); // freed once no spawn holds it
    }

    private static bool Same(Hashtable snapshot, Hashtable current)
    {
        if (snapshot.Count != current.Count)
        {
            return false;
        }

        foreach (DictionaryEntry e in current)
        {
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

/// <summary>
/// The CoreCLR runtime's own copy of the process environment, read as one block. On Linux the runtime keeps the environment
/// in its platform layer (<see cref="Environment.SetEnvironmentVariable(string, string)"/> changes that copy, not the C
/// library's), and <see cref="Environment.GetEnvironmentVariables()"/> is built from exactly this block
/// (<c>GetEnvironmentStringsW</c>: "NAME=value" strings, each ended by a NUL, the block by a second NUL). Equal blocks are
/// therefore equal environments, and comparing them costs a copy of the block instead of a dictionary of new strings.
/// </summary>
/// <remarks>
/// The block comes from an internal method of the runtime, found once by reflection with its exact signature. It is used only
/// if that method exists and, on first use, a block it returns lists exactly what <see cref="Environment.GetEnvironmentVariables()"/>
/// returns; otherwise (another runtime, a trimmed one, a changed runtime) <see cref="IsAvailable"/> is false and
/// <see cref="SpawnEnvironment"/> compares the public snapshot instead, as before.
/// </remarks>
internal static unsafe class RuntimeEnvironmentBlock
{
    private static readonly delegate*<char*> s_get;
    private static readonly delegate*<char*, int> s_free;

    static RuntimeEnvironmentBlock()
    {
        try
        {
            var kernel32 = typeof(Environment).Assembly.GetType("Interop+Kernel32");
            const System.Reflection.BindingFlags Static = System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static;
            var get = kernel32?.GetMethod("GetEnvironmentStringsW", Static, Type.EmptyTypes);
            var free = kernel32?.GetMethod("FreeEnvironmentStringsW", Static, [typeof(char*)]);
            if (get is null || free is null || get.ReturnType != typeof(char*) || !IsInt32Like(free.ReturnType))
            {
                return;
            }

            s_get = (delegate*<char*>)get.MethodHandle.GetFunctionPointer();
            s_free = (delegate*<char*, int>)free.MethodHandle.GetFunctionPointer();
            if (Copy() is { } block && Lists(block, Environment.GetEnvironmentVariables()))
            {
                IsAvailable = true;
            }
        }
#pragma warning disable CA1031 // any failure to find or check it means "not available"
        catch (Exception)
#pragma warning restore CA1031
        {
            IsAvailable = false;
        }
    }

    /// <summary>Gets whether the runtime's block can be read here (and was checked against the public API).</summary>
    public static bool IsAvailable { get; }

    /// <summary>The runtime's environment block now, through its terminating second NUL; null when not available.</summary>
    public static char[]? Copy()
    {
        if (s_get == null)
        {
            return null;
        }

        var block = s_get();
        if (block == null)
        {
            return null;
        }

        try
        {
            var length = 0;
            while (!(block[length] == '\0' && (length == 0 || block[length - 1] == '\0')))
            {
                length++;
            }

            return new ReadOnlySpan<char>(block, length + 1).ToArray();
        }
        finally
        {
            _ = s_free(block);
        }
    }

    /// <summary>Whether the runtime's block now is <paramref name="previous"/> (a <see cref="Copy"/>), character for character.</summary>
    public static bool Matches(char[] previous)
    {
        if (!IsAvailable)
        {
            return false;
        }

        var block = s_get();
        if (block == null)
        {
            return false;
        }

        try
        {
            // Reads stop at the first difference: the block now cannot end before it, because until then it is the previous
            // block, whose only double NUL is its end.
            for (var i = 0; i < previous.Length; i++)
            {
                if (block[i] != previous[i])
                {
                    return false;
                }
            }

            return true;
        }
        finally
        {
            _ = s_free(block);
        }
    }

    /// <summary>Whether a block lists exactly the variables of <paramref name="variables"/>.</summary>
    internal static bool Lists(char[] block, System.Collections.IDictionary variables)
    {
        var count = 0;
        var start = 0;
        for (var i = 0; i < block.Length - 1; i++)
        {
            if (block[i] != '\0')
            {
                continue;
            }

            if (i > start)
            {
                var entry = new string(block, start, i - start);
                var equals = entry.IndexOf('=', 1);
                if (equals < 0 || variables[entry[..equals]] is not string value || value != entry[(equals + 1)..])
                {
                    return false;
                }

                count++;
            }

            start = i + 1;
        }

        return count == variables.Count;
    }

    private static bool IsInt32Like(Type type) => (type.IsEnum ? Enum.GetUnderlyingType(type) : type) == typeof(int);
}
