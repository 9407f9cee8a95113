using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

namespace Dispatcher.Samples.Tests;

public sealed class SamplePolicyTests
{
    [Fact]
    public async Task AllowList_RejectsAProgramNotListed_AndForcesTheQueue()
    {
        var env = new Dictionary<string, string>
        {
            ["Users__0__Name"] = "ops",
            ["Users__0__Password"] = "ops-pass",
            ["Users__0__FullAccess"] = "true",
            ["Policy__Users__ops__Programs__0"] = "echo",
            ["Policy__Users__ops__Queue"] = "pkg_queue",
        };
        var port = SampleProcess.FreePort();
        await using var host = SampleProcess.Start("Dispatcher.SampleHost", ["--urls", $"http://127.0.0.1:{port}"], env);
        await host.WaitForOutputAsync("Press Ctrl+C to stop.");
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes("ops:ops-pass")));

        using var response = await http.PutAsync("/rpc/dispatcher",
            new StringContent("""{"action":"run","no":"rm -rf /nonexistent","yes":"echo hi"}""", Encoding.UTF8, "application/json"));
        var args = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["args"]!;

        Assert.Equal("yes", (string?)args["started"]![0]);
        Assert.Equal("Rejected by the host's policy: user 'ops' may not run 'rm'; allowed: echo.", (string?)args["rejected"]!["no"]);
        var deadline = DateTime.UtcNow + SampleProcess.Patience;
        JsonArray entries;
        do
        {
            using var h = await http.PutAsync("/rpc/dispatcher", new StringContent("""{"action":"history"}""", Encoding.UTF8, "application/json"));
            entries = JsonNode.Parse(await h.Content.ReadAsStringAsync())!["args"]!["history"]!.AsArray();
            await Task.Delay(50);
        }
        while (entries.Count == 0 && DateTime.UtcNow < deadline);

        var yes = Assert.Single(entries);
        Assert.Equal("pkg_queue", (string?)yes!["queue"]);
        Assert.DoesNotContain(entries, e => (string?)e!["process_id"] == "no");
    }
}
