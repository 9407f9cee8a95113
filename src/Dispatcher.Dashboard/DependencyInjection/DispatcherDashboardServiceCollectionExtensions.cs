using Dispatcher.Dashboard;
using Dispatcher.Dashboard.Internal;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the dispatcher dashboard.</summary>
public static class DispatcherDashboardServiceCollectionExtensions
{
    /// <summary>
    /// Registers the dashboard's page and its options; map it with <c>MapDispatcherDashboard</c>. The page talks to the
    /// dispatcher's WebSocket endpoint, so the host also needs <c>AddDispatcher().AddWebSocketTransport()</c> (or points
    /// <see cref="DispatcherDashboardOptions.WebSocketUrl"/> at another host). This operation is idempotent.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configure">Configures the options, or <see langword="null"/>.</param>
    /// <returns>The service collection.</returns>
    public static IServiceCollection AddDispatcherDashboard(this IServiceCollection services, Action<DispatcherDashboardOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        if (!services.Any(d => d.ServiceType == typeof(DashboardAssets)))
        {
            services.AddOptions<DispatcherDashboardOptions>().ValidateOnStart();
            services.AddSingleton<IValidateOptions<DispatcherDashboardOptions>, DashboardOptionsValidator>();
            services.AddSingleton<DashboardAssets>();
        }

        if (configure is not null)
        {
            services.Configure(configure);
        }

        return services;
    }
}
