namespace Dispatcher.Protocol;

/// <summary>
/// Handles the requests of one protocol class (a <c>namespace/name</c> such as <c>sysadm/systemmanager</c>). Register it with
/// <c>AddProtocolHandler&lt;T&gt;(namespace, name, access)</c>; the route table calls it only for connections that have the
/// route's access, so the handler checks finer rules itself (for example an action that needs full access).
/// </summary>
/// <remarks>
/// Handlers are singletons called concurrently from many connections. Requests of one WebSocket connection are handled in
/// order, so a slow handler delays that connection's later requests: hand long work to the dispatcher as a job.
/// </remarks>
public interface IProtocolHandler
{
    /// <summary>Handles one request.</summary>
    /// <param name="request">The request: its args and the connection it came from.</param>
    /// <param name="cancellationToken">Cancelled when the connection or the host goes away.</param>
    /// <returns>The reply's args, or an error.</returns>
    ValueTask<ProtocolResult> HandleAsync(ProtocolRequest request, CancellationToken cancellationToken);
}
