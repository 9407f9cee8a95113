using System.Diagnostics.CodeAnalysis;

namespace Dispatcher.Protocol;

/// <summary>
/// The routes of the protocol, built once from every <see cref="ProtocolRoute"/> registered in the host's services. Two different
/// routes for one <c>namespace/name</c> stop the host at start-up with a message that names both.
/// </summary>
public sealed class ProtocolRouteTable
{
    private readonly Dictionary<string, Entry> _routes = new(StringComparer.Ordinal);
    private readonly IServiceProvider _services;

    internal ProtocolRouteTable(IEnumerable<ProtocolRoute> routes, IServiceProvider services)
    {
        _services = services;
        foreach (var route in routes)
        {
            if (_routes.TryGetValue(route.Path, out var existing))
            {
                throw new InvalidOperationException(
                    $"The protocol route '{route.Path}' is registered twice. Register each namespace/name once (AddProtocolHandler).");
            }

            _routes[route.Path] = new Entry(route);
        }

        Routes = [.. _routes.Values.Select(e => e.Route).OrderBy(r => r.Path, StringComparer.Ordinal)];
    }

    /// <summary>Gets every route, ordered by <c>namespace/name</c>.</summary>
    public IReadOnlyList<ProtocolRoute> Routes { get; }

    /// <summary>Finds the route of a request.</summary>
    /// <param name="namespace">The namespace (any case).</param>
    /// <param name="name">The name (any case).</param>
    /// <param name="route">The route, when there is one.</param>
    /// <returns><see langword="true"/> when the table has the route.</returns>
    public bool TryGetRoute(string @namespace, string name, [NotNullWhen(true)] out ProtocolRoute? route)
    {
        ArgumentNullException.ThrowIfNull(@namespace);
        ArgumentNullException.ThrowIfNull(name);
        if (_routes.TryGetValue(@namespace.ToLowerInvariant() + "/" + name.ToLowerInvariant(), out var entry))
        {
            route = entry.Route;
            return true;
        }

        route = null;
        return false;
    }

    internal IProtocolHandler HandlerOf(ProtocolRoute route)
    {
        var entry = _routes[route.Path];
        return entry.Handler ??= route.Handler(_services);
    }

    private sealed class Entry(ProtocolRoute route)
    {
        public ProtocolRoute Route { get; } = route;

        public IProtocolHandler? Handler { get; set; }
    }
}
