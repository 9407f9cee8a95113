#if NET10_0_OR_GREATER
// The approved API is the net10.0 one; package validation checks that net8.0 offers the same.
using System.Reflection;
using Dispatcher.Transports.Http;
using Dispatcher.Transports.WebSocket;
using PublicApiGenerator;

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
        var api = assembly.GeneratePublicApi(new ApiGeneratorOptions { AllowNamespacePrefixes = ["Microsoft.AspNetCore.Builder", "Microsoft.Extensions.DependencyInjection"], ExcludeAttributes = ["System.Runtime.Versioning.TargetFrameworkAttribute", "System.Reflection.AssemblyMetadataAttribute"] })
            .ReplaceLineEndings("\n");
        var approved = Path.Combine(Here(), $"{name}.approved.txt");
        var received = Path.Combine(Here(), $"{name}.received.txt");

        if (!File.Exists(approved) || File.ReadAllText(approved).ReplaceLineEndings("\n") != api)
        {
            File.WriteAllText(received, api);
            Assert.Fail($"The public API of {name} differs from {approved} (or it is missing). Review {received}, and if the change is meant, copy it over the approved file.");
        }

        File.Delete(received);
    }

    [Fact]
    public void Core_GivesItsInternalsToNoShippingAssembly()
    {
        var friends = typeof(IDispatcher).Assembly.GetCustomAttributes<System.Runtime.CompilerServices.InternalsVisibleToAttribute>()
            .Select(a => a.AssemblyName).ToArray();

        // Tests and benchmarks only: no package may reach Core's internals.
        Assert.All(friends, f => Assert.True(f.EndsWith(".Tests", StringComparison.Ordinal) || f == "Dispatcher.Benchmarks", f));
    }

    /// <summary>This folder in the source tree: found from the test's output folder (CI builds map source paths to /_/).</summary>
    private static string Here()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Dispatcher.sln")))
        {
            dir = dir.Parent;
        }

        return Path.Combine(dir?.FullName ?? throw new DirectoryNotFoundException("Dispatcher.sln not found above the test output."),
            "tests", "Dispatcher.Transports.Tests", "Api");
    }
}
#endif
