using System.Security.Claims;

namespace Dispatcher.Protocol;

/// <summary>What a remote user may do with the dispatcher.</summary>
public enum DispatcherAccess
{
    /// <summary>Nothing: the user is not authenticated.</summary>
    None,

    /// <summary>List jobs, query and subscribe to events.</summary>
    Read,

    /// <summary>Everything Read allows, plus run and kill jobs. Running a job runs commands as the host's user.</summary>
    Full,
}

/// <summary>An authenticated remote user.</summary>
/// <param name="Name">The user name, for logs.</param>
/// <param name="Access">What the user may do.</param>
public sealed record DispatcherUser(string Name, DispatcherAccess Access);

/// <summary>
/// Checks user names and passwords for the in-band <c>rpc/auth</c> message (WebSocket) and <c>Authorization: Basic</c> (HTTP).
/// The host provides it; without one, only the host's own ASP.NET Core authentication (see
/// <see cref="DispatcherProtocolOptions.PrincipalAccess"/>) can authenticate.
/// </summary>
/// <remarks>Called concurrently from many connections: implementations must be thread-safe. Compare secrets in constant time.</remarks>
public interface IDispatcherAuthenticator
{
    /// <summary>Checks a user name and password.</summary>
    /// <param name="username">The user name.</param>
    /// <param name="password">The password.</param>
    /// <param name="cancellationToken">A token to cancel the check.</param>
    /// <returns>The user, or <see langword="null"/> when the credentials are wrong.</returns>
    ValueTask<DispatcherUser?> AuthenticateAsync(string username, string password, CancellationToken cancellationToken = default);
}

/// <summary>Options of the dispatcher protocol, shared by the WebSocket and HTTP transports.</summary>
public class DispatcherProtocolOptions
{
    /// <summary>The name of the configuration section the options are bound from.</summary>
    public const string SectionName = "Dispatcher:Protocol";

    /// <summary>Gets or sets how long an issued token stays valid after its last use (sliding expiry).</summary>
    /// <value>The default value is 5 minutes, the 300 seconds sysadm clients expect.</value>
    public TimeSpan TokenLifetime { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Gets or sets how many failed logins from one address are allowed within <see cref="FailedLoginWindow"/> before that address is blocked.</summary>
    /// <value>The default value is 5.</value>
    public int MaxFailedLogins { get; set; } = 5;

    /// <summary>Gets or sets the window in which failed logins are counted, and how long an address stays blocked.</summary>
    /// <value>The default value is 1 minute.</value>
    public TimeSpan FailedLoginWindow { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Gets or sets how often a running job's event is repeated with the output printed since the previous one.</summary>
    /// <value>The default value is 1 second, as the sysadm server did.</value>
    public TimeSpan EventUpdateInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Gets or sets the shape of the <c>dispatcher</c> events: <see cref="DispatcherEventShape.Sysadm"/> (what sysadm clients expect:
    /// events for the jobs an enricher recognises, a start marker and the flat finished log for the others) or
    /// <see cref="DispatcherEventShape.Nested"/> (pending, running and finished events with <c>process_details</c> for every job).
    /// </summary>
    /// <value>The default value is <see cref="DispatcherEventShape.Sysadm"/>.</value>
    public DispatcherEventShape EventShape { get; set; } = DispatcherEventShape.Sysadm;

    /// <summary>Gets or sets the deepest JSON nesting accepted in a request.</summary>
    /// <value>The default value is 32.</value>
    public int MaxJsonDepth { get; set; } = 32;

    /// <summary>
    /// Gets or sets how many finished jobs a <c>history</c> reply gives when the request sets no <c>limit</c>. The default equals
    /// the default <see cref="DispatcherOptions.RetainedJobCount"/>, so a client written before pages existed still gets every
    /// retained job unless <see cref="MaxHistoryReplyBytes"/> cuts the page.
    /// </summary>
    /// <value>The default value is 1 000.</value>
    public int HistoryPageSize { get; set; } = 1000;

    /// <summary>Gets or sets the largest <c>limit</c> a <c>history</c> request may ask for; a larger one gets 400.</summary>
    /// <value>The default value is 10 000.</value>
    public int MaxHistoryPageSize { get; set; } = 10_000;

    /// <summary>
    /// Gets or sets how many bytes a <c>history</c> page may hold: jobs stop being added once the next would pass it (a page always
    /// holds at least one job), and the reply's <c>next</c> cursor fetches the rest. 300 jobs of 1 MiB output each made one
    /// 315 MB reply before pages existed.
    /// </summary>
    /// <value>The default value is 16 777 216 (16 MiB).</value>
    public int MaxHistoryReplyBytes { get; set; } = 16 * 1024 * 1024;

    /// <summary>
    /// Gets or sets how many of the latest <c>events/dispatcher</c> frames are kept for subscribers that resume with <c>since</c>
    /// (after a reconnect); a subscriber that missed more gets a <c>gap</c> event telling it to list the jobs again. A burst of
    /// 1 000 one-command jobs makes about 3 000 events.
    /// </summary>
    /// <value>The default value is 10 000.</value>
    public int EventReplayCapacity { get; set; } = 10_000;

    /// <summary>Gets or sets how many bytes of frames the replay buffer keeps at most; the oldest go first (the latest always stays).</summary>
    /// <value>The default value is 16 777 216 (16 MiB).</value>
    public long EventReplayBytes { get; set; } = 16L * 1024 * 1024;

    /// <summary>Gets or sets the host name the <c>rpc/identify</c> reply gives, or <see langword="null"/> for the machine name.</summary>
    public string? HostName { get; set; }

    /// <summary>
    /// Gets or sets how a user authenticated by the host's own ASP.NET Core authentication (the connection's
    /// <see cref="ClaimsPrincipal"/>) maps to dispatcher access, or <see langword="null"/> to ignore that principal and use only
    /// <see cref="IDispatcherAuthenticator"/>. Return <see cref="DispatcherAccess.None"/> to fall back to in-band authentication.
    /// </summary>
    public Func<ClaimsPrincipal, DispatcherAccess>? PrincipalAccess { get; set; }
}
