using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Dispatcher.Transports.WebSocket.Internal;

/// <summary>How the transport's options are registered, as Dispatcher.Core registers its own: bound, validated at start-up.</summary>
internal static class OptionsRegistration
{
    /// <summary>
    /// Registers <typeparamref name="TOptions"/>: bound from the configuration section <paramref name="section"/> when an
    /// <see cref="IConfiguration"/> is registered (plain service collections have none), checked by <typeparamref name="TValidator"/>
    /// when the host starts.
    /// </summary>
    public static void AddBoundOptions<TOptions, TValidator>(this IServiceCollection services, string section)
        where TOptions : class
        where TValidator : class, IValidateOptions<TOptions>
    {
        services.AddOptions<TOptions>().ValidateOnStart();
        services.AddSingleton<IConfigureOptions<TOptions>>(sp => new BindFromConfiguration<TOptions>(sp, section));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<TOptions>, TValidator>());
    }

    private sealed class BindFromConfiguration<TOptions>(IServiceProvider services, string section) : IConfigureOptions<TOptions>
        where TOptions : class
    {
        public void Configure(TOptions options) => services.GetService<IConfiguration>()?.GetSection(section).Bind(options);
    }
}
