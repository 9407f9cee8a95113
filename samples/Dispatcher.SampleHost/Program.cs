using System.Security.Cryptography;
using Dispatcher;
using Dispatcher.Protocol;
using Dispatcher.SampleHost;
using Dispatcher.SampleHost.Sysadm;
using Microsoft.Extensions.Options;

// The Dispatcher sample host: the WebSocket endpoint at "/" and the REST endpoint at "/rpc/dispatcher" on one port.
try
{
    var builder = WebApplication.CreateBuilder(args);
    if (string.IsNullOrEmpty(builder.Configuration["urls"]) && !builder.Configuration.GetSection("Kestrel:Endpoints").Exists())
    {
        builder.WebHost.UseUrls("http://127.0.0.1:12150");
    }

    ConsoleBanner.Configure(builder.Logging);

    // Under systemd (Type=notify): readiness and stopping are reported to the service manager, and console logs use the
    // journal's format with priorities (this replaces the sample's console format there only). Elsewhere it does nothing.
    builder.Services.AddSystemd();

    builder.Services.Configure<UsersOptions>(builder.Configuration);
    builder.Services.Configure<PolicyOptions>(builder.Configuration.GetSection("Policy"));
    var generatedPassword = EnsureUser(builder.Configuration);
    // A small sysadm server: the dispatcher, the read-only sysadm/systemmanager class, system-state events, and the sysadm
    // event fields for sysadm_pkg/update/sourcectl/iohyve jobs.
    builder.Services.Configure<SystemStateOptions>(builder.Configuration.GetSection("SystemState"));
    builder.Services.AddHostedService<SystemStatePublisher>();
    builder.Services.AddDispatcher()
        .AddWebSocketTransport()
        .AddHttpTransport()
        .UseAuthenticator<ConfigurationAuthenticator>()
        .AddProtocolHandler<SystemManagerHandler>("sysadm", "systemmanager", DispatcherAccess.Read)
        .AddEventChannel(SystemStatePublisher.Channel, DispatcherAccess.Read, replayLast: true)
        .AddSysadmEventEnrichers()
        .UseJobPolicy<AllowListPolicy>();
    builder.Services.AddDispatcherDashboard();
    builder.Services.AddHealthChecks().AddDispatcherHealthChecks();
    Observability.AddOpenTelemetry(builder);

    var app = builder.Build();

    // Check every option now, so bad configuration ends start-up with one clear message.
    _ = app.Services.GetRequiredService<IOptions<DispatcherOptions>>().Value;
    _ = app.Services.GetRequiredService<IOptions<DispatcherProtocolOptions>>().Value;
    _ = app.Services.GetRequiredService<IOptions<Dispatcher.Transports.WebSocket.WebSocketTransportOptions>>().Value;
    _ = app.Services.GetRequiredService<IOptions<Dispatcher.Transports.Http.HttpTransportOptions>>().Value;

    app.MapDispatcherWebSocket("/");
    app.MapDispatcherHttp();
    app.MapDispatcherDashboard("/dashboard");
    app.MapHealthChecks("/healthz", new() { ResponseWriter = Observability.WriteHealthAsync });

    // After the framework's own start-up lines (registered before them, so called after them).
    app.Lifetime.ApplicationStarted.Register(() => ConsoleBanner.Write(app.Services.GetRequiredService<ILoggerFactory>(), app.Urls, generatedPassword));

    await app.RunAsync();
    return 0;
}
catch (OptionsValidationException ex)
{
    await Console.Error.WriteLineAsync($"Invalid configuration: {string.Join(" ", ex.Failures)}");
    return 2;
}
catch (Exception ex) when (ex is IOException or InvalidOperationException or FormatException or ArgumentException)
{
    // No free port, a value that does not parse, a missing certificate...: say what, not where in the code.
    var message = ex.InnerException is { } inner ? $"{ex.Message} ({inner.Message})" : ex.Message;
    await Console.Error.WriteLineAsync($"Dispatcher sample host cannot start: {message}");
    return 2;
}

// Without any configured user, add one full-access "admin" with a random password, and return that password.
static string? EnsureUser(ConfigurationManager configuration)
{
    if (configuration.GetSection("Users").GetChildren().Any())
    {
        return null;
    }

    var password = Convert.ToBase64String(RandomNumberGenerator.GetBytes(18)).Replace('/', '_').Replace('+', '-');
    configuration.AddInMemoryCollection(new Dictionary<string, string?>
    {
        ["Users:0:Name"] = "admin",
        ["Users:0:Password"] = password,
        ["Users:0:FullAccess"] = "true",
    });
    return password;
}
