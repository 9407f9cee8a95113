using System.Globalization;
using System.Text.Json;

namespace Dispatcher.Protocol;

/// <summary>
/// The object form of <c>events/subscribe</c> and <c>events/unsubscribe</c>:
/// <c>{"channels": ["dispatcher"], "since": N, "stream": S, "shape": "nested"}</c>. <c>channels</c> takes what the plain forms
/// take (a name or an array of names; <c>events</c> is accepted as another name for it); <c>since</c> (optional) is the last
/// <c>seq</c> the client saw, to be sent what followed it; <c>stream</c> (optional) is the stream id that number came from;
/// <c>shape</c> (optional, <c>sysadm</c> or <c>nested</c>) chooses the shape of this client's <c>dispatcher</c> events.
/// </summary>
internal readonly record struct EventResume(string[] Channels, long? Since, string? Stream, DispatcherEventShape? Shape = null)
{
    /// <summary>Parses the object form; returns what is wrong with it, or null.</summary>
    public static string? Parse(JsonElement args, out EventResume resume)
    {
        resume = new EventResume([], null, null);
        if (!args.TryGetProperty("channels", out var channels) && !args.TryGetProperty("events", out channels))
        {
            return "the object form needs \"channels\": an event name or an array of event names.";
        }

        string[] names;
        if (channels.ValueKind == JsonValueKind.String)
        {
            names = [channels.GetString()!];
        }
        else if (channels.ValueKind == JsonValueKind.Array && channels.GetArrayLength() > 0
            && channels.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String))
        {
            names = [.. channels.EnumerateArray().Select(e => e.GetString()!)];
        }
        else
        {
            return "\"channels\" must be an event name or a non-empty array of event names.";
        }

        long? since = null;
        if (args.TryGetProperty("since", out var sinceElement) && sinceElement.ValueKind != JsonValueKind.Null)
        {
            if (TryReadSequence(sinceElement, out var value))
            {
                since = value;
            }
            else
            {
                return "\"since\" must be a whole number from 0 (the \"seq\" of the last event received).";
            }
        }

        string? stream = null;
        if (args.TryGetProperty("stream", out var streamElement) && streamElement.ValueKind != JsonValueKind.Null)
        {
            if (streamElement.ValueKind != JsonValueKind.String)
            {
                return "\"stream\" must be the string the subscribe reply or a gap event gave.";
            }

            stream = streamElement.GetString();
        }

        DispatcherEventShape? shape = null;
        if (args.TryGetProperty("shape", out var shapeElement) && shapeElement.ValueKind != JsonValueKind.Null)
        {
            if (shapeElement.ValueKind != JsonValueKind.String
                || !Enum.TryParse<DispatcherEventShape>(shapeElement.GetString(), ignoreCase: true, out var parsed)
                || !Enum.IsDefined(parsed) || int.TryParse(shapeElement.GetString(), out _))
            {
                return "\"shape\" must be \"sysadm\" or \"nested\".";
            }

            shape = parsed;
        }

        resume = new EventResume(names, since, stream, shape);
        return null;
    }

    /// <summary>Reads a sequence number given as a JSON number or a numeric string (an SSE <c>Last-Event-ID</c> is text).</summary>
    public static bool TryReadSequence(JsonElement element, out long value)
    {
        value = 0;
        return element.ValueKind switch
        {
            JsonValueKind.Number => element.TryGetInt64(out value) && value >= 0,
            JsonValueKind.String => TryParseSequence(element.GetString(), out value),
            _ => false,
        };
    }

    /// <summary>Parses a sequence number from text: digits only, from 0.</summary>
    public static bool TryParseSequence(string? text, out long value) =>
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value);
}
