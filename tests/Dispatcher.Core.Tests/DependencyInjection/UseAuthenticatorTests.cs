using Dispatcher.Protocol;
using Microsoft.Extensions.DependencyInjection;

namespace Dispatcher.Tests.DependencyInjection;

public sealed class UseAuthenticatorTests
{
    [Fact]
    public async Task UseAuthenticator_Delegate_IsTheAuthenticator()
    {
        var services = new ServiceCollection();
        services.AddDispatcher().UseAuthenticator((user, password, _) =>
            ValueTask.FromResult<DispatcherUser?>(password == "pw" ? new DispatcherUser(user, DispatcherAccess.Read) : null));
        await using var provider = services.BuildServiceProvider();
        var authenticator = provider.GetRequiredService<IDispatcherAuthenticator>();

        Assert.Equal("alice", (await authenticator.AuthenticateAsync("alice", "pw"))?.Name);
        Assert.Null(await authenticator.AuthenticateAsync("alice", "wrong"));
    }

    [Fact]
    public async Task UseAuthenticator_ReplacesTheOneSetBefore_WhicheverForm()
    {
        var instance = new FixedAuthenticator();
        var services = new ServiceCollection();
        services.AddDispatcher()
            .UseAuthenticator<FixedAuthenticator>()
            .UseAuthenticator((_, _, _) => ValueTask.FromResult<DispatcherUser?>(null))
            .UseAuthenticator(instance);
        await using var provider = services.BuildServiceProvider();

        Assert.Same(instance, Assert.Single(provider.GetServices<IDispatcherAuthenticator>()));
    }

    private sealed class FixedAuthenticator : IDispatcherAuthenticator
    {
        public ValueTask<DispatcherUser?> AuthenticateAsync(string username, string password, CancellationToken cancellationToken = default) =>
            ValueTask.FromResult<DispatcherUser?>(new DispatcherUser(username, DispatcherAccess.Full));
    }
}
