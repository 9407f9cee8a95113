using Dispatcher.Transports.Http;
using Dispatcher.Transports.Http.Internal;
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
            services.AddBoundOptions<HttpTransportOptions, HttpTransportOptionsValidator>(HttpTransportOptions.SectionName);
            services.TryAddSingleton<HttpRequestHandler>();
            services.TryAddSingleton<EventStreamHandler>();
        }

        if (configure is not null)
        {
            services.Configure(configure);
        }

        return builder;
    }

    private sealed class HttpTransportOptionsValidator : IValidateOptions<HttpTransportOptions>
    {
        public ValidateOptionsResult Validate(string? name, HttpTransportOptions options)
        {
            if (options.MaxRequestBodyBytes < 1024)
            {
                return ValidateOptionsResult.Fail($"Dispatcher:Http:MaxRequestBodyBytes is {options.MaxRequestBodyBytes}; it must be at least 1024.");
            }

            if (options.EventStreamQueueCapacity < 1 || options.EventStreamQueueBytes < 1024)
            {
                return ValidateOptionsResult.Fail($"Dispatcher:Http:EventStreamQueueCapacity is {options.EventStreamQueueCapacity} and EventStreamQueueBytes {options.EventStreamQueueBytes}; they must be at least 1 and 1024.");
            }

            return options.EventStreamHeartbeat > TimeSpan.Zero
                ? ValidateOptionsResult.Success
                : ValidateOptionsResult.Fail($"Dispatcher:Http:EventStreamHeartbeat is {options.EventStreamHeartbeat}; it must be positive.");
        }
    }
}
