using System.Globalization;
using System.Numerics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Options;

namespace Dispatcher.Protocol;

/// <summary>
/// The public keys users registered with <c>rpc/settings register_ssl_cert</c>, for the <c>rpc/auth_ssl</c> key login. Kept in
/// <c>ssl-keys.json</c> in the data directory, readable by the host's user only (0600), replaced atomically on every change; with
/// no data directory, kept in memory only. Loaded on first use, not in the constructor.
/// </summary>
internal sealed class PublicKeyStore
{
    public const string FileName = "ssl-keys.json";
    public const int MaxKeys = 1000;
    public const int MaxKeyCharacters = 16 * 1024;

    private readonly object _gate = new();
    private readonly string? _path;
    private readonly bool _flush;
    private readonly TimeProvider _time;
    private List<Entry>? _entries;

    public PublicKeyStore(IOptions<DispatcherOptions> options, TimeProvider time)
    {
        _path = options.Value.DataDirectory is { Length: > 0 } dir ? Path.Combine(dir, FileName) : null;
        _flush = options.Value.FlushToDisk;
        _time = time;
    }

    /// <summary>Registers a key for a user (again: the nickname and email are updated). Throws <see cref="ArgumentException"/> for a key that is not an RSA public key.</summary>
    public void Register(DispatcherUser user, string pubKey, string nickname, string email)
    {
        var key = ParseKey(pubKey);
        lock (_gate)
        {
            var entries = Load();
            var next = entries.Where(e => !(e.User == user.Name && e.PubKey == pubKey)).ToList();
            if (next.Count >= MaxKeys)
            {
                throw new InvalidOperationException($"The server keeps at most {MaxKeys} keys; revoke some first.");
            }

            next.Add(new Entry
            {
                User = user.Name,
                Access = user.Access,
                PubKey = pubKey,
                Nickname = nickname,
                Email = email,
                Registered = _time.GetLocalNow().ToString("yyyy-MM-ddTHH:mm:ss", CultureInfo.InvariantCulture),
                Key = key,
            });
            Save(next);
            _entries = next;
        }
    }

    /// <summary>The keys of one user, or of everyone (<paramref name="user"/> null): user → key → description.</summary>
    public SortedDictionary<string, SortedDictionary<string, string>> List(string? user)
    {
        var result = new SortedDictionary<string, SortedDictionary<string, string>>(StringComparer.Ordinal);
        lock (_gate)
        {
            foreach (var e in Load())
            {
                if (user is not null && e.User != user)
                {
                    continue;
                }

                if (!result.TryGetValue(e.User, out var keys))
                {
                    result[e.User] = keys = new SortedDictionary<string, string>(StringComparer.Ordinal);
                }

                keys[e.PubKey] = $"Nickname: {e.Nickname}\nEmail: {e.Email}\nDate Registered: {e.Registered}";
            }
        }

        return result;
    }

    /// <summary>Removes a user's key; false when it was not registered.</summary>
    public bool Revoke(string user, string pubKey)
    {
        lock (_gate)
        {
            var entries = Load();
            var next = entries.Where(e => !(e.User == user && e.PubKey == pubKey)).ToList();
            if (next.Count == entries.Count)
            {
                return false;
            }

            Save(next);
            _entries = next;
            return true;
        }
    }

    /// <summary>
    /// Finds whose key made <paramref name="signature"/>: the block a client gets from <c>RSA_private_encrypt</c> with PKCS#1 v1.5
    /// padding (type 1, no DigestInfo) over the challenge's bytes. Returns the message each key recovers, for the caller to match.
    /// </summary>
    public IEnumerable<(DispatcherUser User, byte[] Message)> Recover(byte[] signature)
    {
        Entry[] entries;
        lock (_gate)
        {
            entries = [.. Load()];
        }

        foreach (var e in entries)
        {
            if (e.Key is { } key && RecoverPkcs1Type1(key, signature) is { } message)
            {
                yield return (new DispatcherUser(e.User, e.Access), message);
            }
        }
    }

    /// <summary>
    /// The RSA public operation and the PKCS#1 v1.5 type-1 unpadding: what OpenSSL's <c>RSA_public_decrypt</c> does. .NET's
    /// <c>RSA.VerifyHash</c> expects a DigestInfo inside the block, which sysadm clients never put there.
    /// </summary>
    internal static byte[]? RecoverPkcs1Type1(RSAParameters key, byte[] signature)
    {
        var k = key.Modulus!.Length;
        if (signature.Length != k)
        {
            return null;
        }

        var n = new BigInteger(key.Modulus, isUnsigned: true, isBigEndian: true);
        var s = new BigInteger(signature, isUnsigned: true, isBigEndian: true);
        if (s >= n)
        {
            return null;
        }

        var m = BigInteger.ModPow(s, new BigInteger(key.Exponent, isUnsigned: true, isBigEndian: true), n);
        var block = new byte[k];
        var length = m.GetByteCount(isUnsigned: true);
        if (length > k || !m.TryWriteBytes(block.AsSpan(k - length), out _, isUnsigned: true, isBigEndian: true))
        {
            return null;
        }

        // 00 01 FF..FF (at least 8) 00 MESSAGE
        if (block[0] != 0 || block[1] != 1)
        {
            return null;
        }

        var i = 2;
        while (i < k && block[i] == 0xFF)
        {
            i++;
        }

        return i - 2 < 8 || i >= k || block[i] != 0 ? null : block[(i + 1)..];
    }

    /// <summary>A key as clients send it: base64 of a PEM public key (the GUI's form), or the PEM text itself.</summary>
    internal static RSAParameters ParseKey(string pubKey)
    {
        if (pubKey.Length > MaxKeyCharacters)
        {
            throw new ArgumentException($"\"pub_key\" is longer than {MaxKeyCharacters} characters.");
        }

        var pem = pubKey;
        if (!pem.Contains("-----BEGIN", StringComparison.Ordinal))
        {
            try
            {
                pem = Encoding.ASCII.GetString(Convert.FromBase64String(pubKey));
            }
            catch (FormatException)
            {
                pem = string.Empty;
            }
        }

        try
        {
            using var rsa = RSA.Create();
            rsa.ImportFromPem(pem);
            return rsa.ExportParameters(includePrivateParameters: false);
        }
        catch (Exception ex) when (ex is ArgumentException or CryptographicException)
        {
            throw new ArgumentException("\"pub_key\" must be an RSA public key: base64 of its PEM text (-----BEGIN PUBLIC KEY-----), as the sysadm GUI sends it.", ex);
        }
    }

    private List<Entry> Load()
    {
        if (_entries is not null)
        {
            return _entries;
        }

        var entries = new List<Entry>();
        if (_path is not null && File.Exists(_path))
        {
            var file = JsonSerializer.Deserialize(File.ReadAllBytes(_path), KeyStoreJson.Default.KeyFile)
                ?? throw new InvalidDataException($"{_path} is not a key file.");
            foreach (var e in file.Keys)
            {
                try
                {
                    e.Key = ParseKey(e.PubKey);
                }
                catch (ArgumentException)
                {
                    // Kept (so that list and revoke still show it) but never matches a login.
                    e.Key = null;
                }

                entries.Add(e);
            }
        }

        return _entries = entries;
    }

    private void Save(List<Entry> entries)
    {
        if (_path is null)
        {
            return;
        }

        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        var temp = _path + ".tmp";
        var bytes = JsonSerializer.SerializeToUtf8Bytes(new KeyFile { Keys = entries }, KeyStoreJson.Default.KeyFile);
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using (var stream = new FileStream(temp, options))
        {
            stream.Write(bytes);
            stream.Flush(flushToDisk: _flush);
        }

        if (!OperatingSystem.IsWindows())
        {
            // UnixCreateMode applies only when the file is created; a leftover temp file keeps its mode otherwise.
            File.SetUnixFileMode(temp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        File.Move(temp, _path, overwrite: true);
    }

    internal sealed class KeyFile
    {
        [JsonPropertyName("version")]
        public int Version { get; set; } = 1;

        [JsonPropertyName("keys")]
        public List<Entry> Keys { get; set; } = [];
    }

    internal sealed class Entry
    {
        [JsonPropertyName("user")]
        public string User { get; set; } = string.Empty;

        [JsonPropertyName("access")]
        public DispatcherAccess Access { get; set; }

        [JsonPropertyName("pub_key")]
        public string PubKey { get; set; } = string.Empty;

        [JsonPropertyName("nickname")]
        public string Nickname { get; set; } = string.Empty;

        [JsonPropertyName("email")]
        public string Email { get; set; } = string.Empty;

        [JsonPropertyName("registered")]
        public string Registered { get; set; } = string.Empty;

        [JsonIgnore]
        public RSAParameters? Key { get; set; }
    }
}

[JsonSourceGenerationOptions(UseStringEnumConverter = true, WriteIndented = true)]
[JsonSerializable(typeof(PublicKeyStore.KeyFile))]
internal sealed partial class KeyStoreJson : JsonSerializerContext;
