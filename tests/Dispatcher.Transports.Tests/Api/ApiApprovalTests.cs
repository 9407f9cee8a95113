#if NET10_0_OR_GREATER
// The approved API is the net10.0 one; package validation checks that net8.0 offers the same.
using System.Reflection;
using Dispatcher.Tests.Shared;
using Dispatcher.Transports.Http;
using Dispatcher.Transports.WebSocket;

namespace Dispatcher.Transports.Tests.Api;

/// <summary>
/// The public surface of each package, approved in a file beside this one, so a change to it shows in review. When a change is
/// meant, copy the <c>.received.txt</c> the failing test wrote over the <c>.approved.txt</c>.
/// </summary>
public sealed class ApiApprovalTests
{
    public static TheoryData<string> Assemblies => new() { "Dispatcher.Core", "Dispatcher.Transports.WebSocket", "Dispatcher.Transports.Http" };

    [Theory]
    [MemberData(nameof(Assemblies))]
    public void PublicApi_IsApproved(string name)
    {
        var assembly = name switch
        {
            "Dispatcher.Core" => typeof(IDispatcher).Assembly,
            "Dispatcher.Transports.WebSocket" => typeof(WebSocketTransportOptions).Assembly,
            _ => typeof(HttpTransportOptions).Assembly,
        };
        ApiApproval.Verify(assembly, "Dispatcher.Transports.Tests", ["Microsoft.AspNetCore.Builder", "Microsoft.Extensions.DependencyInjection"]);
    }

    [Fact]
    public void Core_GivesItsInternalsToNoShippingAssembly()
    {
        var friends = typeof(IDispatcher).Assembly.GetCustomAttributes<System.Runtime.CompilerServices.InternalsVisibleToAttribute>()
            .Select(a => a.AssemblyName).ToArray();

        // Tests and benchmarks only: no package may reach Core's internals.
        Assert.All(friends, f => Assert.True(f.EndsWith(".Tests", StringComparison.Ordinal) || f == "Dispatcher.Benchmarks", f));
    }
}
#endif
