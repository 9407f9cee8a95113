using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Dispatcher.Tests.DependencyInjection;

public sealed class AddDispatcherTests
{
    [Fact]
    public async Task AddDispatcher_BindsConfiguration_AndAddQueueAddsAQueue()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Dispatcher:KillGracePeriod"] = "00:00:07",
            ["Dispatcher:Queues:builds:MaxConcurrency"] = "3",
            ["Dispatcher:Queues:pkg_queue:MaxConcurrency"] = "2",
        }).Build();
        var services = new ServiceCollection().AddSingleton<IConfiguration>(configuration);
        services.AddDispatcher().AddQueue("extra", 4);
        services.AddDispatcher(); // idempotent
        await using var provider = services.BuildServiceProvider();

        var options = provider.GetRequiredService<IOptions<DispatcherOptions>>().Value;
        var dispatcher = provider.GetRequiredService<IDispatcher>();

        Assert.Equal(TimeSpan.FromSeconds(7), options.KillGracePeriod);
        Assert.Equal(3, options.Queues["builds"].MaxConcurrency);
        Assert.Equal(2, options.Queues["pkg_queue"].MaxConcurrency);
        Assert.Equal(4, options.Queues["extra"].MaxConcurrency);
        Assert.Equal(["no_queue", "pkg_queue", "iocage_queue", "builds", "extra"], dispatcher.Queues);
        Assert.Same(dispatcher, provider.GetRequiredService<IDispatcher>());
    }

    [Fact]
    public async Task BadOptions_FailWithMessagesThatNameEachValue()
    {
        var services = new ServiceCollection();
        services.AddDispatcher(o =>
        {
            o.KillGracePeriod = TimeSpan.FromSeconds(-1);
            o.MaxOutputCharacters = 10;
            o.Queues["bad"] = new QueueOptions { MaxConcurrency = -2 };
        });
        await using var provider = services.BuildServiceProvider();

        var ex = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IDispatcher>());

        Assert.Contains(ex.Failures, f => f.Contains("Dispatcher:KillGracePeriod", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.Contains("Dispatcher:MaxOutputCharacters is 10", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.Contains("Dispatcher:Queues:bad:MaxConcurrency is -2", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Dispatcher_RunsAJob_ThroughDependencyInjection()
    {
        var services = new ServiceCollection();
        services.AddDispatcher();
        await using var provider = services.BuildServiceProvider();
        var dispatcher = provider.GetRequiredService<IDispatcher>();

        await dispatcher.EnqueueAsync(new JobRequest("di", ["echo from di"]));
        var result = await dispatcher.WaitForCompletionAsync("di").WaitAsync(TestDispatcher.Patience);

        Assert.Equal("from di\n", result.CommandResults[0].Output);
    }
}
