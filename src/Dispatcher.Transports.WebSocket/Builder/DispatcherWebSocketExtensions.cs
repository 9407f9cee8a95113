using Dispatcher.Transports.WebSocket;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Maps the dispatcher's WebSocket endpoint.</summary>
public static class DispatcherWebSocketEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Serves the sysadm dispatcher protocol over WebSockets at <paramref name="pattern"/> (sysadm clients connect to <c>/</c>).
    /// The endpoint brings its own WebSocket middleware; a plain HTTP request to it gets 400.
    /// </summary>
    /// <param name="endpoints">The endpoint route builder.</param>
    /// <param name="pattern">The route pattern.</param>
    /// <returns>A builder to add authorization, CORS or rate limiting to the endpoint.</returns>
    /// <exception cref="InvalidOperationException"><c>AddDispatcher().AddWebSocketTransport()</c> was not called.</exception>
    public static IEndpointConventionBuilder MapDispatcherWebSocket(this IEndpointRouteBuilder endpoints, string pattern = "/")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(pattern);
        if (endpoints.ServiceProvider.GetService<DispatcherWebSocketServer>() is null)
        {
            throw new InvalidOperationException(
                "Unable to find the dispatcher's WebSocket services. Call 'services.AddDispatcher().AddWebSocketTransport()' when configuring the services.");
        }

        var app = endpoints.CreateApplicationBuilder();
        app.UseWebSockets();
        app.Run(static async context =>
            {
                if (!context.WebSockets.IsWebSocketRequest)
                {
                    context.Response.StatusCode = StatusCodes.Status400BadRequest;
                    await context.Response.WriteAsync("This endpoint speaks the dispatcher protocol over WebSocket only.", context.RequestAborted);
                    return;
                }

                var server = context.RequestServices.GetRequiredService<DispatcherWebSocketServer>();
                using var socket = await context.WebSockets.AcceptWebSocketAsync();
                await server.RunAsync(socket, context.Connection.RemoteIpAddress?.ToString() ?? "unknown", context.User, context.RequestAborted);
            });
        return endpoints.Map(pattern, app.Build()).WithDisplayName("Dispatcher WebSocket");
    }
}

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
            services.AddOptions<WebSocketTransportOptions>().ValidateOnStart();
            services.AddSingleton<IConfigureOptions<WebSocketTransportOptions>>(sp => new ConfigureNamedOptions<WebSocketTransportOptions>(
                Options.DefaultName, o => sp.GetService<IConfiguration>()?.GetSection(WebSocketTransportOptions.SectionName).Bind(o)));
            services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<WebSocketTransportOptions>, WebSocketTransportOptionsValidator>());
            services.TryAddSingleton(DispatcherWebSocketServer.Create);
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
