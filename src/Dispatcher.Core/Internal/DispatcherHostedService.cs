using Microsoft.Extensions.Hosting;

namespace Dispatcher.Internal;

/// <summary>Marks that <c>AddDispatcher</c> was called, so transports can say so when it was not.</summary>
internal sealed class DispatcherMarkerService;

/// <summary>
/// Creates the dispatcher when the host starts (so bad options fail start-up), replays its job store there (the constructors do
/// no I/O), and stops it with the host.
/// </summary>
internal sealed class DispatcherHostedService(DefaultDispatcher dispatcher) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => dispatcher.StartAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => dispatcher.StopAsync(cancellationToken);
}
