using System.Security.Cryptography;
using System.Text;
using Dispatcher.Protocol;
using Microsoft.Extensions.Options;

namespace Dispatcher.SampleHost;

/// <summary>One user from the <c>Users</c> configuration array.</summary>
public sealed class UserEntry
{
    /// <summary>Gets or sets the user name.</summary>
    public string Name { get; set; } = string.Empty;

    /// <summary>Gets or sets the password.</summary>
    public string Password { get; set; } = string.Empty;

    /// <summary>Gets or sets whether the user may run and kill jobs (otherwise: list and events only).</summary>
    public bool FullAccess { get; set; }
}

/// <summary>The users the sample host accepts.</summary>
public sealed class UsersOptions
{
    /// <summary>Gets the users.</summary>
    public List<UserEntry> Users { get; } = [];
}

/// <summary>Checks user names and passwords against configuration, comparing in constant time.</summary>
internal sealed class ConfigurationAuthenticator(IOptions<UsersOptions> options) : IDispatcherAuthenticator
{
    public ValueTask<DispatcherUser?> AuthenticateAsync(string username, string password, CancellationToken cancellationToken = default)
    {
        DispatcherUser? match = null;
        var given = SHA256.HashData(Encoding.UTF8.GetBytes(password));
        foreach (var user in options.Value.Users)
        {
            // Hash both sides so the comparison takes the same time whatever the lengths; check every user.
            var expected = SHA256.HashData(Encoding.UTF8.GetBytes(user.Password));
            if (CryptographicOperations.FixedTimeEquals(given, expected) && user.Name == username)
            {
                match = new DispatcherUser(user.Name, user.FullAccess ? DispatcherAccess.Full : DispatcherAccess.Read);
            }
        }

        return ValueTask.FromResult(match);
    }
}
