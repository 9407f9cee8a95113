namespace Dispatcher.Client;

/// <summary>How requests reach the server. Events (subscribe, wait, follow) always use the WebSocket endpoint.</summary>
public enum DispatcherClientTransport
{
    /// <summary>One WebSocket connection per client, opened on the first request and reopened after it drops.</summary>
    WebSocket,

    /// <summary>One REST request per call (<c>PUT {Url}/{namespace}/{name}</c>) with a bearer token.</summary>
    Http,
}

/// <summary>Where a <see cref="DispatcherClient"/> connects and how it logs in.</summary>
public sealed class DispatcherClientOptions
{
    /// <summary>
    /// Gets or sets the server's address: <c>http://host:port</c>, <c>https://…</c>, <c>ws://…</c> or <c>wss://…</c>. Its path is
    /// both the WebSocket endpoint and the prefix of the REST endpoints (<c>/</c> for the sample host). Required.
    /// </summary>
    public Uri? Url { get; set; }

    /// <summary>Gets or sets the user name; <see langword="null"/> sends no login (the server then answers 401 to most requests).</summary>
    public string? UserName { get; set; }

    /// <summary>Gets or sets the password for <see cref="UserName"/>. Sent only in the login request, never kept in a URL.</summary>
    public string? Password { get; set; }

    /// <summary>Gets or sets how requests are sent. Default <see cref="DispatcherClientTransport.WebSocket"/>.</summary>
    public DispatcherClientTransport Transport { get; set; } = DispatcherClientTransport.WebSocket;

    /// <summary>Gets or sets how long a request may wait for its reply (connecting and logging in included). Default 30 seconds.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Gets or sets the first wait before an event subscription reconnects; it doubles on each failure up to <see cref="MaxReconnectDelay"/>. Default 0.5 s.</summary>
    public TimeSpan ReconnectDelay { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Gets or sets the longest wait between reconnect attempts. Default 10 s.</summary>
    public TimeSpan MaxReconnectDelay { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Gets or sets how many received events may wait for a slow reader before the subscription drops and reconnects (reporting a gap). Default 65 536.</summary>
    public int EventBufferCapacity { get; set; } = 65_536;

    internal DispatcherClientOptions Validated()
    {
        if (Url is null)
        {
            throw new ArgumentException("DispatcherClientOptions.Url is required (for example http://127.0.0.1:12150).", nameof(Url));
        }

        if (!Url.IsAbsoluteUri || Url.Scheme is not ("http" or "https" or "ws" or "wss"))
        {
            throw new ArgumentException($"DispatcherClientOptions.Url must be an absolute http, https, ws or wss address; got '{Url}'.", nameof(Url));
        }

        if (UserName is not null && Password is null)
        {
            throw new ArgumentException($"DispatcherClientOptions.Password is required when UserName is set (user '{UserName}').", nameof(Password));
        }

        if (RequestTimeout <= TimeSpan.Zero && RequestTimeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentException($"DispatcherClientOptions.RequestTimeout must be positive; got {RequestTimeout}.", nameof(RequestTimeout));
        }

        if (ReconnectDelay <= TimeSpan.Zero || MaxReconnectDelay < ReconnectDelay)
        {
            throw new ArgumentException($"DispatcherClientOptions.ReconnectDelay must be positive and at most MaxReconnectDelay; got {ReconnectDelay} and {MaxReconnectDelay}.", nameof(ReconnectDelay));
        }

        if (EventBufferCapacity < 1)
        {
            throw new ArgumentException($"DispatcherClientOptions.EventBufferCapacity must be at least 1; got {EventBufferCapacity}.", nameof(EventBufferCapacity));
        }

        return new DispatcherClientOptions
        {
            Url = Url,
            UserName = UserName,
            Password = Password,
            Transport = Transport,
            RequestTimeout = RequestTimeout,
            ReconnectDelay = ReconnectDelay,
            MaxReconnectDelay = MaxReconnectDelay,
            EventBufferCapacity = EventBufferCapacity,
        };
    }

    internal Uri WebSocketUri => new UriBuilder(Url!) { Scheme = Url!.Scheme is "https" or "wss" ? "wss" : "ws" }.Uri;

    internal Uri RestUri(string ns, string name)
    {
        var builder = new UriBuilder(Url!) { Scheme = Url!.Scheme is "https" or "wss" ? "https" : "http" };
        builder.Path = builder.Path.TrimEnd('/') + "/" + Uri.EscapeDataString(ns) + "/" + Uri.EscapeDataString(name);
        return builder.Uri;
    }
}
