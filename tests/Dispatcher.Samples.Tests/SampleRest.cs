using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

namespace Dispatcher.Samples.Tests;

/// <summary>REST calls to a sample host process started with one full-access user (the durability and recovery tests).</summary>
internal static class SampleRest
{
    /// <summary>The environment that configures <paramref name="name"/> as the host's one full-access user.</summary>
    public static Dictionary<string, string> FullAccessUser(string name, string password) => new()
    {
        ["Users__0__Name"] = name,
        ["Users__0__Password"] = password,
        ["Users__0__FullAccess"] = "true",
    };

    /// <summary>An HTTP client for the host on <paramref name="port"/>, with Basic credentials.</summary>
    public static HttpClient Client(int port, string user, string password)
    {
        var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));
        return http;
    }

    /// <summary>PUT /rpc/dispatcher: the reply's args, asserting a 200.</summary>
    public static async Task<JsonNode> RpcAsync(HttpClient http, string body)
    {
        using var response = await http.PutAsync("/rpc/dispatcher", new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        return JsonNode.Parse(text)!["args"]!;
    }
}
