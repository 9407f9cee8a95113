using Dispatcher.Client;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers a <see cref="DispatcherClient"/>.</summary>
public static class DispatcherClientServiceCollectionExtensions
{
    /// <summary>
    /// Registers one <see cref="DispatcherClient"/> as a singleton, configured by <paramref name="configure"/> (and by any other
    /// configuration of <see cref="DispatcherClientOptions"/>, such as <c>services.Configure&lt;DispatcherClientOptions&gt;(section)</c>).
    /// Calling it again adds configuration, not a second client.
    /// </summary>
    /// <param name="services">The services.</param>
    /// <param name="configure">Sets the options.</param>
    /// <returns>The services.</returns>
    public static IServiceCollection AddDispatcherClient(this IServiceCollection services, Action<DispatcherClientOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<DispatcherClientOptions>();
        if (configure is not null)
        {
            options.Configure(configure);
        }

        services.TryAddSingleton(sp => new DispatcherClient(sp.GetRequiredService<IOptions<DispatcherClientOptions>>().Value));
        return services;
    }
}
