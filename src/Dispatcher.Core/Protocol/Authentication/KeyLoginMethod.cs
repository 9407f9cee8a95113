using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Dispatcher.Protocol;

/// <summary>
/// <c>rpc/auth_ssl</c>, the sysadm key login. Stage 1 (any args without <c>encrypted_string</c>) answers
/// <c>{"test_string": 20 random letters and digits}</c>, valid for 30 seconds; stage 2 sends <c>{"encrypted_string": base64}</c>, the
/// challenge signed with the client's RSA private key (PKCS#1 v1.5 type 1, no digest). The key that recovers an outstanding
/// challenge names the user; the challenge is used up.
/// </summary>
internal sealed class KeyLoginMethod(PublicKeyStore keys, TimeProvider time) : IProtocolLoginMethod
{
    public static readonly TimeSpan ChallengeLifetime = TimeSpan.FromSeconds(30);
    private const int MaxOutstanding = 1024;
    private const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    private readonly ConcurrentDictionary<string, DateTimeOffset> _challenges = new(StringComparer.Ordinal);

    public string RequestName => "auth_ssl";

    public ValueTask<ProtocolLoginResult> LoginAsync(ProtocolRequest request, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        if (!JsonArgs.TryGetProperty(request.Args, "encrypted_string", out var encrypted))
        {
            return ValueTask.FromResult(ProtocolLoginResult.Continue(new JsonObject { ["test_string"] = Issue(now) }));
        }

        if (encrypted.ValueKind != JsonValueKind.String)
        {
            return ValueTask.FromResult(ProtocolLoginResult.Invalid("\"encrypted_string\" must be a base64 string."));
        }

        byte[] signature;
        try
        {
            signature = Convert.FromBase64String(encrypted.GetString()!);
        }
        catch (FormatException)
        {
            return ValueTask.FromResult(ProtocolLoginResult.Failed("\"encrypted_string\" is not base64."));
        }

        foreach (var (user, message) in keys.Recover(signature))
        {
            var text = Encoding.Latin1.GetString(message);
            if (_challenges.TryRemove(text, out var expires) && expires > now)
            {
                return ValueTask.FromResult(ProtocolLoginResult.Succeeded(user));
            }
        }

        return ValueTask.FromResult(ProtocolLoginResult.Failed("The signed challenge matches no registered key and no outstanding challenge."));
    }

    private string Issue(DateTimeOffset now)
    {
        if (_challenges.Count >= MaxOutstanding)
        {
            foreach (var (key, expires) in _challenges)
            {
                if (expires <= now)
                {
                    _challenges.TryRemove(key, out _);
                }
            }

            // Still full of live challenges (a flood of stage-1 requests): drop an arbitrary one rather than grow.
            while (_challenges.Count >= MaxOutstanding && _challenges.Keys.FirstOrDefault() is { } any)
            {
                _challenges.TryRemove(any, out _);
            }
        }

        var challenge = RandomNumberGenerator.GetString(Alphabet, 20);
        _challenges[challenge] = now + ChallengeLifetime;
        return challenge;
    }
}
