using System.Text.Json.Nodes;

namespace Dispatcher.Protocol;

/// <summary>What a <see cref="IProtocolHandler"/> answers: the reply's <c>args</c>, or an error that becomes the error envelope.</summary>
public sealed class ProtocolResult
{
    private ProtocolResult(JsonNode? args, ProtocolErrorCode? errorCode, string? errorMessage, byte[]? rawArgs)
    {
        Args = args;
        ErrorCode = errorCode;
        ErrorMessage = errorMessage;
        RawArgs = rawArgs;
    }

    /// <summary>Gets the reply's <c>args</c> (<see langword="null"/> for an error, or a result written as raw JSON).</summary>
    public JsonNode? Args { get; }

    /// <summary>Gets the error code, or <see langword="null"/> for a success.</summary>
    public ProtocolErrorCode? ErrorCode { get; }

    /// <summary>Gets the error message sent to the client, or <see langword="null"/> for a success.</summary>
    public string? ErrorMessage { get; }

    /// <summary>Gets a value indicating whether this is an error.</summary>
    public bool IsError => ErrorCode is not null;

    /// <summary>Gets the <c>args</c> already written as UTF-8 JSON (big built-in replies), or <see langword="null"/>.</summary>
    internal byte[]? RawArgs { get; }

    /// <summary>Gets the reason to close the connection after this reply (too many failed logins), or <see langword="null"/>.</summary>
    internal string? CloseReason { get; init; }

    /// <summary>A success whose reply carries <paramref name="args"/>.</summary>
    /// <param name="args">The reply's <c>args</c>; <see langword="null"/> sends <c>{}</c>.</param>
    /// <returns>The result.</returns>
    public static ProtocolResult Ok(JsonNode? args = null) => new(args ?? new JsonObject(), null, null, null);

    /// <summary>An error. The message goes to the client as it is: name what was wrong, and leak no secret or exception text.</summary>
    /// <param name="code">The error code.</param>
    /// <param name="message">The message.</param>
    /// <returns>The result.</returns>
    public static ProtocolResult Error(ProtocolErrorCode code, string message)
    {
        ArgumentNullException.ThrowIfNull(message);
        return new(null, code, message, null);
    }

    internal static ProtocolResult ErrorAndClose(ProtocolErrorCode code, string message) => new(null, code, message, null) { CloseReason = message };

    internal static ProtocolResult OkRaw(byte[] utf8Args) => new(null, null, null, utf8Args);
}
