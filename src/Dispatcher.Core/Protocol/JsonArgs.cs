using System.Text.Json;

namespace Dispatcher.Protocol;

/// <summary>Reading request args the way the sysadm server did: member names ignore case; a list is a string or an array of strings.</summary>
internal static class JsonArgs
{
    /// <summary>Finds a member by name, ignoring case.</summary>
    public static bool TryGetProperty(JsonElement obj, string name, out JsonElement value)
    {
        value = default;
        if (obj.ValueKind != JsonValueKind.Object)
        {
            return false;
        }

        if (obj.TryGetProperty(name, out value))
        {
            return true;
        }

        foreach (var p in obj.EnumerateObject())
        {
            if (string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase))
            {
                value = p.Value;
                return true;
            }
        }

        return false;
    }

    public static bool TryGetString(JsonElement obj, string name, out string value, out string problem)
    {
        value = string.Empty;
        if (!TryGetProperty(obj, name, out var element))
        {
            problem = $"Missing \"{name}\".";
            return false;
        }

        if (element.ValueKind != JsonValueKind.String)
        {
            problem = $"\"{name}\" must be a string, not {Describe(element.ValueKind)}.";
            return false;
        }

        value = element.GetString()!;
        problem = string.Empty;
        return true;
    }

    /// <summary>A string or an array of strings (job ids, event names).</summary>
    public static bool TryGetStrings(JsonElement value, out string[] strings)
    {
        if (value.ValueKind == JsonValueKind.String)
        {
            strings = [value.GetString()!];
            return true;
        }

        if (value.ValueKind == JsonValueKind.Array && value.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String))
        {
            strings = [.. value.EnumerateArray().Select(e => e.GetString()!)];
            return true;
        }

        strings = [];
        return false;
    }

    public static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => "nothing",
    };
}
