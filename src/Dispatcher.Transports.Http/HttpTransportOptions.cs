namespace Dispatcher.Transports.Http;

/// <summary>Options of the HTTP transport, bound from the <c>Dispatcher:Http</c> configuration section.</summary>
public class HttpTransportOptions
{
    /// <summary>The name of the configuration section the options are bound from.</summary>
    public const string SectionName = "Dispatcher:Http";

    /// <summary>Gets or sets the largest request body accepted; a larger one gets 413 without being read.</summary>
    /// <value>The default value is 1 048 576 bytes (1 MiB).</value>
    public int MaxRequestBodyBytes { get; set; } = 1024 * 1024;
}
