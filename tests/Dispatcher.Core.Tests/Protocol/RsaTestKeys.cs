using System.Numerics;
using System.Security.Cryptography;
using System.Text;

namespace Dispatcher.Tests.Protocol;

/// <summary>What the sysadm Qt client does with its key, done in C# for unit tests (the interop tests use the real client).</summary>
internal static class RsaTestKeys
{
    /// <summary>The GUI's <c>pub_key</c>: base64 of the PEM public key.</summary>
    public static string PubKey(RSA rsa) => Convert.ToBase64String(Encoding.ASCII.GetBytes(rsa.ExportSubjectPublicKeyInfoPem() + "\n"));

    /// <summary>OpenSSL's <c>RSA_private_encrypt</c> with PKCS#1 padding: 00 01 FF… 00 message, raised to the private exponent.</summary>
    public static byte[] PrivateEncrypt(RSA rsa, byte[] message)
    {
        var p = rsa.ExportParameters(includePrivateParameters: true);
        var k = p.Modulus!.Length;
        var block = new byte[k];
        block[1] = 1;
        block.AsSpan(2, k - 3 - message.Length).Fill(0xFF);
        message.CopyTo(block, k - message.Length);
        var m = new BigInteger(block, isUnsigned: true, isBigEndian: true);
        var s = BigInteger.ModPow(m, new BigInteger(p.D, isUnsigned: true, isBigEndian: true), new BigInteger(p.Modulus, isUnsigned: true, isBigEndian: true));
        var result = new byte[k];
        var length = s.GetByteCount(isUnsigned: true);
        s.TryWriteBytes(result.AsSpan(k - length), out _, isUnsigned: true, isBigEndian: true);
        return result;
    }

    public static string SignChallenge(RSA rsa, string challenge) =>
        Convert.ToBase64String(PrivateEncrypt(rsa, Encoding.Latin1.GetBytes(challenge)));
}
