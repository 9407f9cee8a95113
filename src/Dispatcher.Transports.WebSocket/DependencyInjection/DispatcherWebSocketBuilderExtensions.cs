using Dispatcher.Transports.WebSocket;
using Dispatcher.Transports.WebSocket.Internal;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the dispatcher's WebSocket transport.</summary>
public static class DispatcherWebSocketBuilderExtensions
{
    /// <summary>
    /// Registers the WebSocket transport and its options (bound from <c>Dispatcher:WebSocket</c>, then <paramref name="configure"/>).
    /// This operation is idempotent.
    /// </summary>
    /// <param name="builder">The dispatcher builder from <c>AddDispatcher</c>.</param>
    /// <param name="configure">Configures the options, or <see langword="null"/>.</param>
    /// <returns>The builder.</returns>
    public static IDispatcherBuilder AddWebSocketTransport(this IDispatcherBuilder builder, Action<WebSocketTransportOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        if (!services.Any(d => d.ServiceType == typeof(DispatcherWebSocketServer)))
        {
            services.AddBoundOptions<WebSocketTransportOptions, WebSocketTransportOptionsValidator>(WebSocketTransportOptions.SectionName);
            services.TryAddSingleton(DispatcherWebSocketServer.Create);
            services.TryAddEnumerable(ServiceDescriptor.Singleton<MatcherPolicy, WebSocketEndpointMatcherPolicy>());
        }

        if (configure is not null)
        {
            services.Configure(configure);
        }

        return builder;
    }

    private sealed class WebSocketTransportOptionsValidator : IValidateOptions<WebSocketTransportOptions>
    {
        public ValidateOptionsResult Validate(string? name, WebSocketTransportOptions options)
        {
            var errors = new List<string>();
            if (options.MaxMessageBytes < 1024)
            {
                errors.Add($"Dispatcher:WebSocket:MaxMessageBytes is {options.MaxMessageBytes}; it must be at least 1024.");
            }

            if (options.SendQueueCapacity < 1)
            {
                errors.Add($"Dispatcher:WebSocket:SendQueueCapacity is {options.SendQueueCapacity}; it must be at least 1.");
            }

            if (options.SendQueueBytes < 1024)
            {
                errors.Add($"Dispatcher:WebSocket:SendQueueBytes is {options.SendQueueBytes}; it must be at least 1024.");
            }

            if (options.IdleTimeout <= TimeSpan.Zero)
            {
                errors.Add($"Dispatcher:WebSocket:IdleTimeout is {options.IdleTimeout}; it must be positive.");
            }

            if (options.CloseTimeout <= TimeSpan.Zero)
            {
                errors.Add($"Dispatcher:WebSocket:CloseTimeout is {options.CloseTimeout}; it must be positive.");
            }

            return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
        }
    }
}
