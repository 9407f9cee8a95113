namespace Dispatcher.Protocol;

/// <summary>
/// Local login, as the sysadm GUI's tray and the <c>sysadm</c> command line use it: <c>rpc/auth</c> (or HTTP Basic) with a configured
/// user name and an empty password, accepted only from the loopback address. Off by default.
/// </summary>
/// <remarks>
/// Risk: the server cannot tell which local account opened a loopback connection, so every process on this machine, of any user,
/// can log in as any user listed here. Behind a reverse proxy on the same machine, every remote client arrives from loopback too,
/// and would be let in without a password. Enable it only on a single-user machine with no proxy in front, and prefer
/// <see cref="DispatcherAccess.Read"/> for the users listed.
/// </remarks>
public sealed class LocalLoginOptions
{
    /// <summary>The configuration section the options are bound from.</summary>
    public const string SectionName = "Dispatcher:Protocol:LocalLogin";

    /// <summary>Gets or sets a value indicating whether local login is on.</summary>
    /// <value>The default value is <see langword="false"/>.</value>
    public bool Enabled { get; set; }

    /// <summary>Gets the users who may log in locally without a password, with the access each gets.</summary>
    public IDictionary<string, DispatcherAccess> Users { get; } = new Dictionary<string, DispatcherAccess>(StringComparer.Ordinal);
}
