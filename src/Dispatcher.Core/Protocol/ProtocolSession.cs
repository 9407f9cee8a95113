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

    /// <summary>The sequence number a subscription resumes after (<c>"since"</c>), or null for only new events; taken by the transport.</summary>
    public long? EventsSince { get; set; }

    /// <summary>The stream id the client's <see cref="EventsSince"/> came from, when it said.</summary>
    public string? EventsStream { get; set; }
}

/// <summary>The answer to one request: the envelope to send, its status code, and whether to close the connection after it.</summary>
internal sealed record ProtocolReply(JsonObject Envelope, int Status, string? CloseReason = null)
{
    public const int Ok = 200;

    /// <summary>
    /// Gets the <c>args</c> already written as UTF-8 JSON, for big replies (<c>list</c> of thousands of jobs) where building a
    /// JsonNode tree would cost more than the rest of the request; the envelope's own <c>args</c> is then null.
    /// </summary>
    public byte[]? RawArgs { get; init; }

    public JsonNode? Args => RawArgs is null ? Envelope["args"] : JsonNode.Parse(RawArgs);

    /// <summary>The whole envelope as UTF-8 JSON (the WebSocket frame).</summary>
    public byte[] ToFrame() => RawArgs is null
        ? Serialize(Envelope, static () => WireFormat.Envelope("error", "error", null, Unencodable()))
        : WireFormat.WithRawArgs(Envelope, RawArgs);

    /// <summary><c>{"args": ...}</c> as UTF-8 JSON (the REST body).</summary>
    public byte[] ToBody() => RawArgs is null
        ? Serialize(new JsonObject { ["args"] = Args?.DeepClone() }, static () => new JsonObject { ["args"] = Unencodable() })
        : WireFormat.WithRawArgs(new JsonObject { ["args"] = null }, RawArgs);

    /// <summary>
    /// Serializes, or, when the reply echoes text that JSON cannot encode (an unpaired surrogate from a <c>\ud800</c> escape),
    /// answers a 400 that echoes nothing.
    /// </summary>
    private static byte[] Serialize(JsonNode node, Func<JsonNode> fallback)
    {
        try
        {
            return System.Text.Encoding.UTF8.GetBytes(node.ToJsonString(WireFormat.JsonOptions));
        }
        catch (ArgumentException)
        {
            return System.Text.Encoding.UTF8.GetBytes(fallback().ToJsonString(WireFormat.JsonOptions));
        }
    }

    private static JsonObject Unencodable() =>
        WireFormat.ErrorArgs(400, "The request holds text that cannot be encoded as JSON (an unpaired surrogate).");
}
