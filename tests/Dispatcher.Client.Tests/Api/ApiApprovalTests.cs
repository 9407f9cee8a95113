using PublicApiGenerator;

namespace Dispatcher.Client.Tests.Api;

/// <summary>
/// The public surface of Dispatcher.Client, approved in a file beside this one (as the other packages' are in
/// tests/Dispatcher.Transports.Tests/Api). When a change is meant, copy the <c>.received.txt</c> over the <c>.approved.txt</c>.
/// </summary>
public sealed class ApiApprovalTests
{
    [Fact]
    public void PublicApi_IsApproved()
    {
        var api = typeof(DispatcherClient).Assembly.GeneratePublicApi(new ApiGeneratorOptions
        {
            AllowNamespacePrefixes = ["Microsoft.Extensions.DependencyInjection"],
            ExcludeAttributes = ["System.Runtime.Versioning.TargetFrameworkAttribute", "System.Reflection.AssemblyMetadataAttribute", "System.Runtime.CompilerServices.AsyncIteratorStateMachineAttribute"],
        }).ReplaceLineEndings("\n");
        var approved = Path.Combine(Here(), "Dispatcher.Client.approved.txt");
        var received = Path.Combine(Here(), "Dispatcher.Client.received.txt");
        if (!File.Exists(approved) || File.ReadAllText(approved).ReplaceLineEndings("\n") != api)
        {
            File.WriteAllText(received, api);
            Assert.Fail($"The public API of Dispatcher.Client differs from {approved} (or it is missing). Review {received}, and if the change is meant, copy it over the approved file.");
        }

        File.Delete(received);
    }

    private static string Here()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Dispatcher.sln")))
        {
            dir = dir.Parent;
        }

        return Path.Combine(dir?.FullName ?? throw new DirectoryNotFoundException("Dispatcher.sln not found above the test output."),
            "tests", "Dispatcher.Client.Tests", "Api");
    }
}
