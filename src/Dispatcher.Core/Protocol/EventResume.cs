using System.Globalization;
using System.Text.Json;

namespace Dispatcher.Protocol;

/// <summary>
/// The object form of <c>events/subscribe</c>: <c>{"channels": ["dispatcher"], "since": N, "stream": S}</c>. <c>channels</c>
/// takes what the plain forms take (a name or an array of names); <c>since</c> (optional) is the last <c>seq</c> the client
/// saw, to be sent what followed it; <c>stream</c> (optional) is the stream id that number came from.
/// </summary>
internal readonly record struct EventResume(string[] Channels, long? Since, string? Stream)
{
    /// <summary>Parses the object form; returns what is wrong with it, or null.</summary>
    public static string? Parse(JsonElement args, out EventResume resume)
    {
        resume = new EventResume([], null, null);
        if (!args.TryGetProperty("channels", out var channels))
        {
            return "the object form needs \"channels\": an event name or an array of event names.";
        }

        string[] names;
        if (channels.ValueKind == JsonValueKind.String)
        {
            names = [channels.GetString()!];
        }
        else if (channels.ValueKind == JsonValueKind.Array && channels.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String))
        {
            names = [.. channels.EnumerateArray().Select(e => e.GetString()!)];
        }
        else
        {
            return "\"channels\" must be an event name or an array of event names.";
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

        resume = new EventResume(names, since, stream);
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
