using System.Globalization;

namespace Dispatcher.Cli;

/// <summary>Parses the values of <c>add</c>'s options, with a usage error that names the option.</summary>
internal static class JobOptions
{
    /// <summary>Repeated NAME=VALUE options as a dictionary (a later NAME wins).</summary>
    public static Dictionary<string, string> Pairs(string option, IEnumerable<string>? values)
    {
        var pairs = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in values ?? [])
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw new UsageException($"{option} '{pair}' is not NAME=VALUE.");
            }

            pairs[pair[..eq]] = pair[(eq + 1)..];
        }

        return pairs;
    }

    /// <summary>A byte count: a whole number, or one with a K, M or G suffix (powers of 1024).</summary>
    public static long Bytes(string option, string text)
    {
        var t = text.Trim();
        var shift = t.Length > 0 ? char.ToUpperInvariant(t[^1]) switch { 'K' => 10, 'M' => 20, 'G' => 30, _ => 0 } : 0;
        var digits = shift == 0 ? t : t[..^1];
        return long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0 && n <= long.MaxValue >> shift
            ? n << shift
            : throw new UsageException($"{option} '{text}' is not a byte count such as 536870912, 512M or 2G.");
    }

    /// <summary>An ISO 8601 time; without an offset it is UTC.</summary>
    public static DateTimeOffset Time(string option, string text) =>
        DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var time)
            ? time
            : throw new UsageException($"{option} '{text}' is not a time such as 2026-12-01T06:00:00Z.");
}
