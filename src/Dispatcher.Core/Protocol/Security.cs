using System.Collections.Concurrent;
using System.Security.Cryptography;
using Microsoft.Extensions.Options;

namespace Dispatcher.Protocol;

/// <summary>Issues random bearer tokens with a sliding expiry, shared by both transports.</summary>
internal sealed class TokenService(IOptions<DispatcherProtocolOptions> options, TimeProvider time)
{
    private readonly ConcurrentDictionary<string, Entry> _tokens = new(StringComparer.Ordinal);

    public TimeSpan Lifetime => options.Value.TokenLifetime;

    public string Issue(DispatcherUser user)
    {
        if (_tokens.Count > 1024)
        {
            var now = time.GetUtcNow();
            foreach (var (key, entry) in _tokens)
            {
                if (entry.Expires <= now)
                {
                    _tokens.TryRemove(key, out _);
                }
            }
        }

        var token = Base64Url(RandomNumberGenerator.GetBytes(32));
        _tokens[token] = new Entry(user, time.GetUtcNow() + Lifetime);
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
        if (entry.Expires <= now)
        {
            _tokens.TryRemove(token, out _);
            return false;
        }

        _tokens[token] = entry with { Expires = now + Lifetime };
        user = entry.User;
        return true;
    }

    public void Revoke(string? token)
    {
        if (token is not null)
        {
            _tokens.TryRemove(token, out _);
        }
    }

    private static string Base64Url(byte[] bytes) =>
        Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private sealed record Entry(DispatcherUser User, DateTimeOffset Expires);
}

/// <summary>Counts failed logins per remote address and blocks an address that fails too often.</summary>
internal sealed class LoginThrottle(IOptions<DispatcherProtocolOptions> options, TimeProvider time)
{
    private readonly ConcurrentDictionary<string, Entry> _addresses = new(StringComparer.Ordinal);

    public bool IsBlocked(string address)
    {
        if (!_addresses.TryGetValue(address, out var entry))
        {
            return false;
        }

        lock (entry)
        {
            return entry.BlockedUntil > time.GetUtcNow();
        }
    }

    /// <summary>Records a failure; true when the address is now blocked.</summary>
    public bool Fail(string address)
    {
        var o = options.Value;
        var now = time.GetUtcNow();
        if (_addresses.Count > 10_000)
        {
            foreach (var (key, old) in _addresses)
            {
                lock (old)
                {
                    if (old.BlockedUntil <= now && (old.Failures.Count == 0 || old.Failures.Peek() < now - o.FailedLoginWindow))
                    {
                        _addresses.TryRemove(key, out _);
                    }
                }
            }
        }

        var entry = _addresses.GetOrAdd(address, _ => new Entry());
        lock (entry)
        {
            entry.Failures.Enqueue(now);
            while (entry.Failures.Count > 0 && entry.Failures.Peek() < now - o.FailedLoginWindow)
            {
                entry.Failures.Dequeue();
            }

            if (entry.Failures.Count >= o.MaxFailedLogins)
            {
                entry.BlockedUntil = now + o.FailedLoginWindow;
                entry.Failures.Clear();
            }

            return entry.BlockedUntil > now;
        }
    }

    public const int MaxEntries = 10_000;

    public int Count => _addresses.Count;

    public bool Fail(string address, string? user) => Fail(address);

    public void Succeed(string address) => _addresses.TryRemove(address, out _);

    private sealed class Entry
    {
        public Queue<DateTimeOffset> Failures { get; } = new();

        public DateTimeOffset BlockedUntil { get; set; }
    }
}
