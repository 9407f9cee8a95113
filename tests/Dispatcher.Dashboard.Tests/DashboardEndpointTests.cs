using System.Net;
using System.Net.Http.Headers;
using Dispatcher.Dashboard;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Dispatcher.Dashboard.Tests;

/// <summary>The dashboard's files served by a real Kestrel on 127.0.0.1 (the page itself is tested in Chromium by e2e/).</summary>
public sealed class DashboardEndpointTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task MapDispatcherDashboard_BarePath_RedirectsToFolder()
    {
        await using var app = await StartAsync();
        using var client = Client(app);

        using var response = await client.GetAsync(new Uri("/dashboard?x=1", UriKind.Relative));

        Assert.Equal(HttpStatusCode.MovedPermanently, response.StatusCode);
        Assert.Equal("/dashboard/?x=1", response.Headers.Location?.OriginalString);
    }

    [Fact]
    public async Task MapDispatcherDashboard_Folder_ServesPageWithPolicyAndSocketAddress()
    {
        await using var app = await StartAsync();
        using var client = Client(app);

        using var response = await client.GetAsync(new Uri("/dashboard/", UriKind.Relative));
        var html = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/html; charset=utf-8", response.Content.Headers.ContentType?.ToString());
        Assert.Contains("<meta name=\"dispatcher-websocket\" content=\"/\">", html, StringComparison.Ordinal);
        Assert.Contains("<title>Dispatcher</title>", html, StringComparison.Ordinal);
        var policy = string.Join(' ', response.Headers.GetValues("Content-Security-Policy"));
        Assert.Contains("default-src 'none'", policy, StringComparison.Ordinal);
        Assert.Contains("connect-src 'self';", policy, StringComparison.Ordinal);
        Assert.Contains("script-src 'self'", policy, StringComparison.Ordinal);
        Assert.Equal("nosniff", string.Join(' ', response.Headers.GetValues("X-Content-Type-Options")));
        Assert.NotNull(response.Headers.ETag);
    }

    [Theory]
    [InlineData("app.js", "text/javascript; charset=utf-8", "connect()")]
    [InlineData("app.css", "text/css; charset=utf-8", "prefers-color-scheme: dark")]
    [InlineData("index.html", "text/html; charset=utf-8", "<label for=\"login-user\">User name</label>")]
    public async Task MapDispatcherDashboard_File_ServedFromTheAssembly(string file, string contentType, string content)
    {
        await using var app = await StartAsync();
        using var client = Client(app);

        using var response = await client.GetAsync(new Uri("/dashboard/" + file, UriKind.Relative));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(contentType, response.Content.Headers.ContentType?.ToString());
        Assert.Contains(content, await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task MapDispatcherDashboard_SameETag_Answers304()
    {
        await using var app = await StartAsync();
        using var client = Client(app);
        using var first = await client.GetAsync(new Uri("/dashboard/app.js", UriKind.Relative));

        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri("/dashboard/app.js", UriKind.Relative));
        request.Headers.IfNoneMatch.Add(first.Headers.ETag!);
        using var second = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.NotModified, second.StatusCode);
        Assert.Empty(await second.Content.ReadAsByteArrayAsync());
        Assert.Equal("no-cache", first.Headers.CacheControl?.ToString());
    }

    [Fact]
    public async Task MapDispatcherDashboard_Head_SendsLengthWithoutBody()
    {
        await using var app = await StartAsync();
        using var client = Client(app);

        using var response = await client.SendAsync(new HttpRequestMessage(HttpMethod.Head, new Uri("/dashboard/app.css", UriKind.Relative)));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(response.Content.Headers.ContentLength > 1000);
        Assert.Empty(await response.Content.ReadAsByteArrayAsync());
    }

    [Theory]
    [InlineData("/dashboard/nope.js")]
    [InlineData("/dashboard/wwwroot/app.js")]
    [InlineData("/dashboard/..%2Fappsettings.json")]
    public async Task MapDispatcherDashboard_UnknownFile_Answers404(string path)
    {
        await using var app = await StartAsync();
        using var client = Client(app);

        using var response = await client.GetAsync(new Uri(path, UriKind.Relative));

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
    }

    [Fact]
    public async Task MapDispatcherDashboard_Post_Answers405()
    {
        await using var app = await StartAsync();
        using var client = Client(app);

        using var response = await client.PostAsync(new Uri("/dashboard/", UriKind.Relative), new StringContent("x"));

        Assert.Equal(HttpStatusCode.MethodNotAllowed, response.StatusCode);
    }

    [Fact]
    public async Task AddDispatcherDashboard_Options_FillInThePageEncoded()
    {
        await using var app = await StartAsync(o =>
        {
            o.WebSocketUrl = "wss://jobs.example:8443/ws?a=1&b=2";
            o.Title = "Jobs <on> \"build-1\"";
        });
        using var client = Client(app);

        using var response = await client.GetAsync(new Uri("/dashboard/", UriKind.Relative));
        var html = await response.Content.ReadAsStringAsync();

        Assert.Contains("content=\"wss://jobs.example:8443/ws?a=1&amp;b=2\"", html, StringComparison.Ordinal);
        Assert.Contains("<title>Jobs &lt;on&gt; &quot;build-1&quot;</title>", html, StringComparison.Ordinal);
        Assert.Contains("connect-src 'self' wss://jobs.example:8443;", string.Join(' ', response.Headers.GetValues("Content-Security-Policy")), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("ws")]
    [InlineData("//evil.example/")]
    [InlineData("http://host/")]
    public async Task AddDispatcherDashboard_BadWebSocketUrl_StopsStartWithMessage(string url)
    {
        var ex = await Assert.ThrowsAsync<OptionsValidationException>(async () =>
        {
            await using var app = await StartAsync(o => o.WebSocketUrl = url);
        });

        Assert.Contains($"WebSocketUrl is '{url}'; it must be a path starting with '/' or an absolute ws:// or wss:// URL.", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MapDispatcherDashboard_WithoutServices_SaysWhatToCall()
    {
        var builder = WebApplication.CreateSlimBuilder();
        var app = builder.Build();

        var ex = Assert.Throws<InvalidOperationException>(() => app.MapDispatcherDashboard("/dashboard"));

        Assert.Equal("Unable to find the dispatcher dashboard's services. Call 'services.AddDispatcherDashboard()' when configuring the services.", ex.Message);
    }

    [Theory]
    [InlineData("/")]
    [InlineData("")]
    public void MapDispatcherDashboard_AtRoot_Throws(string pattern)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Services.AddDispatcherDashboard();
        var app = builder.Build();

        var ex = Assert.Throws<ArgumentException>(() => app.MapDispatcherDashboard(pattern));

        Assert.Equal("pattern", ex.ParamName);
    }

    [Fact]
    public void AddDispatcherDashboard_Twice_RegistersOnce()
    {
        var services = new ServiceCollection();

        services.AddDispatcherDashboard().AddDispatcherDashboard(o => o.Title = "Second");
        using var provider = services.BuildServiceProvider();

        Assert.Single(services, d => d.ServiceType == typeof(Internal.DashboardAssets));
        Assert.Equal("Second", provider.GetRequiredService<IOptions<DispatcherDashboardOptions>>().Value.Title);
    }

    [Fact]
    public async Task MapDispatcherDashboard_ReturnsConventionBuilder_ThatAppliesToTheEndpoint()
    {
        await using var app = await StartAsync(map: e => e.MapDispatcherDashboard("/ops/dashboard").WithMetadata(new MarkerMetadata()));

        var endpoints = app.Services.GetRequiredService<EndpointDataSource>().Endpoints;

        var dashboard = Assert.Single(endpoints, e => e.DisplayName == "Dispatcher dashboard");
        Assert.NotNull(dashboard.Metadata.GetMetadata<MarkerMetadata>());
        using var client = Client(app);
        using var response = await client.GetAsync(new Uri("/ops/dashboard/app.js", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    private static async Task<WebApplication> StartAsync(Action<DispatcherDashboardOptions>? configure = null, Action<WebApplication>? map = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseKestrel(o => o.Listen(IPAddress.Loopback, 0));
        builder.Logging.ClearProviders();
        builder.Services.AddDispatcherDashboard(configure);
        var app = builder.Build();
        if (map is null)
        {
            app.MapDispatcherDashboard("/dashboard");
        }
        else
        {
            map(app);
        }

        try
        {
            await app.StartAsync();
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }

        return app;
    }

    private static HttpClient Client(WebApplication app)
    {
        var address = app.Urls.First();
        return new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(address), Timeout = Patience };
    }

    private sealed class MarkerMetadata;
}
