using System.Text.Json;

namespace Dispatcher.Protocol.Routing;

/// <summary>Parses request envelopes: the JSON (with a depth limit and only readable strings), then namespace, name, id and args.</summary>
internal static class EnvelopeReader
{
    /// <summary>The longest request id accepted; a longer one gets a 400 that echoes only its start.</summary>
    public const int MaxIdLength = 256;

    /// <summary>How much of an oversized id, name or action an error message or log line repeats.</summary>
    private const int EchoLength = 64;

    /// <summary>Parses one whole request; on failure <paramref name="problem"/> says what was wrong (see <see cref="FindBadString"/>).</summary>
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

        if (FindBadString(document.RootElement) is { } bad)
        {
            document.Dispose();
            document = null!;
            problem = bad.Describe();
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

        if (id is { Length: > MaxIdLength })
        {
            problem = $"\"id\" is {id.Length} characters long; at most {MaxIdLength} are accepted.";
            id = Short(id);
            return false;
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
    /// Checks every string and member name once, right after parsing, so that bad text reaches no reader below:
    /// System.Text.Json parses an unpaired surrogate escape (<c>"\ud800"</c>) but throws when it is read as a string; and NUL
    /// cannot pass to the operating system, which would cut a command, an environment entry or a path short at it, silently
    /// (<c>echo a\u0000b</c> ran <c>echo a</c>). The path to a bad string is built only when one is found.
    /// </summary>
    private static BadString? FindBadString(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                string text;
                try
                {
                    text = element.GetString()!;
                }
                catch (InvalidOperationException)
                {
                    return new BadString(Nul: false);
                }

                return text.Contains('\0', StringComparison.Ordinal) ? new BadString(Nul: true) : null;
            case JsonValueKind.Array:
                var index = 0;
                foreach (var item in element.EnumerateArray())
                {
                    if (FindBadString(item) is { } bad)
                    {
                        bad.Path.Add($"[{index}]");
                        return bad;
                    }

                    index++;
                }

                return null;
            case JsonValueKind.Object:
                foreach (var member in element.EnumerateObject())
                {
                    string name;
                    try
                    {
                        name = member.Name;
                    }
                    catch (InvalidOperationException)
                    {
                        return new BadString(Nul: false);
                    }

                    if (name.Contains('\0', StringComparison.Ordinal))
                    {
                        var bad = new BadString(Nul: true) { IsName = true };
                        bad.Path.Add("." + Short(name));
                        return bad;
                    }

                    if (FindBadString(member.Value) is { } inner)
                    {
                        inner.Path.Add("." + Short(name));
                        return inner;
                    }
                }

                return null;
            default:
                return null;
        }
    }

    /// <summary>A string that cannot be taken: where (collected from the inside out) and why.</summary>
    private sealed record BadString(bool Nul)
    {
        public List<string> Path { get; } = [];

        public bool IsName { get; init; }

        public string Describe()
        {
            if (!Nul)
            {
                return "The request holds a string that is not valid UTF-16 (an unpaired surrogate escape such as \\ud800).";
            }

            var path = string.Concat(Enumerable.Reverse(Path)).TrimStart('.');
            return IsName
                ? $"The member name \"{path}\" holds a NUL character (U+0000), which the operating system would cut the text at."
                : $"\"{path}\" holds a NUL character (U+0000), which the operating system would cut the text at.";
        }
    }

    /// <summary>At most the first <see cref="EchoLength"/> characters, NUL shown as \0: what an error or a log line may repeat of client text.</summary>
    internal static string Short(string text) =>
        (text.Length <= EchoLength ? text : string.Concat(text.AsSpan(0, EchoLength), "…")).Replace("\0", "\\0", StringComparison.Ordinal);
}
