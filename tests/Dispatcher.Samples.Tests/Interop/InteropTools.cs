using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Dispatcher.Samples.Tests.Interop;

/// <summary>
/// The real sysadm Qt clients built by <c>eng/interop/build.sh</c>: the command-line client <c>sysadm</c> and <c>sysadm-harness</c>, a
/// console program on the GUI's own connection class. Found in <c>$DISPATCHER_INTEROP_DIR</c> or <c>artifacts/interop</c>.
/// </summary>
internal static class InteropTools
{
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    public static string Directory { get; } = Environment.GetEnvironmentVariable("DISPATCHER_INTEROP_DIR") is { Length: > 0 } dir
        ? dir
        : Path.Combine(RepositoryRoot(), "artifacts", "interop");

    public static string Cli => Path.Combine(Directory, "sysadm");

    public static string Harness => Path.Combine(Directory, "sysadm-harness");

    public static bool Available => File.Exists(Cli) && File.Exists(Harness);

    /// <summary>CI sets DISPATCHER_INTEROP_REQUIRED=1 after building the clients, so that a missing client fails instead of skipping.</summary>
    public static bool Required => Environment.GetEnvironmentVariable("DISPATCHER_INTEROP_REQUIRED") == "1";

    public static async Task<(int ExitCode, string Output, string Errors)> RunAsync(string program, params string[] arguments)
    {
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        // Qt needs no display for these console programs; keep it from looking for one.
        info.Environment["QT_QPA_PLATFORM"] = "offscreen";
        using var process = Process.Start(info)!;
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(Patience);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            throw new TimeoutException($"{Path.GetFileName(program)} {string.Join(' ', arguments)} did not finish within {Patience}:\n{await output}\n{await errors}");
        }

        return (process.ExitCode, await output, await errors);
    }

    /// <summary>A self-signed certificate for 127.0.0.1, as a PFX file with no password (sysadm servers use self-signed ones).</summary>
    public static string WriteServerCertificate(string directory)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddDnsName("localhost");
        request.CertificateExtensions.Add(san.Build());
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(7));
        var path = Path.Combine(directory, "server.pfx");
        File.WriteAllBytes(path, certificate.Export(X509ContentType.Pfx, string.Empty));
        return path;
    }

    /// <summary>The GUI's key bundle: an RSA key and a self-signed certificate whose issuer names the nickname and email it registers.</summary>
    public static (string KeyFile, string CertFile) WriteClientKey(string directory, string nickname, string email)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN={nickname}, E={email}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(7));
        var keyFile = Path.Combine(directory, nickname + ".key.pem");
        var certFile = Path.Combine(directory, nickname + ".cert.pem");
        File.WriteAllText(keyFile, key.ExportRSAPrivateKeyPem() + "\n", Encoding.ASCII);
        File.WriteAllText(certFile, certificate.ExportCertificatePem() + "\n", Encoding.ASCII);
        return (keyFile, certFile);
    }

    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Dispatcher.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new DirectoryNotFoundException("Dispatcher.sln not found above the test output.");
    }
}

/// <summary>A test that needs the real sysadm clients: skipped where they are not built, unless CI requires them.</summary>
public sealed class InteropFactAttribute : FactAttribute
{
    public InteropFactAttribute()
    {
        if (!InteropTools.Available && !InteropTools.Required)
        {
            Skip = $"The sysadm Qt clients are not built in {InteropTools.Directory}: run eng/interop/build.sh.";
        }
    }
}
