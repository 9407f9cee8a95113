using Dispatcher;
using Dispatcher.Internal;
using Dispatcher.Protocol;
using Dispatcher.Running;
using Dispatcher.Storage;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the dispatcher in a service collection.</summary>
public static class DispatcherServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="IDispatcher"/>, its default <see cref="IJobRunner"/>, its options (bound from the <c>Dispatcher</c>
    /// configuration section when an <see cref="IConfiguration"/> is registered, then <paramref name="configure"/>, then
    /// validated at start-up), and a hosted service that stops it with the host. This operation is idempotent.
    /// </summary>
    /// <param name="services">The services.</param>
    /// <param name="configure">Configures the options after configuration binding, or <see langword="null"/>.</param>
    /// <returns>A builder to add queues or replace parts.</returns>
    public static IDispatcherBuilder AddDispatcher(this IServiceCollection services, Action<DispatcherOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        if (!services.Any(d => d.ServiceType == typeof(DispatcherMarkerService)))
        {
            services.AddSingleton<DispatcherMarkerService>();
            services.AddBoundOptions<DispatcherOptions, DispatcherOptionsValidator>(DispatcherOptions.SectionName);
            services.TryAddSingleton(TimeProvider.System);
            services.TryAddSingleton(JobRunners.CreateDefault);
            services.TryAddSingleton<DefaultDispatcher>();
            services.TryAddSingleton<IDispatcher>(sp => sp.GetRequiredService<DefaultDispatcher>());

            // The dispatcher's store (for health checks: IJobStore.Health); null when jobs are kept in memory only.
            services.TryAddSingleton<IJobStore>(sp => sp.GetRequiredService<DefaultDispatcher>().Store!);
            services.AddHostedService<DispatcherHostedService>();

            // The protocol layer shared by the transports.
            services.AddBoundOptions<DispatcherProtocolOptions, DispatcherProtocolOptionsValidator>(DispatcherProtocolOptions.SectionName);
            services.TryAddSingleton<TokenService>();
            services.TryAddSingleton<LoginThrottle>();
            services.TryAddSingleton<DispatcherEventFeed>();
            services.TryAddSingleton<AuditTrail>();
            services.TryAddSingleton<DispatcherEventLog>();
            ProtocolBuilderExtensions.AddProtocolServices(services);
        }

        if (configure is not null)
        {
            services.Configure(configure);
        }

        return new DispatcherBuilder(services);
    }

    private sealed record DispatcherBuilder(IServiceCollection Services) : IDispatcherBuilder;
}

/// <summary>An authenticator made of a delegate.</summary>
internal sealed class DelegateAuthenticator(Func<string, string, CancellationToken, ValueTask<DispatcherUser?>> authenticate) : IDispatcherAuthenticator
{
    public ValueTask<DispatcherUser?> AuthenticateAsync(string username, string password, CancellationToken cancellationToken = default) =>
        authenticate(username, password, cancellationToken);
}

/// <summary>Configures the dispatcher registered by <c>AddDispatcher</c>.</summary>
public interface IDispatcherBuilder
{
    /// <summary>Gets the services the dispatcher is registered in.</summary>
    IServiceCollection Services { get; }
}

/// <summary>Adds queues and parts to the dispatcher.</summary>
public static class DispatcherBuilderExtensions
{
    /// <summary>Adds a queue, or changes the limit of an existing one.</summary>
    /// <param name="builder">The builder.</param>
    /// <param name="name">The queue name.</param>
    /// <param name="maxConcurrency">How many of its jobs may run at once; 0 for no limit.</param>
    /// <returns>The builder.</returns>
    public static IDispatcherBuilder AddQueue(this IDispatcherBuilder builder, string name, int maxConcurrency = 1)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentOutOfRangeException.ThrowIfNegative(maxConcurrency);
        builder.Services.Configure<DispatcherOptions>(o => o.Queues[name] = new QueueOptions { MaxConcurrency = maxConcurrency });
        return builder;
    }

    /// <summary>
    /// Sets the authenticator that checks user names and passwords for the transports (in-band <c>rpc/auth</c> and HTTP Basic),
    /// replacing any set before: there is one authenticator.
    /// </summary>
    /// <typeparam name="TAuthenticator">The authenticator type, resolved as a singleton.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <returns>The builder.</returns>
    public static IDispatcherBuilder UseAuthenticator<TAuthenticator>(this IDispatcherBuilder builder)
        where TAuthenticator : class, IDispatcherAuthenticator
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.RemoveAll<IDispatcherAuthenticator>();
        builder.Services.AddSingleton<IDispatcherAuthenticator, TAuthenticator>();
        return builder;
    }

    /// <summary>Sets an authenticator instance, replacing any set before (see <see cref="UseAuthenticator{TAuthenticator}(IDispatcherBuilder)"/>).</summary>
    /// <param name="builder">The builder.</param>
    /// <param name="authenticator">The authenticator; the container does not dispose it.</param>
    /// <returns>The builder.</returns>
    public static IDispatcherBuilder UseAuthenticator(this IDispatcherBuilder builder, IDispatcherAuthenticator authenticator)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(authenticator);
        builder.Services.RemoveAll<IDispatcherAuthenticator>();
        builder.Services.AddSingleton(authenticator);
        return builder;
    }

    /// <summary>
    /// Sets a delegate as the authenticator, replacing any set before (see <see cref="UseAuthenticator{TAuthenticator}(IDispatcherBuilder)"/>).
    /// </summary>
    /// <param name="builder">The builder.</param>
    /// <param name="authenticate">Gets a user name, a password and a cancellation token; returns the user, or <see langword="null"/> to refuse.</param>
    /// <returns>The builder.</returns>
    public static IDispatcherBuilder UseAuthenticator(
        this IDispatcherBuilder builder, Func<string, string, CancellationToken, ValueTask<DispatcherUser?>> authenticate)
    {
        ArgumentNullException.ThrowIfNull(authenticate);
        return builder.UseAuthenticator(new DelegateAuthenticator(authenticate));
    }

    /// <summary>Adds an enricher of the events sent to subscribers (for example one that sets <c>event_system</c> for the host's jobs).</summary>
    /// <typeparam name="TEnricher">The enricher type, resolved as a singleton.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <returns>The builder.</returns>
    public static IDispatcherBuilder AddEventEnricher<TEnricher>(this IDispatcherBuilder builder)
        where TEnricher : class, IDispatcherEventEnricher
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IDispatcherEventEnricher, TEnricher>());
        return builder;
    }

    /// <summary>
    /// Sets the policy that approves, rewrites or rejects every job clients submit over the transports (see <see cref="IJobPolicy"/>).
    /// </summary>
    /// <typeparam name="TPolicy">The policy type, resolved as a singleton.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <returns>The builder.</returns>
    public static IDispatcherBuilder UseJobPolicy<TPolicy>(this IDispatcherBuilder builder)
        where TPolicy : class, IJobPolicy
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.RemoveAll<IJobPolicy>();
        builder.Services.AddSingleton<IJobPolicy, TPolicy>();
        return builder;
    }

    /// <summary>Configures the protocol shared by the transports (tokens, login throttling, event updates, host access mapping).</summary>
    /// <param name="builder">The builder.</param>
    /// <param name="configure">Configures the options, after the <c>Dispatcher:Protocol</c> configuration section.</param>
    /// <returns>The builder.</returns>
    public static IDispatcherBuilder ConfigureProtocol(this IDispatcherBuilder builder, Action<DispatcherProtocolOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.Configure(configure);
        return builder;
    }

    /// <summary>Replaces the job runner (for example to run commands in a container, or a fake in tests).</summary>
    /// <typeparam name="TRunner">The runner type, resolved as a singleton.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <returns>The builder.</returns>
    public static IDispatcherBuilder UseJobRunner<TRunner>(this IDispatcherBuilder builder)
        where TRunner : class, IJobRunner
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.RemoveAll<IJobRunner>();
        builder.Services.AddSingleton<IJobRunner, TRunner>();
        return builder;
    }

    /// <summary>
    /// Replaces the job store (the file journal under <see cref="DispatcherOptions.DataDirectory"/>) by <typeparamref name="TStore"/>,
    /// for example a database. The dispatcher replays it when the host starts and waits for each job's record before starting the job.
    /// </summary>
    /// <typeparam name="TStore">The store type, resolved as a singleton; the container owns and disposes it.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <returns>The builder.</returns>
    public static IDispatcherBuilder UseJobStore<TStore>(this IDispatcherBuilder builder)
        where TStore : class, IJobStore
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.TryAddSingleton<TStore>();
        builder.Services.RemoveAll<JobStoreRegistration>();
        builder.Services.AddSingleton(sp => new JobStoreRegistration(sp.GetRequiredService<TStore>()));
        return builder;
    }
}
