using Dispatcher.Transports.Http.Internal;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Maps the dispatcher's REST endpoint.</summary>
public static class DispatcherHttpEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Serves the sysadm protocol over REST at <c>{prefix}/{namespace}/{name}</c>, for example <c>PUT /rpc/dispatcher</c> with the body
    /// <c>{"action": "list"}</c>. PUT, POST and GET (with a body) are accepted; other methods get 405 with an <c>Allow</c> header.
    /// Also serves <c>GET {prefix}/events/dispatcher</c>: the job events as Server-Sent Events (<c>text/event-stream</c>, resumable
    /// with <c>Last-Event-ID</c>), with the same authentication as the REST requests.
    /// </summary>
    /// <param name="endpoints">The endpoint route builder.</param>
    /// <param name="prefix">A path prefix such as <c>/api</c>, or empty.</param>
    /// <returns>A builder to add authorization, CORS or rate limiting to both endpoints.</returns>
    /// <exception cref="InvalidOperationException"><c>AddDispatcher().AddHttpTransport()</c> was not called.</exception>
    public static IEndpointConventionBuilder MapDispatcherHttp(this IEndpointRouteBuilder endpoints, string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(prefix);
        if (endpoints.ServiceProvider.GetService<HttpRequestHandler>() is null)
        {
            throw new InvalidOperationException(
                "Unable to find the dispatcher's HTTP services. Call 'services.AddDispatcher().AddHttpTransport()' when configuring the services.");
        }

        var rest = endpoints
            .MapMethods(prefix.TrimEnd('/') + "/{namespace}/{name}", [HttpMethods.Put, HttpMethods.Post, HttpMethods.Get],
                (RequestDelegate)(context => context.RequestServices.GetRequiredService<HttpRequestHandler>().HandleAsync(context)))
            .WithDisplayName("Dispatcher REST");

        // A literal route: it takes precedence over {namespace}/{name} for GET, and a body-less GET there was a 400 before.
        var events = endpoints
            .MapGet(prefix.TrimEnd('/') + "/events/dispatcher",
                (RequestDelegate)(context => context.RequestServices.GetRequiredService<EventStreamHandler>().HandleAsync(context)))
            .WithDisplayName("Dispatcher events (Server-Sent Events)");
        return new CompositeConventionBuilder([rest, events]);
    }
}
