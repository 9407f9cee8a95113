using System.Diagnostics;
using System.Reflection;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace Dispatcher.ReadmeTesting;

/// <summary>A fenced code block of README.md; <see cref="Tag"/> is the name in a <c>&lt;!-- test: NAME --&gt;</c> comment on the line before it.</summary>
internal sealed record ReadmeBlock(string Language, string? Tag, string Text, int Line);

/// <summary>Reads README.md at test time, so the tests check what a reader sees, not a copy of it.</summary>
internal static partial class Readme
{
    public static string Root { get; } = FindRoot();

    public static IReadOnlyList<ReadmeBlock> Blocks()
    {
        var lines = File.ReadAllLines(Path.Combine(Root, "README.md"));
        var blocks = new List<ReadmeBlock>();
        for (var i = 0; i < lines.Length; i++)
        {
            if (!lines[i].StartsWith("```", StringComparison.Ordinal))
            {
                continue;
            }

            var language = lines[i][3..].Trim();
            var tag = i > 0 && TagComment().Match(lines[i - 1]) is { Success: true } m ? m.Groups[1].Value : null;
            var start = i + 1;
            var end = start;
            while (end < lines.Length && !lines[end].StartsWith("```", StringComparison.Ordinal))
            {
                end++;
            }

            blocks.Add(new ReadmeBlock(language, tag, string.Join('\n', lines[start..end]) + "\n", start + 1));
            i = end;
        }

        return blocks;
    }

    public static ReadmeBlock Block(string tag) =>
        Blocks().SingleOrDefault(b => b.Tag == tag) ?? throw new InvalidOperationException($"README.md has no block tagged <!-- test: {tag} -->.");

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Dispatcher.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("Dispatcher.sln not found above " + AppContext.BaseDirectory);
    }

    [GeneratedRegex(@"^<!--\s*test:\s*([\w-]+)\s*-->\s*$")]
    private static partial Regex TagComment();
}

/// <summary>The kind of project a README block is pasted into: what it references and which usings it gets implicitly.</summary>
internal enum ProjectKind
{
    /// <summary><c>dotnet new console</c> (Microsoft.NET.Sdk) with Dispatcher.Core and Microsoft.Extensions.Hosting.</summary>
    Console,

    /// <summary><c>dotnet new web</c> (Microsoft.NET.Sdk.Web) with the three Dispatcher packages.</summary>
    Web,

    /// <summary>A plain program that references nothing but .NET itself.</summary>
    BclOnly,
}

/// <summary>Compiles a README block with Roslyn, against the assemblies the test process runs on, as the project kind would.</summary>
internal static class CSharpBlock
{
    // The implicit usings of Microsoft.NET.Sdk and Microsoft.NET.Sdk.Web.
    private static readonly string[] SdkUsings =
        ["System", "System.Collections.Generic", "System.IO", "System.Linq", "System.Net.Http", "System.Threading", "System.Threading.Tasks"];

    private static readonly string[] WebUsings =
    [
        .. SdkUsings, "System.Net.Http.Json", "Microsoft.AspNetCore.Builder", "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Http",
        "Microsoft.AspNetCore.Routing", "Microsoft.Extensions.Configuration", "Microsoft.Extensions.DependencyInjection",
        "Microsoft.Extensions.Hosting", "Microsoft.Extensions.Logging",
    ];

    /// <summary>Compiles; returns the diagnostics that are warnings or errors (an empty list means it compiles cleanly).</summary>
    public static (Assembly? Assembly, IReadOnlyList<Diagnostic> Problems) Compile(string code, ProjectKind kind, bool library = false)
    {
        var (image, problems) = CompileToImage(code, kind, library);
        return (image is null ? null : Assembly.Load(image), problems);
    }

    /// <summary>Compiles cleanly to an assembly image or fails the test with the compiler's messages.</summary>
    public static byte[] CompileCleanlyToImage(ReadmeBlock block, ProjectKind kind)
    {
        var (image, problems) = CompileToImage(block.Text, kind, library: false);
        Assert.True(problems.Count == 0 && image is not null,
            $"README.md line {block.Line} ({block.Tag}) does not compile cleanly as a {kind} project:\n" + string.Join('\n', problems));
        return image!;
    }

    private static (byte[]? Image, IReadOnlyList<Diagnostic> Problems) CompileToImage(string code, ProjectKind kind, bool library)
    {
        var usings = kind == ProjectKind.Web ? WebUsings : SdkUsings;
        var parse = new CSharpParseOptions(LanguageVersion.Latest);
        var trees = new[]
        {
            CSharpSyntaxTree.ParseText(code, parse, path: "README.md.cs"),
            CSharpSyntaxTree.ParseText(string.Concat(usings.Select(u => $"global using global::{u};\n")), parse, path: "GlobalUsings.g.cs"),
        };
        var options = new CSharpCompilationOptions(library ? OutputKind.DynamicallyLinkedLibrary : OutputKind.ConsoleApplication,
            nullableContextOptions: NullableContextOptions.Enable)
            .WithSpecificDiagnosticOptions(new Dictionary<string, ReportDiagnostic>
            {
                // As the SDK does for every project: a newer package of an assembly a framework assembly references is fine.
                ["CS1701"] = ReportDiagnostic.Suppress,
                ["CS1702"] = ReportDiagnostic.Suppress,
            });
        var compilation = CSharpCompilation.Create("ReadmeBlock" + Guid.NewGuid().ToString("N"), trees, References(kind), options);
        using var image = new MemoryStream();
        var result = compilation.Emit(image);
        var problems = result.Diagnostics.Where(d => d.Severity >= DiagnosticSeverity.Warning).ToList();
        return (result.Success ? image.ToArray() : null, problems);
    }

    /// <summary>Compiles cleanly or fails the test with the compiler's messages.</summary>
    public static Assembly CompileCleanly(ReadmeBlock block, ProjectKind kind, bool library = false)
    {
        var (assembly, problems) = Compile(block.Text, kind, library);
        Assert.True(problems.Count == 0 && assembly is not null,
            $"README.md line {block.Line} ({block.Tag}) does not compile cleanly as a {kind} project:\n" + string.Join('\n', problems));
        return assembly!;
    }

    /// <summary>Runs a compiled program's entry point (top-level statements) on a thread of its own and waits for it to return.</summary>
    public static async Task RunAsync(Assembly program, string[] args, TimeSpan patience)
    {
        var entry = program.EntryPoint ?? throw new InvalidOperationException("The block has no entry point.");
        var run = Task.Factory.StartNew(
            () =>
            {
                try
                {
                    entry.Invoke(null, entry.GetParameters().Length == 0 ? null : [args]);
                }
                catch (TargetInvocationException ex) when (ex.InnerException is not null)
                {
                    System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex.InnerException).Throw();
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);
        await run.WaitAsync(patience);
    }

    private static IEnumerable<MetadataReference> References(ProjectKind kind)
    {
        var platform = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator);
        foreach (var path in platform)
        {
            var name = Path.GetFileNameWithoutExtension(path);
            var bcl = name.StartsWith("System.", StringComparison.Ordinal) || name is "System" or "netstandard" or "mscorlib" or "Microsoft.CSharp"
                || name.StartsWith("Microsoft.Win32.", StringComparison.Ordinal) || name.StartsWith("Microsoft.VisualBasic", StringComparison.Ordinal);
            var include = kind switch
            {
                ProjectKind.BclOnly => bcl,
                ProjectKind.Console => bcl || name.StartsWith("Microsoft.Extensions.", StringComparison.Ordinal) || name == "Dispatcher.Core",
                _ => bcl || name.StartsWith("Microsoft.Extensions.", StringComparison.Ordinal) || name.StartsWith("Microsoft.AspNetCore.", StringComparison.Ordinal)
                    || name is "Microsoft.AspNetCore" or "Microsoft.JSInterop" or "Microsoft.Net.Http.Headers" || name.StartsWith("Dispatcher.", StringComparison.Ordinal) && !name.EndsWith(".Tests", StringComparison.Ordinal),
            };
            if (include)
            {
                yield return MetadataReference.CreateFromFile(path);
            }
        }
    }
}
