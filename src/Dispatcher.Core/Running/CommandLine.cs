using System.Text;

namespace Dispatcher;

/// <summary>Splits a command string into a program and its arguments, by the rules of Qt's <c>QProcess::start(QString)</c>.</summary>
public static class CommandLine
{
    /// <summary>
    /// Splits <paramref name="command"/>: whitespace outside double quotes separates arguments, a double quote opens or closes
    /// a quoted part (which may sit inside an argument: <c>a"b c"d</c> is one argument <c>ab cd</c>), and three double quotes
    /// in a row stand for one literal double quote. Nothing else is special: there is no shell, no escaping with backslashes,
    /// no variable expansion, so <c>a | b</c> is three arguments.
    /// </summary>
    /// <param name="command">The command string.</param>
    /// <returns>The program followed by its arguments; empty when the string holds no argument.</returns>
    public static IReadOnlyList<string> Split(string command)
    {
        ArgumentNullException.ThrowIfNull(command);
        var result = new List<string>();
        var current = new StringBuilder();
        var quotes = 0;
        var inQuote = false;
        foreach (var c in command)
        {
            if (c == '"')
            {
                quotes++;
                if (quotes == 3)
                {
                    // Three quotes in a row: one literal quote, and the quoting state is unchanged.
                    quotes = 0;
                    current.Append('"');
                }

                continue;
            }

            if (quotes == 1)
            {
                inQuote = !inQuote;
            }

            // Two quotes in a row open and close an empty quoted part: no effect.
            quotes = 0;
            if (!inQuote && char.IsWhiteSpace(c))
            {
                if (current.Length > 0)
                {
                    result.Add(current.ToString());
                    current.Clear();
                }
            }
            else
            {
                current.Append(c);
            }
        }

        if (current.Length > 0)
        {
            result.Add(current.ToString());
        }

        return result;
    }

    /// <summary>
    /// Joins an argument vector into a command string that <see cref="Split"/> takes apart into the same arguments (empty
    /// arguments aside): an argument with whitespace or a double quote is quoted, its double quotes tripled.
    /// </summary>
    /// <param name="arguments">The program and its arguments.</param>
    /// <returns>The command string.</returns>
    public static string Join(IEnumerable<string> arguments)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        return string.Join(' ', arguments.Select(a => a.Length > 0 && !a.Any(c => c == '"' || char.IsWhiteSpace(c))
            ? a
            : "\"" + a.Replace("\"", "\"\"\"", StringComparison.Ordinal) + "\""));
    }
}
