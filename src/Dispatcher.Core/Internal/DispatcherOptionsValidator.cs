using Microsoft.Extensions.Options;

namespace Dispatcher.Internal;

/// <summary>Checks <see cref="DispatcherOptions"/> at start-up and names every value that is wrong.</summary>
internal sealed class DispatcherOptionsValidator : IValidateOptions<DispatcherOptions>
{
    public ValidateOptionsResult Validate(string? name, DispatcherOptions options)
    {
        var errors = new List<string>();
        if (options.Queues.Count == 0)
        {
            errors.Add("Dispatcher:Queues must name at least one queue.");
        }

        foreach (var (queue, q) in options.Queues)
        {
            if (string.IsNullOrWhiteSpace(queue))
            {
                errors.Add("Dispatcher:Queues has a queue with an empty name.");
            }
            else if (q is null)
            {
                errors.Add($"Dispatcher:Queues:{queue} has no options.");
            }
            else
            {
                if (q.MaxConcurrency < 0)
                {
                    errors.Add($"Dispatcher:Queues:{queue}:MaxConcurrency is {q.MaxConcurrency}; it must be 0 (no limit) or more.");
                }

                if (q.Limits?.Problem($"Dispatcher:Queues:{queue}:Limits") is { } limits)
                {
                    errors.Add(limits);
                }
            }
        }

        if (options.KillGracePeriod < TimeSpan.Zero || options.KillGracePeriod > TimeSpan.FromMinutes(10))
        {
            errors.Add($"Dispatcher:KillGracePeriod is {options.KillGracePeriod}; it must be between 00:00:00 and 00:10:00.");
        }

        if (options.DefaultJobTimeout is { } timeout && timeout <= TimeSpan.Zero)
        {
            errors.Add($"Dispatcher:DefaultJobTimeout is {timeout}; it must be positive, or unset for none.");
        }

        if (options.MaxOutputCharacters < 1024)
        {
            errors.Add($"Dispatcher:MaxOutputCharacters is {options.MaxOutputCharacters}; it must be at least 1024.");
        }

        if (options.MaxLogBytes < 65536)
        {
            errors.Add($"Dispatcher:MaxLogBytes is {options.MaxLogBytes}; it must be at least 65536.");
        }

        if (options.RetainedJobCount < 0)
        {
            errors.Add($"Dispatcher:RetainedJobCount is {options.RetainedJobCount}; it must be 0 or more.");
        }

        if (options.RetainedJobAge < TimeSpan.Zero)
        {
            errors.Add($"Dispatcher:RetainedJobAge is {options.RetainedJobAge}; it must not be negative.");
        }

        if (options.EventBufferCapacity < 16)
        {
            errors.Add($"Dispatcher:EventBufferCapacity is {options.EventBufferCapacity}; it must be at least 16.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}

/// <summary>Checks <see cref="Protocol.DispatcherProtocolOptions"/> at start-up.</summary>
internal sealed class DispatcherProtocolOptionsValidator : IValidateOptions<Protocol.DispatcherProtocolOptions>
{
    public ValidateOptionsResult Validate(string? name, Protocol.DispatcherProtocolOptions options)
    {
        var errors = new List<string>();
        if (options.TokenLifetime <= TimeSpan.Zero)
        {
            errors.Add($"Dispatcher:Protocol:TokenLifetime is {options.TokenLifetime}; it must be positive.");
        }

        if (options.MaxFailedLogins < 1)
        {
            errors.Add($"Dispatcher:Protocol:MaxFailedLogins is {options.MaxFailedLogins}; it must be at least 1.");
        }

        if (options.FailedLoginWindow <= TimeSpan.Zero)
        {
            errors.Add($"Dispatcher:Protocol:FailedLoginWindow is {options.FailedLoginWindow}; it must be positive.");
        }

        if (options.EventUpdateInterval < TimeSpan.Zero)
        {
            errors.Add($"Dispatcher:Protocol:EventUpdateInterval is {options.EventUpdateInterval}; it must not be negative.");
        }

        if (options.MaxJsonDepth is < 4 or > 1024)
        {
            errors.Add($"Dispatcher:Protocol:MaxJsonDepth is {options.MaxJsonDepth}; it must be between 4 and 1024.");
        }

        if (options.EventReplayCapacity < 1 || options.EventReplayBytes < 1024)
        {
            errors.Add($"Dispatcher:Protocol:EventReplayCapacity is {options.EventReplayCapacity} and EventReplayBytes {options.EventReplayBytes}; they must be at least 1 and 1024.");
        }

        if (options.MaxHistoryPageSize < 1)
        {
            errors.Add($"Dispatcher:Protocol:MaxHistoryPageSize is {options.MaxHistoryPageSize}; it must be at least 1.");
        }

        if (options.HistoryPageSize < 1 || options.HistoryPageSize > options.MaxHistoryPageSize)
        {
            errors.Add($"Dispatcher:Protocol:HistoryPageSize is {options.HistoryPageSize}; it must be between 1 and MaxHistoryPageSize ({options.MaxHistoryPageSize}).");
        }

        if (options.MaxHistoryReplyBytes < 1024)
        {
            errors.Add($"Dispatcher:Protocol:MaxHistoryReplyBytes is {options.MaxHistoryReplyBytes}; it must be at least 1024.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
