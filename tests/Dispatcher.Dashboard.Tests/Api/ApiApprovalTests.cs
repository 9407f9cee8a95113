#if NET10_0_OR_GREATER
// The approved API is the net10.0 one; package validation checks that net8.0 offers the same.
using Dispatcher.Tests.Shared;

namespace Dispatcher.Dashboard.Tests.Api;

/// <summary>The public surface of Dispatcher.Dashboard, approved in <c>Dispatcher.Dashboard.approved.txt</c> beside this file.</summary>
public sealed class ApiApprovalTests
{
    [Fact]
    public void PublicApi_IsApproved() => ApiApproval.Verify(
        typeof(DispatcherDashboardOptions).Assembly, "Dispatcher.Dashboard.Tests",
        ["Microsoft.AspNetCore.Builder", "Microsoft.Extensions.DependencyInjection"]);
}
#endif
