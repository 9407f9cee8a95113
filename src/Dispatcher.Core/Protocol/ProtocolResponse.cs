using System.Text;
using System.Text.Json.Nodes;

namespace Dispatcher.Protocol;

/// <summary>What a transport sends for one request: the reply envelope (WebSocket) or body (REST), its status, and whether to close.</summary>
public sealed class ProtocolResponse
{
    private readonly JsonObject _envelope;
    private readonly byte[]? _rawArgs;

    internal ProtocolResponse(JsonObject envelope, int status, byte[]? rawArgs = null, string? closeReason = null)
    {
        _envelope = envelope;
        Status = status;
        _rawArgs = rawArgs;
        CloseReason = closeReason;
    }

    /// <summary>Gets the status: 200, or the error code (the REST transport's HTTP status).</summary>
    public int Status { get; }

    /// <summary>Gets the reason to close the connection after sending the reply (too many failed logins), or <see langword="null"/>.</summary>
    public string? CloseReason { get; }

    /// <summary>Gets the reply's <c>args</c>, parsed again when the reply was written as raw JSON (for tests and logs).</summary>
    internal JsonNode? Args => _rawArgs is null ? _envelope["args"] : JsonNode.Parse(_rawArgs);

    /// <summary>Gets the error message of an error reply, or <see langword="null"/>.</summary>
    public string? ErrorMessage => Status == 200 ? null : (string?)_envelope["args"]?["message"];

    /// <summary>The whole envelope as compact UTF-8 JSON: one WebSocket text frame.</summary>
    /// <returns>The frame.</returns>
    public byte[] ToFrame() => _rawArgs is null
        ? Serialize(_envelope, static () => WireFormat.Envelope("error", "error", null, Unencodable()))
        : WireFormat.WithRawArgs(_envelope, _rawArgs);

    /// <summary><c>{"args": ...}</c> as UTF-8 JSON: the REST body.</summary>
    /// <returns>The body.</returns>
    public byte[] ToBody() => _rawArgs is null
        ? Serialize(new JsonObject { ["args"] = _envelope["args"]?.DeepClone() }, static () => new JsonObject { ["args"] = Unencodable() })
        : WireFormat.WithRawArgs(new JsonObject { ["args"] = null }, _rawArgs);

    /// <summary>An error reply a transport makes itself (a binary frame, a body too large, a body that is not JSON).</summary>
    /// <param name="code">The error code.</param>
    /// <param name="message">The message.</param>
    /// <param name="id">The request id, when known.</param>
    /// <returns>The reply.</returns>
    public static ProtocolResponse Error(ProtocolErrorCode code, string message, string? id = null) =>
        new(WireFormat.Envelope("error", "error", id, WireFormat.ErrorArgs((int)code, message)), (int)code);

    /// <summary>
    /// Serializes, or, when the reply echoes text that JSON cannot encode (an unpaired surrogate from a <c>\ud800</c> escape), answers a
    /// 400 that echoes nothing.
    /// </summary>
    private static byte[] Serialize(JsonNode node, Func<JsonNode> fallback)
    {
        try
        {
            return Encoding.UTF8.GetBytes(node.ToJsonString(WireFormat.JsonOptions));
        }
        catch (ArgumentException)
        {
            return Encoding.UTF8.GetBytes(fallback().ToJsonString(WireFormat.JsonOptions));
        }
    }

    private static JsonObject Unencodable() =>
        WireFormat.ErrorArgs(400, "The request holds text that cannot be encoded as JSON (an unpaired surrogate).");
}
