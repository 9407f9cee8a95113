using System.Text.Json;
using System.Text.Json.Nodes;
using Dispatcher.Client;
using Spectre.Console;

namespace Dispatcher.Cli;

/// <summary>Writes results as JSON (--json), as tables and colour on a terminal, or as plain tab-separated lines when piped.</summary>
internal sealed class Output(bool json)
{
    private static readonly JsonSerializerOptions Compact = new() { WriteIndented = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private static readonly Lazy<IAnsiConsole> ErrorConsole = new(() => AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) }));

    public bool Json { get; } = json;

    /// <summary>Gets whether standard output is a terminal (tables, colour, progress) rather than a pipe or file.</summary>
    public bool Terminal { get; } = !Console.IsOutputRedirected;

    public static void Error(string message)
    {
        if (Console.IsErrorRedirected)
        {
            Console.Error.WriteLine("dispatcher: " + message);
        }
        else
        {
            ErrorConsole.Value.MarkupLine("[red]dispatcher:[/] " + Markup.Escape(message));
        }
    }

    public static void WriteJson(JsonNode node) => Console.Out.WriteLine(node.ToJsonString(Compact));

    /// <summary>A table: Spectre's on a terminal, tab-separated lines with a header when piped.</summary>
    public void Table(IReadOnlyList<string> columns, IEnumerable<IReadOnlyList<string>> rows, Func<string, string?>? colour = null)
    {
        if (!Terminal)
        {
            Console.Out.WriteLine(string.Join('\t', columns));
            foreach (var row in rows)
            {
                Console.Out.WriteLine(string.Join('\t', row.Select(c => c.Replace('\t', ' ').Replace('\n', ' '))));
            }

            return;
        }

        var table = new Table().Border(TableBorder.Rounded);
        foreach (var c in columns)
        {
            table.AddColumn(new TableColumn(new Markup("[bold]" + Markup.Escape(c) + "[/]")));
        }

        foreach (var row in rows)
        {
            table.AddRow(row.Select(cell => (Spectre.Console.Rendering.IRenderable)(colour?.Invoke(cell) is { } style
                ? new Markup($"[{style}]{Markup.Escape(cell)}[/]")
                : new Text(cell))).ToArray());
        }

        AnsiConsole.Write(table);
    }

    public static string? StateColour(string value) => value switch
    {
        "running" or "succeeded" => "green",
        "pending" => "yellow",
        "failed" or "timed_out" or "interrupted" => "red",
        "killed" => "magenta",
        _ => null,
    };

    public static JsonObject ResultJson(string host, RemoteJobResult r) => new()
    {
        ["host"] = host,
        ["id"] = r.Id,
        ["queue"] = r.Queue,
        ["state"] = r.State,
        ["outcome"] = r.Outcome,
        ["succeeded"] = r.Succeeded,
        ["attempt"] = r.Raw["attempt"] is JsonValue attempt && attempt.TryGetValue(out int n) ? n : 1,
        ["labels"] = r.Raw["labels"]?.DeepClone(),
        ["started"] = r.StartedAt?.ToString("O", System.Globalization.CultureInfo.InvariantCulture),
        ["finished"] = r.FinishedAt?.ToString("O", System.Globalization.CultureInfo.InvariantCulture),
        ["commands"] = new JsonArray(r.Commands.Select(c => (JsonNode?)c).ToArray()),
        ["results"] = new JsonArray(r.Results.Select(c => (JsonNode?)new JsonObject
        {
            ["command"] = c.Command,
            ["exit_code"] = c.ExitCode,
            ["output"] = c.Output,
        }).ToArray()),
    };

    public static JsonObject ErrorJson(string host, DispatcherClientException ex) => new() { ["host"] = host, ["code"] = ex.Code, ["message"] = ex.Message };

    public static string Time(DateTimeOffset? t) => t?.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture) ?? "";
}
