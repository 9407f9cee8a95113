using Dispatcher.Dashboard.Internal;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Maps the dispatcher dashboard.</summary>
public static class DispatcherDashboardEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Serves the dashboard at <paramref name="pattern"/> (for example <c>/dashboard</c>; the bare path redirects to the one with
    /// a trailing slash). Anyone who can load the page still has to log in with a dispatcher user; add host authorization
    /// with the returned builder if the page itself should be private.
    /// </summary>
    /// <param name="endpoints">The endpoint route builder.</param>
    /// <param name="pattern">The path of the dashboard: a literal path, not <c>/</c>.</param>
    /// <returns>A builder to add authorization, CORS or rate limiting to the endpoint.</returns>
    /// <exception cref="InvalidOperationException"><c>AddDispatcherDashboard()</c> was not called.</exception>
    /// <exception cref="ArgumentException"><paramref name="pattern"/> is empty or <c>/</c>.</exception>
    public static IEndpointConventionBuilder MapDispatcherDashboard(this IEndpointRouteBuilder endpoints, string pattern = "/dashboard")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(pattern);
        var path = pattern.TrimEnd('/');
        if (path.Length == 0)
        {
            throw new ArgumentException(
                "The dashboard needs a path of its own, such as \"/dashboard\": at \"/\" it would take every address of the host.", nameof(pattern));
        }

        if (endpoints.ServiceProvider.GetService<DashboardAssets>() is not { } assets)
        {
            throw new InvalidOperationException(
                "Unable to find the dispatcher dashboard's services. Call 'services.AddDispatcherDashboard()' when configuring the services.");
        }

        return endpoints.MapMethods(path + "/{**file}", [HttpMethods.Get, HttpMethods.Head], assets.ServeAsync)
            .WithDisplayName("Dispatcher dashboard");
    }
}
