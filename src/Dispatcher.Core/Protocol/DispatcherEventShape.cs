namespace Dispatcher.Protocol;

/// <summary>The shape of the <c>dispatcher</c> events.</summary>
public enum DispatcherEventShape
{
    /// <summary>
    /// What sysadm clients expect (the default): recognised jobs (an enricher set <c>event_system</c>) get pending, running and
    /// finished events; every other job gets a start marker and, when it ends, its flat raw log.
    /// </summary>
    Sysadm,

    /// <summary>
    /// Every job gets pending, running and finished events, each as <c>{"state", "process_id", "process_details"}</c> (the shape of
    /// this library before sysadm compatibility).
    /// </summary>
    Nested,
}
