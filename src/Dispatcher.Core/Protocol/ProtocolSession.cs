using System.Security.Claims;
using System.Text.Json.Nodes;

namespace Dispatcher.Protocol;

/// <summary>The protocol state of one connection (WebSocket) or one request (HTTP).</summary>
internal sealed class ProtocolSession(string transport, string remoteAddress, ClaimsPrincipal? principal, bool supportsEvents)
{
    public string Transport { get; } = transport;

    public string RemoteAddress { get; } = remoteAddress;

    public ClaimsPrincipal? Principal { get; } = principal;

    public bool SupportsEvents { get; } = supportsEvents;

    public DispatcherUser? User { get; set; }

    public string? Token { get; set; }

    /// <summary>Whether the client asked for <c>dispatcher</c> events (WebSocket only).</summary>
    public bool EventsSubscribed { get; set; }
}

/// <summary>The answer to one request: the envelope to send, its status code, and whether to close the connection after it.</summary>
internal sealed record ProtocolReply(JsonObject Envelope, int Status, string? CloseReason = null)
{
    public const int Ok = 200;

    public JsonNode? Args => Envelope["args"];
}
