using System.Text;
using System.Text.Json.Nodes;
using Dispatcher.Client.Internal;

namespace Dispatcher.Client.Tests;

/// <summary>The request envelope the client writes.</summary>
public sealed class WireTests
{
    [Fact]
    public void Envelope_OfTheSameArgsTwice_IsTheSameRequest()
    {
        // A request sent again after a lapsed login reuses its args: attaching them to a second envelope threw "The node
        // already has a parent" (seen in ReconnectTests.Requests_AfterTheTokenLifetime_StillSucceed over WebSocket).
        var args = new JsonObject { ["action"] = "list" };

        var first = Encoding.UTF8.GetString(Wire.Envelope("rpc", "dispatcher", "c1", args));
        var second = Encoding.UTF8.GetString(Wire.Envelope("rpc", "dispatcher", "c1", args));

        Assert.Equal("""{"namespace":"rpc","name":"dispatcher","id":"c1","args":{"action":"list"}}""", first);
        Assert.Equal(first, second);
        Assert.Null(args.Parent);
    }
}
