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

    /// <summary>
    /// Gets or sets how many bytes of replies and event frames together may wait to be sent to one client before it is
    /// disconnected (status 1008). One frame larger than this still goes out when nothing else waits.
    /// </summary>
    /// <value>The default value is 16 777 216 (16 MiB).</value>
    public long SendQueueBytes { get; set; } = 16L * 1024 * 1024;

    /// <summary>
    /// Gets the origins (such as <c>https://dashboard.example.com</c>) whose browser pages may open the WebSocket besides the
    /// host's own. A browser always sends <c>Origin</c>; a request from any other site's page is refused with 403 (a page of
    /// another site could otherwise act with the user's cookies or host authentication). Same-origin pages and clients that send
    /// no <c>Origin</c>, or one that is not a web origin (sysadm clients send <c>sysadm-client</c>), always pass. <c>*</c> allows
    /// every origin.
    /// </summary>
    /// <value>Empty by default: only same-origin browser pages.</value>
    public IList<string> AllowedOrigins { get; } = [];

    /// <summary>Gets or sets how long a connection may stay without receiving a message before the server closes it.</summary>
    /// <value>The default value is 10 minutes.</value>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Gets or sets how long the server waits for the client to answer its close frame before dropping the connection.</summary>
    /// <value>The default value is 5 seconds.</value>
    public TimeSpan CloseTimeout { get; set; } = TimeSpan.FromSeconds(5);
}
