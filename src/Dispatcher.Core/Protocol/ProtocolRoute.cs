namespace Dispatcher.Protocol;

/// <summary>
/// One entry of the route table: a <c>namespace/name</c>, the access a connection needs to use it, and its handler. The built-in
/// requests (<c>rpc/identify</c>, the <c>rpc/auth*</c> logins, <c>rpc/query</c>, <c>rpc/dispatcher</c>, <c>rpc/settings</c>,
/// <c>events/subscribe</c> and <c>events/unsubscribe</c>) are routes like any a host adds.
/// </summary>
public sealed class ProtocolRoute
{
    /// <summary>Creates a route (hosts add theirs with <c>AddProtocolHandler</c>).</summary>
    /// <param name="namespace">The namespace, such as <c>sysadm</c> (matched without regard to case).</param>
    /// <param name="name">The name, such as <c>systemmanager</c> (matched without regard to case).</param>
    /// <param name="requiredAccess">
    /// The access a connection needs: <see cref="DispatcherAccess.None"/> for requests answered before login (identify and the logins
    /// themselves), <see cref="DispatcherAccess.Read"/> or <see cref="DispatcherAccess.Full"/>.
    /// </param>
    /// <param name="handler">Resolves the handler from the host's services, once.</param>
    internal ProtocolRoute(string @namespace, string name, DispatcherAccess requiredAccess, Func<IServiceProvider, IProtocolHandler> handler)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(@namespace);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(handler);
        if (@namespace.Contains('/', StringComparison.Ordinal) || name.Contains('/', StringComparison.Ordinal))
        {
            throw new ArgumentException($"A route's namespace and name cannot contain '/': '{@namespace}/{name}'.", nameof(name));
        }

        if (!Enum.IsDefined(requiredAccess))
        {
            throw new ArgumentOutOfRangeException(nameof(requiredAccess), requiredAccess, "Not a DispatcherAccess value.");
        }

        Namespace = @namespace.ToLowerInvariant();
        Name = name.ToLowerInvariant();
        RequiredAccess = requiredAccess;
        Handler = handler;
    }

    /// <summary>Gets the namespace, lower-cased.</summary>
    public string Namespace { get; }

    /// <summary>Gets the name, lower-cased.</summary>
    public string Name { get; }

    /// <summary>Gets <c>namespace/name</c>.</summary>
    public string Path => Namespace + "/" + Name;

    /// <summary>Gets the access a connection needs to use the route.</summary>
    public DispatcherAccess RequiredAccess { get; }

    /// <summary>Gets or sets a value indicating whether <c>rpc/query</c> lists the route (the sysadm server listed its classes, not identify, the logins or events).</summary>
    /// <value>The default value is <see langword="true"/>.</value>
    public bool ListedInQuery { get; init; } = true;

    /// <summary>Gets or sets a value indicating whether only connections that deliver events may use the route (<c>events/*</c>).</summary>
    public bool NeedsEvents { get; init; }

    /// <summary>Gets the factory of the handler.</summary>
    internal Func<IServiceProvider, IProtocolHandler> Handler { get; }

    /// <inheritdoc />
    public override string ToString() => Path;
}
