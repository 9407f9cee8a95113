using System.Reflection;
using PublicApiGenerator;
using Xunit;

namespace Dispatcher.Tests.Shared;

/// <summary>
/// Compares a package's public API with the <c>NAME.approved.txt</c> kept in its test project's <c>Api</c> folder, so a change to it
/// shows in review. When a change is meant, copy the <c>.received.txt</c> the failing test wrote over the <c>.approved.txt</c>.
/// </summary>
internal static class ApiApproval
{
    private static readonly string[] s_excludedAttributes =
        ["System.Runtime.Versioning.TargetFrameworkAttribute", "System.Reflection.AssemblyMetadataAttribute"];

    public static void Verify(Assembly assembly, string testProject, string[] allowNamespacePrefixes, params string[] moreExcludedAttributes)
    {
        var name = assembly.GetName().Name!;
        var api = assembly.GeneratePublicApi(new ApiGeneratorOptions
        {
            AllowNamespacePrefixes = allowNamespacePrefixes,
            ExcludeAttributes = [.. s_excludedAttributes, .. moreExcludedAttributes],
        }).ReplaceLineEndings("\n");
        var folder = Folder(testProject);
        var approved = Path.Combine(folder, $"{name}.approved.txt");
        var received = Path.Combine(folder, $"{name}.received.txt");
        if (!File.Exists(approved) || File.ReadAllText(approved).ReplaceLineEndings("\n") != api)
        {
            File.WriteAllText(received, api);
            Assert.Fail($"The public API of {name} differs from {approved} (or it is missing). Review {received}, and if the change is meant, copy it over the approved file.");
        }

        File.Delete(received);
    }

    /// <summary>The test project's Api folder in the source tree: found from the test's output folder (CI builds map source paths to /_/).</summary>
    private static string Folder(string testProject)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Dispatcher.sln")))
        {
            dir = dir.Parent;
        }

        return Path.Combine(dir?.FullName ?? throw new DirectoryNotFoundException("Dispatcher.sln not found above the test output."),
            "tests", testProject, "Api");
    }
}
