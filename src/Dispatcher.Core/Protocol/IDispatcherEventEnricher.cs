using System.Text.Json.Nodes;

namespace Dispatcher.Protocol;

/// <summary>
/// Adds host-specific fields to the dispatcher events sent to subscribers, for the jobs the host recognises (for example a
/// package manager host that sets <c>event_system</c> to <c>sysadm/pkg</c> and adds <c>pkg_log</c> for jobs whose id starts
/// with <c>sysadm_pkg</c>). Register implementations with <c>services.AddSingleton&lt;IDispatcherEventEnricher, T&gt;()</c>;
/// every registered enricher is called for every event.
/// </summary>
public interface IDispatcherEventEnricher
{
    /// <summary>Enriches one event.</summary>
    /// <param name="context">The event and its arguments.</param>
    void Enrich(DispatcherEventContext context);
}

/// <summary>One dispatcher event on its way to subscribers, as given to <see cref="IDispatcherEventEnricher"/>.</summary>
public sealed class DispatcherEventContext
{
    internal DispatcherEventContext(string jobId, JobState state, IReadOnlyList<string> commands, JobResult? result, JsonObject args)
    {
        JobId = jobId;
        State = state;
        Commands = commands;
        Result = result;
        Args = args;
        Kind = state switch
        {
            JobState.Pending => DispatcherEventKind.Pending,
            JobState.Finished => DispatcherEventKind.Finished,
            _ => DispatcherEventKind.Update,
        };
    }

    /// <summary>Gets the job id.</summary>
    public string JobId { get; }

    /// <summary>Gets the state the event reports.</summary>
    public JobState State { get; }

    /// <summary>Gets the job's commands.</summary>
    public IReadOnlyList<string> Commands { get; }

    /// <summary>Gets the job's result when <see cref="State"/> is <see cref="JobState.Finished"/>, otherwise <see langword="null"/>.</summary>
    public JobResult? Result { get; }

    /// <summary>Gets the event's <c>args</c> object, which the enricher may change.</summary>
    public JsonObject Args { get; internal set; }

    /// <summary>Gets or sets which of the job's events this is (the feed sets <see cref="DispatcherEventKind.Started"/> for a job's first running event).</summary>
    internal DispatcherEventKind Kind { get; set; }

    /// <summary>Gets or sets a value indicating whether the event is dropped (the sysadm shape sends no pending or progress event for a job it does not recognise).</summary>
    internal bool Suppressed { get; set; }

    /// <summary>Sets <c>event_system</c>, the <c>namespace/name</c> of the subsystem the job belongs to.</summary>
    /// <param name="eventSystem">For example <c>sysadm/pkg</c>.</param>
    public void SetEventSystem(string eventSystem) => Args["event_system"] = eventSystem;
}

/// <summary>Which of a job's events an event is.</summary>
internal enum DispatcherEventKind
{
    Pending,
    Started,
    Update,
    Finished,
}
