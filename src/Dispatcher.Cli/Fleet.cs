using Dispatcher.Client;

namespace Dispatcher.Cli;

/// <summary>One dispatcher host the command addresses: its label (host:port of its URL) and its client.</summary>
internal sealed record Host(string Label, DispatcherClient Client);

/// <summary>The hosts given with --url, and how job arguments name them.</summary>
internal sealed class Fleet : IAsyncDisposable
{
    private Fleet(IReadOnlyList<Host> hosts) => Hosts = hosts;

    public IReadOnlyList<Host> Hosts { get; }

    public bool Several => Hosts.Count > 1;

    public static Fleet Create(IReadOnlyList<string> urls, string? user, string? password)
    {
        var hosts = new List<Host>();
        foreach (var url in urls)
        {
            if (!Uri.TryCreate(url, UriKind.Absolute, out var uri))
            {
                throw new UsageException($"--url '{url}' is not an absolute address such as http://127.0.0.1:12150.");
            }

            var label = uri.IsDefaultPort ? uri.Host : uri.Authority;
            if (hosts.Any(h => h.Label == label))
            {
                throw new UsageException($"--url '{url}' names host '{label}' a second time.");
            }

            try
            {
                hosts.Add(new Host(label, new DispatcherClient(new DispatcherClientOptions { Url = uri, UserName = user, Password = password })));
            }
            catch (ArgumentException ex)
            {
                throw new UsageException(ex.Message);
            }
        }

        return new Fleet(hosts);
    }

    /// <summary>The host and job id an argument names: the job id alone with one host, HOST:JOB with several.</summary>
    public (Host Host, string JobId) Resolve(string argument)
    {
        if (!Several)
        {
            return (Hosts[0], argument);
        }

        var host = Hosts.Where(h => argument.StartsWith(h.Label + ":", StringComparison.Ordinal)).MaxBy(h => h.Label.Length);
        return host is not null && argument.Length > host.Label.Length + 1
            ? (host, argument[(host.Label.Length + 1)..])
            : throw new UsageException($"With several --url, name a job as HOST:JOB, where HOST is one of {string.Join(", ", Hosts.Select(h => h.Label))}; got '{argument}'.");
    }

    public string Name(Host host, string jobId) => Several ? $"{host.Label}:{jobId}" : jobId;

    public async ValueTask DisposeAsync()
    {
        foreach (var host in Hosts)
        {
            await host.Client.DisposeAsync();
        }
    }
}

/// <summary>The command line asks for something impossible; the message says what to change.</summary>
internal sealed class UsageException(string message) : Exception(message);
