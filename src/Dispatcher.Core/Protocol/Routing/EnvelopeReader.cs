using System.Text.Json;

namespace Dispatcher.Protocol.Routing;

/// <summary>Parses request envelopes: the JSON (with a depth limit and only readable strings), then namespace, name, id and args.</summary>
internal static class EnvelopeReader
{
    private const string BadString = "The request holds a string that is not valid UTF-16 (an unpaired surrogate escape such as \\ud800).";

    /// <summary>Parses one whole request; on failure <paramref name="problem"/> says what was wrong.</summary>
    public static bool TryParse(ReadOnlyMemory<byte> utf8, int maxDepth, out JsonDocument document, out string problem)
    {
        try
        {
            document = JsonDocument.Parse(utf8, new JsonDocumentOptions { MaxDepth = maxDepth });
        }
        catch (JsonException ex)
        {
            document = null!;
            problem = $"Invalid JSON: {ex.Message}";
            return false;
        }

        if (!AllStringsValid(document.RootElement))
        {
            document.Dispose();
            document = null!;
            problem = BadString;
            return false;
        }

        problem = string.Empty;
        return true;
    }

    /// <summary>
    /// Takes a WebSocket envelope apart. Without an <c>args</c> member the whole object is the args, as the sysadm server read it.
    /// On failure, <paramref name="id"/> holds the id when it could be read, for the error reply.
    /// </summary>
    public static bool TryRead(JsonElement root, out string? id, out string @namespace, out string name, out JsonElement args, out string problem)
    {
        id = null;
        @namespace = name = string.Empty;
        args = default;
        if (root.ValueKind != JsonValueKind.Object)
        {
            problem = $"A request must be a JSON object, not {JsonArgs.Describe(root.ValueKind)}.";
            return false;
        }

        if (root.TryGetProperty("id", out var idElement))
        {
            switch (idElement.ValueKind)
            {
                case JsonValueKind.String:
                    id = idElement.GetString();
                    break;
                case JsonValueKind.Number:
                    id = idElement.GetRawText();
                    break;
                case JsonValueKind.Null:
                    break;
                default:
                    problem = $"\"id\" must be a string, not {JsonArgs.Describe(idElement.ValueKind)}.";
                    return false;
            }
        }

        if (!JsonArgs.TryGetString(root, "namespace", out @namespace, out problem) || !JsonArgs.TryGetString(root, "name", out name, out problem))
        {
            return false;
        }

        args = root.TryGetProperty("args", out var a) ? a : root;
        return true;
    }

    /// <summary>A REST body: the args object, or a whole envelope whose <c>args</c> member is used.</summary>
    public static bool TryReadBody(JsonElement root, out JsonElement args, out string problem)
    {
        args = default;
        if (root.ValueKind != JsonValueKind.Object)
        {
            problem = $"The body must be a JSON object, not {JsonArgs.Describe(root.ValueKind)}.";
            return false;
        }

        var isEnvelope = root.TryGetProperty("args", out var inner)
            && (root.TryGetProperty("namespace", out _) || root.TryGetProperty("name", out _) || root.TryGetProperty("id", out _));
        args = isEnvelope ? inner : root;
        problem = string.Empty;
        return true;
    }

    /// <summary>
    /// System.Text.Json parses an unpaired surrogate escape (<c>"\ud800"</c>) but throws when it is read as a string. Checking every
    /// string and member name once, right after parsing, keeps that bad input from reaching any handler.
    /// </summary>
    private static bool AllStringsValid(JsonElement element)
    {
        try
        {
            switch (element.ValueKind)
            {
                case JsonValueKind.String:
                    _ = element.GetString();
                    return true;
                case JsonValueKind.Array:
                    return element.EnumerateArray().All(AllStringsValid);
                case JsonValueKind.Object:
                    return element.EnumerateObject().All(p => p.Name is not null && AllStringsValid(p.Value));
                default:
                    return true;
            }
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }
}
