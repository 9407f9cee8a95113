using Dispatcher.Protocol;
using Microsoft.Extensions.Options;

namespace Dispatcher.SampleHost;

/// <summary>What one user may run, from the <c>Policy:Users:NAME</c> configuration section.</summary>
public sealed class UserPolicy
{
    /// <summary>Gets the programs the user may run, as written in the command (<c>pkg</c> and <c>/usr/sbin/pkg</c> are different entries); empty: any.</summary>
    public List<string> Programs { get; } = [];

    /// <summary>Gets or sets the queue every job of the user goes into, whatever it asked for; <see langword="null"/> to keep its choice.</summary>
    public string? Queue { get; set; }

    /// <summary>Gets or sets limits forced on every job of the user (each set one replaces the job's own).</summary>
    public JobLimits? Limits { get; set; }
}

/// <summary>The <c>Policy</c> configuration section of the sample host.</summary>
public sealed class PolicyOptions
{
    /// <summary>Gets the policy of each user by name.</summary>
    public Dictionary<string, UserPolicy> Users { get; } = new(StringComparer.Ordinal);

    /// <summary>Gets or sets whether a user without an entry may run anything (<see langword="true"/>) or nothing.</summary>
    public bool AllowUnlisted { get; set; } = true;
}

/// <summary>
/// An allow-list of programs per user, with a forced queue and forced limits, from configuration. A job is rejected when any
/// of its commands runs a program that is not on the user's list; the rejection names the program.
/// </summary>
internal sealed class AllowListPolicy(IOptionsMonitor<PolicyOptions> options) : IJobPolicy
{
    public ValueTask<JobPolicyDecision> EvaluateAsync(JobPolicyContext context, CancellationToken cancellationToken)
    {
        var policy = options.CurrentValue;
        if (!policy.Users.TryGetValue(context.User.Name, out var user))
        {
            return ValueTask.FromResult(policy.AllowUnlisted
                ? JobPolicyDecision.Approve()
                : JobPolicyDecision.Reject($"user '{context.User.Name}' may not run jobs on this host."));
        }

        if (user.Programs.Count > 0)
        {
            foreach (var command in context.Job.Commands)
            {
                var program = CommandLine.Split(command) is [var first, ..] ? first : string.Empty;
                if (!user.Programs.Contains(program, StringComparer.Ordinal))
                {
                    return ValueTask.FromResult(JobPolicyDecision.Reject(
                        $"user '{context.User.Name}' may not run '{program}'; allowed: {string.Join(", ", user.Programs)}."));
                }
            }
        }

        if (user.Queue is null && user.Limits is null)
        {
            return ValueTask.FromResult(JobPolicyDecision.Approve());
        }

        return ValueTask.FromResult(JobPolicyDecision.Rewrite(context.Job with
        {
            Queue = user.Queue ?? context.Job.Queue,
            Limits = user.Limits is null ? context.Job.Limits : new JobLimits
            {
                MemoryBytes = user.Limits.MemoryBytes ?? context.Job.Limits?.MemoryBytes,
                MaxProcesses = user.Limits.MaxProcesses ?? context.Job.Limits?.MaxProcesses,
                CpuWeight = user.Limits.CpuWeight ?? context.Job.Limits?.CpuWeight,
            },
        }));
    }
}
