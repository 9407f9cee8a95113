using System.Collections.Concurrent;
using System.Security.Cryptography;
using Microsoft.Extensions.Options;

namespace Dispatcher.Protocol;

/// <summary>Issues random bearer tokens with a sliding expiry, shared by both transports.</summary>
/// <remarks>
/// Issuing is O(1): expired tokens are removed a few at a time from the head of a queue in issue order, instead of scanning every
/// live token (which cut logins from 2 611/s to 500/s at 77 000 live tokens). A token's entry is never put back into the table
/// once it is there, so a revocation cannot be undone by a concurrent use of the same token.
/// </remarks>
internal sealed class TokenService(IOptions<DispatcherProtocolOptions> options, TimeProvider time)
{
    private readonly ConcurrentDictionary<string, Entry> _tokens = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<string> _issued = new();

    public TimeSpan Lifetime => options.Value.TokenLifetime;

    /// <summary>Gets how many tokens the table holds (live, or expired and not yet swept).</summary>
    public int Count => _tokens.Count;

    public string Issue(DispatcherUser user)
    {
        var now = time.GetUtcNow();
        Sweep(now, 2);
        var token = Base64Url(RandomNumberGenerator.GetBytes(32));
        _tokens[token] = new Entry(user, now + Lifetime);
        _issued.Enqueue(token);
        return token;
    }

    /// <summary>Checks a token and, when valid, extends its life.</summary>
    public bool TryUse(string token, out DispatcherUser user)
    {
        user = null!;
        if (!_tokens.TryGetValue(token, out var entry))
        {
            return false;
        }

        var now = time.GetUtcNow();
        if (!entry.TryExtend(now, Lifetime))
        {
            Remove(token, entry);
            return false;
        }

        user = entry.User;
        return true;
    }

    /// <summary>Whether the token is still valid, without extending its life.</summary>
    public bool IsValid(string token) => _tokens.TryGetValue(token, out var entry) && entry.IsAlive(time.GetUtcNow());

    public void Revoke(string? token)
    {
        if (token is not null && _tokens.TryRemove(token, out var entry))
        {
            entry.Revoke();
        }
    }

    /// <summary>Looks at up to <paramref name="budget"/> tokens from the oldest issued: removes the dead, requeues the living.</summary>
    private void Sweep(DateTimeOffset now, int budget)
    {
        for (var i = 0; i < budget && _issued.TryPeek(out var oldest); i++)
        {
            if (!_tokens.TryGetValue(oldest, out var entry))
            {
                _issued.TryDequeue(out _); // revoked
                continue;
            }

            if (entry.IsAlive(now))
            {
                // Still in use (its expiry slid): look again later.
                if (_issued.TryDequeue(out var again))
                {
                    _issued.Enqueue(again);
                }

                continue;
            }

            _issued.TryDequeue(out _);
            Remove(oldest, entry);
        }
    }

    private void Remove(string token, Entry entry)
    {
        entry.Revoke();
        _tokens.TryRemove(new KeyValuePair<string, Entry>(token, entry));
    }

    private static string Base64Url(byte[] bytes) =>
        Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private sealed class Entry(DispatcherUser user, DateTimeOffset expires)
    {
        private long _expiresTicks = expires.UtcTicks;
        private volatile bool _revoked;

        public DispatcherUser User { get; } = user;

        public bool IsAlive(DateTimeOffset now) => !_revoked && Interlocked.Read(ref _expiresTicks) > now.UtcTicks;

        public void Revoke() => _revoked = true;

        /// <summary>Slides the expiry forward unless the entry is dead; never brings a revoked entry back.</summary>
        public bool TryExtend(DateTimeOffset now, TimeSpan lifetime)
        {
            while (true)
            {
                var current = Interlocked.Read(ref _expiresTicks);
                if (_revoked || current <= now.UtcTicks)
                {
                    return false;
                }

                var next = Math.Max(current, (now + lifetime).UtcTicks);
                if (Interlocked.CompareExchange(ref _expiresTicks, next, current) == current)
                {
                    return !_revoked;
                }
            }
        }
    }
}

/// <summary>
/// Counts failed logins per remote address and per user name, and blocks either once it fails too often within the window. A
/// successful login erases nothing: otherwise one valid login (of any user, or any valid token) between guesses would lift the
/// limit. Each failure costs O(1): entries sit in a list ordered by their last failure, which is also the order they expire in,
/// and each table holds at most <see cref="MaxEntries"/> entries (the oldest goes first).
/// </summary>
internal sealed class LoginThrottle(IOptions<DispatcherProtocolOptions> options, TimeProvider time)
{
    /// <summary>The most entries each table (addresses, user names) holds.</summary>
    public const int MaxEntries = 10_000;

    private readonly object _gate = new();
    private readonly Table _addresses = new();
    private readonly Table _users = new();

    /// <summary>Gets how many addresses and user names have entries.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _addresses.Count + _users.Count;
            }
        }
    }

    /// <summary>Whether the address, or the user name when given, is blocked now.</summary>
    public bool IsBlocked(string address, string? user = null)
    {
        var now = time.GetUtcNow();
        lock (_gate)
        {
            return _addresses.IsBlocked(address, now) || (user is not null && _users.IsBlocked(UserKey(user), now));
        }
    }

    /// <summary>Records a failure of the address and, when known, of the user name; true when either is now blocked.</summary>
    public bool Fail(string address, string? user)
    {
        var o = options.Value;
        var now = time.GetUtcNow();
        lock (_gate)
        {
            var blocked = _addresses.Fail(address, now, o.FailedLoginWindow, o.MaxFailedLogins);
            if (user is not null)
            {
                blocked |= _users.Fail(UserKey(user), now, o.FailedLoginWindow, o.MaxFailedLogins);
            }

            return blocked;
        }
    }

    // User names are compared as the authenticator may: without case, and bounded so a huge name costs nothing to keep.
    private static string UserKey(string user) => (user.Length > 256 ? user[..256] : user).ToUpperInvariant();

    private sealed class Table
    {
        private readonly Dictionary<string, LinkedListNode<Entry>> _entries = new(StringComparer.Ordinal);
        private readonly LinkedList<Entry> _byLastFailure = new();

        public int Count => _entries.Count;

        public bool IsBlocked(string key, DateTimeOffset now) => _entries.TryGetValue(key, out var node) && node.Value.BlockedUntil > now;

        public bool Fail(string key, DateTimeOffset now, TimeSpan window, int max)
        {
            // Expired entries are at the head; drop a few per failure (amortized O(1)).
            for (var i = 0; i < 2 && _byLastFailure.First is { } head && head.Value.LastFailure + window <= now && head.Value.BlockedUntil <= now; i++)
            {
                _entries.Remove(head.Value.Key);
                _byLastFailure.RemoveFirst();
            }

            if (!_entries.TryGetValue(key, out var node))
            {
                if (_entries.Count >= MaxEntries && _byLastFailure.First is { } oldest)
                {
                    _entries.Remove(oldest.Value.Key);
                    _byLastFailure.RemoveFirst();
                }

                node = _byLastFailure.AddLast(new Entry(key) { WindowStart = now });
                _entries[key] = node;
            }
            else
            {
                _byLastFailure.Remove(node);
                _byLastFailure.AddLast(node);
            }

            var entry = node.Value;
            if (entry.WindowStart + window <= now)
            {
                entry.WindowStart = now;
                entry.Failures = 0;
            }

            entry.LastFailure = now;
            if (++entry.Failures >= max)
            {
                entry.BlockedUntil = now + window;
                entry.WindowStart = now;
                entry.Failures = 0;
            }

            return entry.BlockedUntil > now;
        }
    }

    private sealed class Entry(string key)
    {
        public string Key { get; } = key;

        public DateTimeOffset WindowStart { get; set; }

        public DateTimeOffset LastFailure { get; set; }

        public int Failures { get; set; }

        public DateTimeOffset BlockedUntil { get; set; }
    }
}
