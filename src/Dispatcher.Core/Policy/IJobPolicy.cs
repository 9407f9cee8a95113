namespace Dispatcher.Protocol;

/// <summary>
/// Decides, for every job a client submits over a transport (<c>run</c>), whether it runs as submitted, runs rewritten (for
/// example in a forced queue or with forced limits), or is rejected with a message the client sees. Register one with
/// <c>UseJobPolicy</c>; without one, every full-access user may run any command as the host's user.
/// </summary>
/// <remarks>Called concurrently from many connections: implementations must be thread-safe. Jobs the host enqueues itself through <see cref="IDispatcher"/> are not seen.</remarks>
public interface IJobPolicy
{
    /// <summary>Decides about one submitted job.</summary>
    /// <param name="context">The job, who submitted it and from where.</param>
    /// <param name="cancellationToken">Cancelled when the request is abandoned.</param>
    /// <returns>The decision.</returns>
    ValueTask<JobPolicyDecision> EvaluateAsync(JobPolicyContext context, CancellationToken cancellationToken);
}

/// <summary>A job submitted by a client, with who submitted it and from where.</summary>
public sealed class JobPolicyContext
{
    internal JobPolicyContext(JobRequest job, DispatcherUser user, string transport, string remoteAddress)
    {
        Job = job;
        User = user;
        Transport = transport;
        RemoteAddress = remoteAddress;
    }

    /// <summary>Gets the job as submitted.</summary>
    public JobRequest Job { get; }

    /// <summary>Gets the authenticated user who submitted it.</summary>
    public DispatcherUser User { get; }

    /// <summary>Gets the transport (<c>WebSocket</c> or <c>HTTP</c>).</summary>
    public string Transport { get; }

    /// <summary>Gets the client's address.</summary>
    public string RemoteAddress { get; }
}

/// <summary>What an <see cref="IJobPolicy"/> decided about a job.</summary>
public sealed class JobPolicyDecision
{
    private static readonly JobPolicyDecision s_approve = new(null, null);

    private JobPolicyDecision(JobRequest? rewritten, string? rejection)
    {
        Rewritten = rewritten;
        Rejection = rejection;
    }

    /// <summary>Gets the job to run instead of the submitted one, or <see langword="null"/>.</summary>
    public JobRequest? Rewritten { get; }

    /// <summary>Gets why the job is rejected, or <see langword="null"/> if it is not.</summary>
    public string? Rejection { get; }

    /// <summary>The job runs as submitted.</summary>
    /// <returns>The decision.</returns>
    public static JobPolicyDecision Approve() => s_approve;

    /// <summary>The job does not run; the client is told <paramref name="message"/>.</summary>
    /// <param name="message">Why, in words the client can act on.</param>
    /// <returns>The decision.</returns>
    public static JobPolicyDecision Reject(string message)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(message);
        return new(null, message);
    }

    /// <summary>The job runs as <paramref name="job"/> instead (its id stays the submitted one).</summary>
    /// <param name="job">The job to run.</param>
    /// <returns>The decision.</returns>
    public static JobPolicyDecision Rewrite(JobRequest job)
    {
        ArgumentNullException.ThrowIfNull(job);
        return new(job, null);
    }
}
