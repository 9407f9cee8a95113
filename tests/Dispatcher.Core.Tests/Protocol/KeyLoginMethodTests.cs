using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Dispatcher.Protocol;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Dispatcher.Tests.Protocol;

public sealed class KeyLoginMethodTests
{
    private readonly FakeTimeProvider _time = new();
    private readonly RSA _rsa = RSA.Create(2048);
    private readonly KeyLoginMethod _method;

    public KeyLoginMethodTests()
    {
        var store = new PublicKeyStore(Options.Create(new DispatcherOptions()), _time);
        store.Register(new DispatcherUser("alice", DispatcherAccess.Full), RsaTestKeys.PubKey(_rsa), "alice", "");
        _method = new KeyLoginMethod(store, _time);
    }

    private async Task<ProtocolLoginResult> LoginAsync(string args)
    {
        using var doc = JsonDocument.Parse(args);
        var request = new ProtocolRequest("rpc", "auth_ssl", "a", doc.RootElement.Clone(), new ProtocolConnection("test", "192.0.2.1"));
        return await _method.LoginAsync(request, CancellationToken.None);
    }

    private async Task<string> ChallengeAsync()
    {
        var stage1 = await LoginAsync("\"\"");
        var challenge = (string)stage1.Challenge!["test_string"]!;
        Assert.Matches("^[A-Za-z0-9]{20}$", challenge);
        return challenge;
    }

    private static string Answer(string signature) => new JsonObject { ["encrypted_string"] = signature }.ToJsonString();

    [Fact]
    public async Task Login_WithTheSignedChallenge_Succeeds_Once()
    {
        var challenge = await ChallengeAsync();
        var answer = Answer(RsaTestKeys.SignChallenge(_rsa, challenge));

        Assert.Equal(new DispatcherUser("alice", DispatcherAccess.Full), (await LoginAsync(answer)).User);
        Assert.Null((await LoginAsync(answer)).User); // the challenge is used up
    }

    [Fact]
    public async Task Login_AfterTheChallengeExpired_Fails()
    {
        var challenge = await ChallengeAsync();
        _time.Advance(KeyLoginMethod.ChallengeLifetime + TimeSpan.FromSeconds(1));

        var result = await LoginAsync(Answer(RsaTestKeys.SignChallenge(_rsa, challenge)));
        Assert.Null(result.User);
        Assert.False(result.IsInvalid);
    }

    [Fact]
    public async Task Login_WithAnotherKeyOrAnUnissuedString_Fails()
    {
        using var other = RSA.Create(2048);
        var challenge = await ChallengeAsync();

        Assert.Null((await LoginAsync(Answer(RsaTestKeys.SignChallenge(other, challenge)))).User);
        Assert.Null((await LoginAsync(Answer(RsaTestKeys.SignChallenge(_rsa, "AAAAAAAAAAAAAAAAAAAA")))).User);
        Assert.True((await LoginAsync("{\"encrypted_string\": 5}")).IsInvalid);
    }

    [Fact]
    public async Task Stage1_Flood_KeepsOutstandingChallengesBounded()
    {
        for (var i = 0; i < 3000; i++)
        {
            await LoginAsync("\"\"");
        }

        var challenge = await ChallengeAsync();
        Assert.NotNull((await LoginAsync(Answer(RsaTestKeys.SignChallenge(_rsa, challenge)))).User);
    }
}
