using Dispatcher.Internal;
using Dispatcher.Protocol;
using Dispatcher.Protocol.Routing;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Adds protocol classes, event channels and login methods to the dispatcher's protocol.</summary>
public static class ProtocolBuilderExtensions
{
    /// <summary>
    /// Adds a protocol class: requests to <c>namespace/name</c> from connections with at least <paramref name="requiredAccess"/> go to
    /// <typeparamref name="THandler"/>, resolved once as a singleton. The route shows in <c>rpc/query</c>. Registering the same handler
    /// for the same route again changes nothing; a second handler for one route stops the host at start-up.
    /// </summary>
    /// <typeparam name="THandler">The handler type.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <param name="namespace">The namespace, such as <c>sysadm</c>.</param>
    /// <param name="name">The name, such as <c>systemmanager</c>.</param>
    /// <param name="requiredAccess">The access a connection needs (<see cref="DispatcherAccess.Read"/> or <see cref="DispatcherAccess.Full"/>).</param>
    /// <returns>The builder.</returns>
    public static IDispatcherBuilder AddProtocolHandler<THandler>(this IDispatcherBuilder builder, string @namespace, string name,
        DispatcherAccess requiredAccess = DispatcherAccess.Read)
        where THandler : class, IProtocolHandler
    {
        ArgumentNullException.ThrowIfNull(builder);
        if (requiredAccess == DispatcherAccess.None)
        {
            throw new ArgumentOutOfRangeException(nameof(requiredAccess), requiredAccess,
                "A host's class needs Read or Full access; requests answered before login are the built-in identify and login routes.");
        }

        var route = new ProtocolRoute(@namespace, name, requiredAccess, sp => sp.GetRequiredService<THandler>());
        var services = builder.Services;
        if (services.Any(d => d.ServiceType == typeof(RouteRegistration) && d.ImplementationInstance is RouteRegistration r
            && r.Route.Path == route.Path && r.HandlerType == typeof(THandler)))
        {
            return builder;
        }

        services.TryAddSingleton<THandler>();
        services.AddSingleton(new RouteRegistration(route, typeof(THandler)));
        return builder;
    }

    /// <summary>
    /// Adds an event channel that clients subscribe to with <c>events/subscribe</c>; publish on it with
    /// <see cref="IProtocolEventPublisher"/>. This operation is idempotent.
    /// </summary>
    /// <param name="builder">The builder.</param>
    /// <param name="name">The channel name, such as <c>system-state</c>.</param>
    /// <param name="readAccess">The access a connection needs to subscribe.</param>
    /// <param name="replayLast">Whether a new subscriber first gets the last event (as sysadm's <c>system-state</c> and <c>life-preserver</c> did).</param>
    /// <returns>The builder.</returns>
    public static IDispatcherBuilder AddEventChannel(this IDispatcherBuilder builder, string name, DispatcherAccess readAccess = DispatcherAccess.Read,
        bool replayLast = true)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var channel = new ProtocolEventChannel(name, readAccess, replayLast);
        if (!builder.Services.Any(d => d.ImplementationInstance is ProtocolEventChannel c && c.Name == name && c.ReadAccess == readAccess
            && c.ReplayLast == replayLast))
        {
            builder.Services.AddSingleton(channel);
        }

        return builder;
    }

    /// <summary>
    /// Adds a login method: the <c>rpc/NAME</c> request it answers is routed to it, and the authenticator applies the failed-login
    /// throttle and issues the token. This operation is idempotent.
    /// </summary>
    /// <typeparam name="TMethod">The login method, resolved as a singleton.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <returns>The builder.</returns>
    public static IDispatcherBuilder AddLoginMethod<TMethod>(this IDispatcherBuilder builder)
        where TMethod : class, IProtocolLoginMethod
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IProtocolLoginMethod, TMethod>());
        return builder;
    }

    /// <summary>
    /// Configures local login (an empty password from loopback for the listed users; off by default; see
    /// <see cref="LocalLoginOptions"/> for its risk), after the <c>Dispatcher:Protocol:LocalLogin</c> configuration section.
    /// </summary>
    /// <param name="builder">The builder.</param>
    /// <param name="configure">Configures the options.</param>
    /// <returns>The builder.</returns>
    public static IDispatcherBuilder ConfigureLocalLogin(this IDispatcherBuilder builder, Action<LocalLoginOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.Configure(configure);
        return builder;
    }

    /// <summary>
    /// Turns on the sysadm server's event fields for the jobs it recognised by id: <c>sysadm_pkg…</c> (<c>event_system</c>
    /// <c>sysadm/pkg</c>, <c>action</c>, <c>pkg_log</c>, and when finished <c>updates_available</c> or <c>vulnerable_pkgs</c> and
    /// <c>impacts_pkgs</c>), <c>sysadm_update_runupdates::…</c> (<c>sysadm/update</c>, <c>update_log</c>), <c>sysadm_sourcectl_…</c>
    /// (<c>sysadm/sourcectl</c>, <c>update_log</c>) and <c>sysadm_iohyve…</c> (<c>sysadm/iohyve</c>). This operation is idempotent.
    /// </summary>
    /// <param name="builder">The builder.</param>
    /// <returns>The builder.</returns>
    public static IDispatcherBuilder AddSysadmEventEnrichers(this IDispatcherBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IDispatcherEventEnricher, Dispatcher.Protocol.Sysadm.SysadmEventEnricher>());
        return builder;
    }

    /// <summary>The protocol's own services and built-in routes. Called once by <c>AddDispatcher</c>.</summary>
    internal static void AddProtocolServices(IServiceCollection services)
    {
        services.AddBoundOptions<LocalLoginOptions, LocalLoginOptionsValidator>(LocalLoginOptions.SectionName);
        services.TryAddSingleton<PublicKeyStore>();
        services.TryAddSingleton<PasswordLoginMethod>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IProtocolLoginMethod, PasswordLoginMethod>(sp => sp.GetRequiredService<PasswordLoginMethod>()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IProtocolLoginMethod, KeyLoginMethod>());
        services.TryAddSingleton(sp => new ProtocolAuthenticator(sp.GetRequiredService<TokenService>(), sp.GetRequiredService<LoginThrottle>(),
            sp.GetRequiredService<PasswordLoginMethod>(), sp.GetRequiredService<IOptions<DispatcherProtocolOptions>>()));
        services.TryAddSingleton<ProtocolEventHub>();
        services.TryAddSingleton<IProtocolEventPublisher>(sp => sp.GetRequiredService<ProtocolEventHub>());
        services.TryAddSingleton(sp => new ProtocolRouteTable(BuiltInRoutes(sp).Concat(sp.GetServices<RouteRegistration>().Select(r => r.Route)), sp));
        services.TryAddSingleton(sp => new ProtocolServer(sp.GetRequiredService<ProtocolRouteTable>(), sp.GetRequiredService<ProtocolAuthenticator>(),
            sp.GetRequiredService<IOptions<DispatcherProtocolOptions>>(), sp.GetService<Logging.ILogger<ProtocolServer>>()));
    }

    private static IEnumerable<ProtocolRoute> BuiltInRoutes(IServiceProvider sp)
    {
        yield return new ProtocolRoute("rpc", "identify", DispatcherAccess.None,
            s => new IdentifyHandler(s.GetRequiredService<IOptions<DispatcherProtocolOptions>>())) { ListedInQuery = false };
        yield return new ProtocolRoute("rpc", "query", DispatcherAccess.Read, s => new QueryHandler(s.GetRequiredService<ProtocolRouteTable>()))
        {
            ListedInQuery = false,
        };
        yield return new ProtocolRoute("rpc", "dispatcher", DispatcherAccess.Read, s => new DispatcherActions(s.GetRequiredService<Dispatcher.IDispatcher>(),
            s.GetRequiredService<IOptions<DispatcherProtocolOptions>>().Value,
            (Logging.ILogger?)s.GetService<Logging.ILogger<DispatcherActions>>() ?? Logging.Abstractions.NullLogger.Instance,
            s.GetService<Hosting.IHostApplicationLifetime>()?.ApplicationStopping ?? CancellationToken.None,
            s.GetService<IJobPolicy>(), s.GetService<AuditTrail>()));
        yield return new ProtocolRoute("rpc", "settings", DispatcherAccess.Read, s => new SettingsHandler(s.GetRequiredService<PublicKeyStore>()));
        yield return new ProtocolRoute("rpc", "auth_token", DispatcherAccess.None,
            s => new TokenLoginHandler(s.GetRequiredService<ProtocolAuthenticator>())) { ListedInQuery = false };
        yield return new ProtocolRoute("rpc", "auth_clear", DispatcherAccess.None,
            s => new LogoutHandler(s.GetRequiredService<ProtocolAuthenticator>())) { ListedInQuery = false };
        yield return new ProtocolRoute("events", "subscribe", DispatcherAccess.Read,
            s => new EventsHandler(s.GetRequiredService<ProtocolEventHub>(), subscribe: true)) { ListedInQuery = false, NeedsEvents = true };
        yield return new ProtocolRoute("events", "unsubscribe", DispatcherAccess.Read,
            s => new EventsHandler(s.GetRequiredService<ProtocolEventHub>(), subscribe: false)) { ListedInQuery = false, NeedsEvents = true };
        foreach (var method in sp.GetServices<IProtocolLoginMethod>())
        {
            yield return new ProtocolRoute("rpc", method.RequestName, DispatcherAccess.None,
                s => new LoginHandler(s.GetRequiredService<ProtocolAuthenticator>(), method)) { ListedInQuery = false };
        }
    }

    private sealed class LocalLoginOptionsValidator : IValidateOptions<LocalLoginOptions>
    {
        public ValidateOptionsResult Validate(string? name, LocalLoginOptions options)
        {
            var errors = options.Users
                .Where(u => string.IsNullOrWhiteSpace(u.Key) || u.Value is not (DispatcherAccess.Read or DispatcherAccess.Full))
                .Select(u => $"Dispatcher:Protocol:LocalLogin:Users:{u.Key} is {u.Value}; each local user needs a name and Read or Full access.")
                .ToList();
            return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
        }
    }

    /// <summary>A host's route, with its handler type so that registering the same one twice is recognised.</summary>
    internal sealed record RouteRegistration(ProtocolRoute Route, Type HandlerType);
}
