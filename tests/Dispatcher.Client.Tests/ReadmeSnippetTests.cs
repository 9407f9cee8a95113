using Microsoft.Extensions.DependencyInjection;

namespace Dispatcher.Client.Tests;

/// <summary>The README's client code, compiled and run against a sample host (keep the two in step).</summary>
public sealed class ReadmeSnippetTests(SampleHostFixture fixture) : IClassFixture<SampleHostFixture>
{
    [Fact]
    public async Task ClientSnippet_RunsFollowsAndWaits()
    {
        Environment.SetEnvironmentVariable("DISPATCHER_PASSWORD", SampleHost.Password);
        var url = fixture.Host.Url;
        var output = new StringWriter();

        // README: the client
        await using var client = new DispatcherClient(new DispatcherClientOptions
        {
            Url = url,                                                     // new Uri("http://127.0.0.1:12150")
            UserName = SampleHost.User,                                    // "admin"
            Password = Environment.GetEnvironmentVariable("DISPATCHER_PASSWORD"),
        });

        var run = await client.RunAsync(new RemoteJobSpec { Id = "report", Commands = ["uname -s", "df -P /"], Queue = "pkg_queue" });
        foreach (var (id, reason) in run.Rejected)                        // an id in use, an unknown queue…
        {
            output.WriteLine($"{id} rejected: {reason}");
        }

        await foreach (var chunk in client.FollowAsync("report"))          // output as it comes, command by command
        {
            output.Write(chunk.Text);
        }

        var result = await client.WaitAsync("report");                    // returns at once for a finished job
        output.WriteLine($"{result.Outcome}; exit codes {string.Join(", ", result.Results.Select(r => r.ExitCode))}");

        Assert.Contains("Linux\n", output.ToString(), StringComparison.Ordinal);
        Assert.EndsWith("succeeded; exit codes 0, 0" + Environment.NewLine, output.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task DependencyInjectionSnippet_ResolvesAClient()
    {
        var services = new ServiceCollection();

        // README: with dependency injection
        services.AddDispatcherClient(o =>
        {
            o.Url = new Uri("http://127.0.0.1:12150");
            o.UserName = "ops";
            o.Password = "from configuration";
            o.Transport = DispatcherClientTransport.Http;              // default WebSocket; events always use WebSocket
        });

        await using var provider = services.BuildServiceProvider();
        Assert.Equal(new Uri("http://127.0.0.1:12150"), provider.GetRequiredService<DispatcherClient>().Url);
    }
}
