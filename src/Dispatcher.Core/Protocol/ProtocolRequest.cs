using System.Diagnostics.CodeAnalysis;
using System.Text.Json;

namespace Dispatcher.Protocol;

/// <summary>One request as a <see cref="IProtocolHandler"/> sees it.</summary>
public sealed class ProtocolRequest
{
    internal ProtocolRequest(string @namespace, string name, string? id, JsonElement args, ProtocolConnection connection)
    {
        Namespace = @namespace;
        Name = name;
        Id = id;
        Args = args;
        Connection = connection;
    }

    /// <summary>Gets the request's namespace, lower-cased.</summary>
    public string Namespace { get; }

    /// <summary>Gets the request's name, lower-cased.</summary>
    public string Name { get; }

    /// <summary>Gets the id the client chose, or <see langword="null"/> when it sent none (REST).</summary>
    public string? Id { get; }

    /// <summary>
    /// Gets the request's <c>args</c> (the whole request object when it had no <c>args</c> member). Valid only until the handler's
    /// task completes: copy what you keep (<see cref="JsonElement.Clone"/>).
    /// </summary>
    public JsonElement Args { get; }

    /// <summary>Gets the connection the request came on: its user, access and address.</summary>
    public ProtocolConnection Connection { get; }

    /// <summary>Gets the args' <c>action</c> member, lower-cased, or <see langword="null"/> when there is no string <c>action</c>.</summary>
    public string? Action => TryGetString("action", out var action) ? action.ToLowerInvariant() : null;

    /// <summary>Reads a string member of the args, matching its name without regard to case as sysadm servers do.</summary>
    /// <param name="member">The member name.</param>
    /// <param name="value">The string, when found.</param>
    /// <returns><see langword="true"/> when the args are an object with that member and it is a string.</returns>
    public bool TryGetString(string member, [NotNullWhen(true)] out string? value)
    {
        ArgumentNullException.ThrowIfNull(member);
        if (JsonArgs.TryGetProperty(Args, member, out var element) && element.ValueKind == JsonValueKind.String)
        {
            value = element.GetString()!;
            return true;
        }

        value = null;
        return false;
    }
}
