using Dispatcher.Transports.Http;
using Dispatcher.Transports.Http.Internal;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the dispatcher's HTTP transport.</summary>
public static class DispatcherHttpBuilderExtensions
{
    /// <summary>Registers the HTTP transport and its options (bound from <c>Dispatcher:Http</c>, then <paramref name="configure"/>). This operation is idempotent.</summary>
    /// <param name="builder">The dispatcher builder from <c>AddDispatcher</c>.</param>
    /// <param name="configure">Configures the options, or <see langword="null"/>.</param>
    /// <returns>The builder.</returns>
    public static IDispatcherBuilder AddHttpTransport(this IDispatcherBuilder builder, Action<HttpTransportOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        if (!services.Any(d => d.ServiceType == typeof(HttpRequestHandler)))
        {
            services.AddOptions<HttpTransportOptions>()
                .Validate(o => o.MaxRequestBodyBytes >= 1024, "Dispatcher:Http:MaxRequestBodyBytes must be at least 1024.")
                .ValidateOnStart();
            services.AddSingleton<IConfigureOptions<HttpTransportOptions>>(sp => new ConfigureNamedOptions<HttpTransportOptions>(
                Microsoft.Extensions.Options.Options.DefaultName, o => sp.GetService<IConfiguration>()?.GetSection(HttpTransportOptions.SectionName).Bind(o)));
            services.TryAddSingleton<HttpRequestHandler>();
        }

        if (configure is not null)
        {
            services.Configure(configure);
        }

        return builder;
    }
}
