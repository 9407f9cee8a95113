namespace Dispatcher.Dashboard;

/// <summary>Options of the dispatcher dashboard.</summary>
public sealed class DispatcherDashboardOptions
{
    /// <summary>
    /// Where the page finds the dispatcher's WebSocket endpoint: a path on the page's own host (default <c>/</c>, where
    /// <c>MapDispatcherWebSocket()</c> maps it), or an absolute <c>ws://</c> or <c>wss://</c> URL of another host.
    /// </summary>
    public string WebSocketUrl { get; set; } = "/";

    /// <summary>The page's title and heading (default <c>Dispatcher</c>), for example the host's name.</summary>
    public string Title { get; set; } = "Dispatcher";
}
