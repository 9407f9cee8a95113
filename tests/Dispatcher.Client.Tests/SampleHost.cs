using Dispatcher.Client;
using Dispatcher.Samples.Tests;

namespace Dispatcher.Client.Tests;

/// <summary>A sample host process on a free port with a full-access and a read-only user.</summary>
internal sealed class SampleHost : IAsyncDisposable
{
    public const string User = "ops";
    public const string Password = "ops-pass-4K";
    public const string Viewer = "viewer";
    public const string ViewerPassword = "viewer-pass-9Z";

    private SampleHost(SampleProcess process, int port)
    {
        Process = process;
        Port = port;
    }

    public SampleProcess Process { get; }

    public int Port { get; }

    public Uri Url => new($"http://127.0.0.1:{Port}");

    public static async Task<SampleHost> StartAsync(int? port = null, params string[] arguments)
    {
        var p = port ?? SampleProcess.FreePort();
        var process = SampleProcess.Start("Dispatcher.SampleHost", ["--urls", $"http://127.0.0.1:{p}", .. arguments], new Dictionary<string, string>
        {
            ["Users__0__Name"] = User,
            ["Users__0__Password"] = Password,
            ["Users__0__FullAccess"] = "true",
            ["Users__1__Name"] = Viewer,
            ["Users__1__Password"] = ViewerPassword,
            ["Users__1__FullAccess"] = "false",
        });
        try
        {
            await process.WaitForOutputAsync("Press Ctrl+C to stop.");
        }
        catch
        {
            await process.DisposeAsync();
            throw;
        }

        return new SampleHost(process, p);
    }

    public DispatcherClient Client(DispatcherClientTransport transport = DispatcherClientTransport.WebSocket, string user = User, string password = Password) =>
        new(new DispatcherClientOptions { Url = Url, UserName = user, Password = password, Transport = transport, ReconnectDelay = TimeSpan.FromMilliseconds(100), MaxReconnectDelay = TimeSpan.FromSeconds(1) });

    public ValueTask DisposeAsync() => Process.DisposeAsync();
}
