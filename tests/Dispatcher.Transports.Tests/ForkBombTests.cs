using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.DependencyInjection;

namespace Dispatcher.Transports.Tests;

public sealed class ForkBombTests
{
    [SkippableFact]
    public async Task ForkBomb_UnderItsPidsLimit_Ends_AndTheHostAnswersListWithinOneSecondThroughout()
    {
        await using var server = await TestServer.StartAsync(dispatcher: d => d.Services.Configure<DispatcherOptions>(o =>
        {
            o.Containment.Mode = ContainmentMode.Auto;
            o.Queues["bombs"] = new QueueOptions { MaxConcurrency = 0, Limits = new JobLimits { MaxProcesses = 32 } };
        }));
        var containment = ((Dispatcher.Internal.DefaultDispatcher)server.Dispatcher).Containment;
        Skip.If(containment is null, "no cgroup can be created here (the host logged why); the fork bomb would not be contained");
        Skip.IfNot(containment.CanLimit("pids"), "no pids cgroup hierarchy can be used here");

        // The first list of a fresh server includes compiling its path (1.01 s once, in a Debug build under a parallel test run):
        // that is not what the bomb does to the host.
        Assert.Equal(HttpStatusCode.OK, (await server.PutAsync("/rpc/dispatcher", """{"action":"list"}""")).Status);

        // The sleep that keeps the job running until its timeout starts before the bomb, and is waited for with a builtin: a
        // sleep forked after the bomb could fail once the bomb held all 32 processes (the job then ended Failed at once).
        var run = await server.PutAsync("/rpc/dispatcher", """{"action":"run","bomb":{"commands":"sh -c \"sleep 300 & s=$!; f() { f | f & }; f; wait $s\"","queue":"bombs","timeout":5}}""");
        Assert.Equal("bomb", (string?)run.Body!["args"]!["started"]![0]);

        var completion = server.Dispatcher.WaitForCompletionAsync("bomb");
        var slowest = TimeSpan.Zero;
        var answers = 0;
        while (!completion.IsCompleted)
        {
            var watch = Stopwatch.StartNew();
            var list = await server.PutAsync("/rpc/dispatcher", """{"action":"list"}""");
            slowest = watch.Elapsed > slowest ? watch.Elapsed : slowest;
            Assert.Equal(HttpStatusCode.OK, list.Status);
            answers++;
            await Task.WhenAny(completion, Task.Delay(100));
        }

        var result = await completion.WaitAsync(TestServer.Patience);
        Assert.Equal(JobOutcome.TimedOut, result.Outcome);
        Assert.True(answers >= 5, $"only {answers} list answers while the bomb ran");
        Assert.True(slowest < TimeSpan.FromSeconds(1), $"the slowest list took {slowest}");
    }
}
