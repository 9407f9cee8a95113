using System.Security.Cryptography;
using System.Text;
using Dispatcher.Protocol;
using Microsoft.Extensions.Options;

namespace Dispatcher.Tests.Protocol;

public sealed class PublicKeyStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("dispatcher-keys-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private PublicKeyStore NewStore(string? dir = "") =>
        new(Options.Create(new DispatcherOptions { DataDirectory = dir == string.Empty ? _dir : dir }), TimeProvider.System);

    [Fact]
    public void Register_SurvivesARestart_InAFileOnlyTheOwnerCanRead()
    {
        using var rsa = RSA.Create(2048);
        var key = RsaTestKeys.PubKey(rsa);
        NewStore().Register(new DispatcherUser("alice", DispatcherAccess.Full), key, "alice", "a@example.org");

        var path = Path.Combine(_dir, PublicKeyStore.FileName);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        var listed = NewStore().List(null);
        var description = Assert.Single(Assert.Single(listed).Value);
        Assert.Equal(key, description.Key);
        Assert.StartsWith("Nickname: alice\nEmail: a@example.org\nDate Registered: ", description.Value, StringComparison.Ordinal);
    }

    [Fact]
    public void Recover_FindsTheKeysOwner_FromTheClientsSignedChallenge()
    {
        using var alice = RSA.Create(2048);
        using var bob = RSA.Create(2048);
        var store = NewStore(dir: null);
        store.Register(new DispatcherUser("alice", DispatcherAccess.Read), RsaTestKeys.PubKey(alice), "a", "");
        store.Register(new DispatcherUser("bob", DispatcherAccess.Full), RsaTestKeys.PubKey(bob), "b", "");

        var signature = RsaTestKeys.PrivateEncrypt(bob, Encoding.Latin1.GetBytes("q3ZxV0aLk2Pn8TbE4wRs"));
        var (user, message) = Assert.Single(store.Recover(signature));

        Assert.Equal(new DispatcherUser("bob", DispatcherAccess.Full), user);
        Assert.Equal("q3ZxV0aLk2Pn8TbE4wRs", Encoding.Latin1.GetString(message));
    }

    [Fact]
    public void Recover_RejectsASignatureOfAnotherKey_AndGarbage()
    {
        using var alice = RSA.Create(2048);
        using var mallory = RSA.Create(2048);
        var store = NewStore(dir: null);
        store.Register(new DispatcherUser("alice", DispatcherAccess.Full), RsaTestKeys.PubKey(alice), "a", "");

        Assert.Empty(store.Recover(RsaTestKeys.PrivateEncrypt(mallory, "challenge"u8.ToArray())));
        Assert.Empty(store.Recover(new byte[256]));
        Assert.Empty(store.Recover([1, 2, 3]));
    }

    [Theory]
    [InlineData("not base64 at all!")]
    [InlineData("LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0K")] // base64 of a PEM header with no key
    public void Register_ABadKey_ThrowsWithAMessageThatSaysWhatAKeyIs(string key)
    {
        var ex = Assert.Throws<ArgumentException>(() => NewStore().Register(new DispatcherUser("alice", DispatcherAccess.Full), key, "", ""));
        Assert.Contains("RSA public key", ex.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(_dir, PublicKeyStore.FileName)));
    }

    [Fact]
    public void Revoke_RemovesOnlyThatUsersKey()
    {
        using var rsa = RSA.Create(2048);
        var key = RsaTestKeys.PubKey(rsa);
        var store = NewStore();
        store.Register(new DispatcherUser("alice", DispatcherAccess.Full), key, "", "");
        store.Register(new DispatcherUser("bob", DispatcherAccess.Read), key, "", "");

        Assert.False(store.Revoke("carol", key));
        Assert.True(store.Revoke("alice", key));
        Assert.Equal(["bob"], NewStore().List(null).Keys);
    }
}
