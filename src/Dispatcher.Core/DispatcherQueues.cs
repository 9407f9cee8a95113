namespace Dispatcher;

/// <summary>Names of the queues every dispatcher has, as in the sysadm dispatcher.</summary>
public static class DispatcherQueues
{
    /// <summary>The queue without a concurrency limit: every job in it starts at once.</summary>
    public const string NoQueue = "no_queue";

    /// <summary>The package queue: one job at a time, first in first out.</summary>
    public const string PkgQueue = "pkg_queue";

    /// <summary>The jail queue: one job at a time, first in first out.</summary>
    public const string IocageQueue = "iocage_queue";
}
