using Microsoft.Extensions.Options;

namespace Dispatcher.Dashboard.Internal;

internal sealed class DashboardOptionsValidator : IValidateOptions<DispatcherDashboardOptions>
{
    public ValidateOptionsResult Validate(string? name, DispatcherDashboardOptions options)
    {
        var errors = new List<string>();
        var url = options.WebSocketUrl;
        if (string.IsNullOrEmpty(url)
            || !(url.StartsWith('/') && !url.StartsWith("//", StringComparison.Ordinal)
                 || Uri.TryCreate(url, UriKind.Absolute, out var uri) && (uri.Scheme == "ws" || uri.Scheme == "wss")))
        {
            errors.Add($"Dispatcher dashboard: WebSocketUrl is '{url}'; it must be a path starting with '/' or an absolute ws:// or wss:// URL.");
        }

        if (string.IsNullOrWhiteSpace(options.Title))
        {
            errors.Add("Dispatcher dashboard: Title is empty; give the page a title.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
