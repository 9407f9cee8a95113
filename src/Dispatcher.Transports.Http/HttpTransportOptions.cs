namespace Dispatcher.Transports.Http;

/// <summary>Options of the HTTP transport, bound from the <c>Dispatcher:Http</c> configuration section.</summary>
public class HttpTransportOptions
{
    /// <summary>The name of the configuration section the options are bound from.</summary>
    public const string SectionName = "Dispatcher:Http";

    /// <summary>Gets or sets the largest request body accepted; a larger one gets 413 without being read.</summary>
    /// <value>The default value is 1 048 576 bytes (1 MiB).</value>
    public int MaxRequestBodyBytes { get; set; } = 1024 * 1024;

    /// <summary>
    /// Gets or sets how many events may wait for one <c>GET /events/dispatcher</c> reader; a reader that lets more pile up
    /// is disconnected (it can resume with <c>Last-Event-ID</c>).
    /// </summary>
    /// <value>The default value is 16 384.</value>
    public int EventStreamQueueCapacity { get; set; } = 16_384;

    /// <summary>Gets or sets how many bytes of events may wait for one <c>GET /events/dispatcher</c> reader before it is disconnected.</summary>
    /// <value>The default value is 16 777 216 (16 MiB).</value>
    public long EventStreamQueueBytes { get; set; } = 16L * 1024 * 1024;

    /// <summary>
    /// Gets or sets how often an idle event stream gets a comment line, which keeps proxies from closing it and ends it once the
    /// reader's token expired or was revoked.
    /// </summary>
    /// <value>The default value is 15 seconds.</value>
    public TimeSpan EventStreamHeartbeat { get; set; } = TimeSpan.FromSeconds(15);
}
