using Dispatcher.Tests.Shared;

namespace Dispatcher.Client.Tests.Api;

/// <summary>The public surface of Dispatcher.Client, approved in <c>Dispatcher.Client.approved.txt</c> beside this file.</summary>
public sealed class ApiApprovalTests
{
    [Fact]
    public void PublicApi_IsApproved() => ApiApproval.Verify(
        typeof(DispatcherClient).Assembly, "Dispatcher.Client.Tests", ["Microsoft.Extensions.DependencyInjection"],
        "System.Runtime.CompilerServices.AsyncIteratorStateMachineAttribute");
}
