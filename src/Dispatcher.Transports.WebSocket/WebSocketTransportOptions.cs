namespace Dispatcher.Transports.WebSocket;

/// <summary>Options of the WebSocket transport, bound from the <c>Dispatcher:WebSocket</c> configuration section.</summary>
public class WebSocketTransportOptions
{
    /// <summary>The name of the configuration section the options are bound from.</summary>
    public const string SectionName = "Dispatcher:WebSocket";

    /// <summary>Gets or sets the largest request message accepted; a larger one closes the connection with status 1009 and a reason.</summary>
    /// <value>The default value is 1 048 576 bytes (1 MiB).</value>
    public int MaxMessageBytes { get; set; } = 1024 * 1024;

    /// <summary>
    /// Gets or sets how many frames may wait to be sent to one client. A subscriber that lets more pile up is disconnected. Event
    /// frames are shared by all subscribers, so a queued frame costs a few bytes of its own: the default lets a burst of thousands
    /// of jobs through, and <see cref="SendQueueBytes"/> bounds the memory.
    /// </summary>
    /// <value>The default value is 16 384.</value>
    public int SendQueueCapacity { get; set; } = 16_384;

    /// <summary>Gets or sets how many bytes of event frames may wait to be sent to one client before it is disconnected.</summary>
    /// <value>The default value is 16 777 216 (16 MiB).</value>
    public long SendQueueBytes { get; set; } = 16L * 1024 * 1024;

    /// <summary>stub</summary>
    public IList<string> AllowedOrigins { get; } = [];

    /// <summary>Gets or sets how long a connection may stay without receiving a message before the server closes it.</summary>
    /// <value>The default value is 10 minutes.</value>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Gets or sets how long the server waits for the client to answer its close frame before dropping the connection.</summary>
    /// <value>The default value is 5 seconds.</value>
    public TimeSpan CloseTimeout { get; set; } = TimeSpan.FromSeconds(5);
}
