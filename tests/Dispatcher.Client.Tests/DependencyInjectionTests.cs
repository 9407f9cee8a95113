using Microsoft.Extensions.DependencyInjection;

namespace Dispatcher.Client.Tests;

public sealed class DependencyInjectionTests
{
    [Fact]
    public async Task AddDispatcherClient_RegistersOneClientFromItsOptions()
    {
        var services = new ServiceCollection();
        services.AddDispatcherClient(o => o.Url = new Uri("http://127.0.0.1:1"));
        services.AddDispatcherClient(o => o.UserName = "u");
        services.AddDispatcherClient(o => o.Password = "p");
        await using var provider = services.BuildServiceProvider();
        var client = provider.GetRequiredService<DispatcherClient>();
        Assert.Same(client, provider.GetRequiredService<DispatcherClient>());
        Assert.Equal(new Uri("http://127.0.0.1:1"), client.Url);
        Assert.Single(services, d => d.ServiceType == typeof(DispatcherClient));
    }

    [Fact]
    public void Options_Invalid_NameTheOption()
    {
        Assert.Contains("Url is required", Assert.Throws<ArgumentException>(() => new DispatcherClient(new DispatcherClientOptions())).Message, StringComparison.Ordinal);
        Assert.Contains("ftp://x/", Assert.Throws<ArgumentException>(() => new DispatcherClient(new DispatcherClientOptions { Url = new Uri("ftp://x") })).Message, StringComparison.Ordinal);
        Assert.Contains("Password is required", Assert.Throws<ArgumentException>(() => new DispatcherClient(new DispatcherClientOptions { Url = new Uri("ws://x"), UserName = "u" })).Message, StringComparison.Ordinal);
    }
}
