namespace Dispatcher.Client.Internal;

/// <summary>The login token one client shares between its connections (a token works on any connection and over REST).</summary>
internal sealed class TokenState
{
    private volatile string? _token;

    public string? Current => _token;

    public TimeSpan Lifetime { get; private set; } = TimeSpan.FromMinutes(5);

    public void Set(string token, TimeSpan lifetime)
    {
        _token = token;
        Lifetime = lifetime;
    }

    public void Clear(string stale) => Interlocked.CompareExchange(ref _token, null, stale);
}
