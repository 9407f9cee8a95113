using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Configuration;
using Microsoft.Extensions.Logging.Console;

namespace Dispatcher.SampleHost;

/// <summary>
/// The sample host's console format: the simple console's single line (<c>HH:mm:ss info: Category[id] message</c>), and the
/// start-up banner as a block of plain lines. The banner goes through the console logger so that it comes out after the
/// framework's start-up lines, which that logger writes from its own queue: a <c>Console.WriteLine</c> would overtake them.
/// </summary>
internal sealed class SampleConsoleFormatter() : ConsoleFormatter(Name)
{
    public new const string Name = "dispatcher-sample";

    /// <summary>The category of the banner, which only the console sees (it may hold a generated password).</summary>
    public const string BannerCategory = "Dispatcher.SampleHost.Banner";

    public override void Write<TState>(in LogEntry<TState> logEntry, IExternalScopeProvider? scopeProvider, TextWriter textWriter)
    {
        var message = logEntry.Formatter(logEntry.State, logEntry.Exception);
        if (logEntry.Category == BannerCategory)
        {
            textWriter.Write(message);
            return;
        }

        textWriter.Write($"{DateTimeOffset.Now:HH:mm:ss} {Level(logEntry.LogLevel)}: {logEntry.Category}[{logEntry.EventId.Id}] {message.ReplaceLineEndings(" ")}");
        if (logEntry.Exception is { } exception)
        {
            textWriter.Write(' ');
            textWriter.Write(exception.ToString().ReplaceLineEndings(" "));
        }

        textWriter.WriteLine();
    }

    private static string Level(LogLevel level) => level switch
    {
        LogLevel.Trace => "trce",
        LogLevel.Debug => "dbug",
        LogLevel.Information => "info",
        LogLevel.Warning => "warn",
        LogLevel.Error => "fail",
        LogLevel.Critical => "crit",
        _ => level.ToString(),
    };
}

/// <summary>Writes the start-up banner.</summary>
internal static partial class ConsoleBanner
{
    public static void Configure(ILoggingBuilder logging)
    {
        logging.AddConsole(o => o.FormatterName = SampleConsoleFormatter.Name).AddConsoleFormatter<SampleConsoleFormatter, ConsoleFormatterOptions>();

        // The same formatters and options ("Logging:Console"), written by the batching console logger instead of the framework's.
        foreach (var framework in logging.Services.Where(d => d.ServiceType == typeof(ILoggerProvider) && d.ImplementationType == typeof(ConsoleLoggerProvider)).ToList())
        {
            logging.Services.Remove(framework);
        }

        logging.Services.TryAddEnumerable(ServiceDescriptor.Singleton<ILoggerProvider, BatchingConsoleLoggerProvider>());
        LoggerProviderOptions.RegisterProviderOptions<ConsoleLoggerOptions, BatchingConsoleLoggerProvider>(logging.Services);

        // The banner reaches the console and no other logging provider.
        logging.AddFilter(SampleConsoleFormatter.BannerCategory, LogLevel.None);
        logging.AddFilter<BatchingConsoleLoggerProvider>(SampleConsoleFormatter.BannerCategory, LogLevel.Information);
    }

    /// <summary>Writes the banner, one block after an empty line, when the host has started.</summary>
    public static void Write(ILoggerFactory loggers, IEnumerable<string> urls, string? generatedPassword)
    {
        var banner = new System.Text.StringBuilder().AppendLine();
        foreach (var url in urls)
        {
            var ws = url.Replace("https://", "wss://", StringComparison.Ordinal).Replace("http://", "ws://", StringComparison.Ordinal);
            banner.AppendLine($"Dispatcher sample host listening on {url}");
            banner.AppendLine($"  WebSocket: {ws.TrimEnd('/')}/   REST: PUT {url.TrimEnd('/')}/rpc/dispatcher");
        }

        if (generatedPassword is not null)
        {
            // Printed once, to the console only; never logged elsewhere (see the filters above).
            banner.AppendLine($"No user is configured: created full-access user 'admin' with password '{generatedPassword}'");
        }

        banner.AppendLine("Press Ctrl+C to stop.");
        Banner(loggers.CreateLogger(SampleConsoleFormatter.BannerCategory), banner.ToString());
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "{Banner}")]
    private static partial void Banner(ILogger logger, string banner);
}
