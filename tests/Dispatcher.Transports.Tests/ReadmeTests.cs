using System.Diagnostics;
using System.Net;
using Dispatcher.ReadmeTesting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Dispatcher.Transports.Tests;

/// <summary>
/// The C# blocks of README.md, read from the file at test time, compiled as a reader's project would compile them, and the
/// programs run. (The shell examples run against the sample host in Dispatcher.Samples.Tests.)
/// </summary>
public sealed class ReadmeTests
{
    private static readonly string[] Quiet = ["--Logging:LogLevel:Default=Warning"];

    [Fact]
    public void EveryCSharpBlock_IsOneThatATestCompiles()
    {
        var blocks = Readme.Blocks().Where(b => b.Language is "csharp" or "cs" or "c#").ToList();

        // The client section's blocks use Dispatcher.Client, which Dispatcher.Client.Tests checks (ReadmeSnippetTests).
        var ours = blocks.Where(b => !b.Text.Contains("DispatcherClient", StringComparison.Ordinal)).ToList();
        Assert.All(ours, b => Assert.True(b.Tag is "embedding" or "engine" or "blazor" or "ws-client",
            $"README.md line {b.Line}: a C# block without a <!-- test: … --> tag that a test knows ({b.Tag ?? "none"})."));
        Assert.Equal(4, ours.Count);
    }

    [Fact]
    public async Task EmbeddingBlock_CompilesInAWebProject_AndServesBothTransportsBesideMapGet()
    {
        var program = CSharpBlock.CompileCleanly(Readme.Block("embedding"), ProjectKind.Web);
        using var catcher = new HostCatcher();

        // Run it as `dotnet run -- --urls http://127.0.0.1:0` would; its app.Run() returns when the host is stopped.
        var run = Task.Run(() =>
        {
            catcher.Arm();
            return CSharpBlock.RunAsync(program, ["--urls", "http://127.0.0.1:0", .. Quiet], Timeout.InfiniteTimeSpan);
        });
        var services = await catcher.Built.WaitAsync(TestServer.Patience);
        var lifetime = services.GetRequiredService<IHostApplicationLifetime>();
        var started = new TaskCompletionSource();
        lifetime.ApplicationStarted.Register(started.SetResult);
        await Task.WhenAny(started.Task, run).Unwrap().WaitAsync(TestServer.Patience);
        try
        {
            var http = new Uri(services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single());

            await using (var ws = await WsClient.ConnectAsync(new Uri($"ws://{http.Authority}/")))
            {
                Assert.Equal("server", (string?)(await ws.RequestAsync("rpc", "identify", ""))["args"]!["type"]);
            }

            using var client = new HttpClient { BaseAddress = http, Timeout = TestServer.Patience };
            Assert.Equal("Hello World!", await client.GetStringAsync("/"));
            using var put = await client.PutAsync("/rpc/dispatcher", new StringContent("""{"action":"list"}""", System.Text.Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.Unauthorized, put.StatusCode);
            Assert.Contains("builds", services.GetRequiredService<IDispatcher>().Queues);
        }
        finally
        {
            lifetime.StopApplication();
            await run.WaitAsync(TestServer.Patience);
        }
    }

    [Fact]
    public async Task EngineBlock_CompilesInAConsoleProject_AndRunsToItsEnd()
    {
        var program = CSharpBlock.CompileCleanly(Readme.Block("engine"), ProjectKind.Console);

        // It kills its job, waits for the result and reads the events up to the job's last: it ends by itself.
        await CSharpBlock.RunAsync(program, Quiet, TestServer.Patience);
    }

    [Fact]
    public void BlazorBlock_Compiles_AndIsNeeded_TheQualifiedNameWithoutGlobalDoesNot()
    {
        var block = Readme.Block("blazor");
        CSharpBlock.CompileCleanly(block, ProjectKind.Web, library: true);

        var (_, problems) = CSharpBlock.Compile(block.Text.Replace("global::Dispatcher.", "Dispatcher.", StringComparison.Ordinal), ProjectKind.Web, library: true);

        // CS0426: the type name 'JobResult' does not exist in the type 'Dispatcher' (Microsoft.AspNetCore.Components.Dispatcher).
        Assert.Contains(problems, p => p.Id == "CS0426");
    }
}

/// <summary>
/// Catches the host that a program builds (the diagnostic event Microsoft.Extensions.Hosting raises for tools such as
/// WebApplicationFactory), so a test can wait for a README program's web app to start and then stop it. Only hosts built on
/// the async flow that called <see cref="Arm"/> are caught: tests running alongside build their own hosts.
/// </summary>
internal sealed class HostCatcher : IObserver<DiagnosticListener>, IObserver<KeyValuePair<string, object?>>, IDisposable
{
    private readonly AsyncLocal<bool> _armed = new();
    private readonly TaskCompletionSource<IServiceProvider> _built = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<IDisposable> _subscriptions = [];
    private readonly object _gate = new();

    public HostCatcher() => _subscriptions.Add(DiagnosticListener.AllListeners.Subscribe(this));

    /// <summary>Gets the services of the caught host, when it is built.</summary>
    public Task<IServiceProvider> Built => _built.Task;

    /// <summary>Catches hosts built from here on in this async flow (call it inside the task that runs the program).</summary>
    public void Arm() => _armed.Value = true;

    public void OnNext(DiagnosticListener value)
    {
        if (value.Name == "Microsoft.Extensions.Hosting")
        {
            lock (_gate)
            {
                _subscriptions.Add(value.Subscribe(this));
            }
        }
    }

    public void OnNext(KeyValuePair<string, object?> value)
    {
        if (value.Key == "HostBuilt" && _armed.Value && value.Value is Microsoft.Extensions.Hosting.IHost host)
        {
            _built.TrySetResult(host.Services);
        }
    }

    public void OnCompleted()
    {
    }

    public void OnError(Exception error)
    {
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _subscriptions.ForEach(s => s.Dispose());
        }
    }
}
