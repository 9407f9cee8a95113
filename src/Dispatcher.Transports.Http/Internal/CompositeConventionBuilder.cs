using Microsoft.AspNetCore.Builder;

namespace Dispatcher.Transports.Http.Internal;

/// <summary>Applies conventions (authorization, CORS, rate limiting) to every endpoint the transport maps.</summary>
internal sealed class CompositeConventionBuilder(IEndpointConventionBuilder[] builders) : IEndpointConventionBuilder
{
    public void Add(Action<EndpointBuilder> convention)
    {
        foreach (var builder in builders)
        {
            builder.Add(convention);
        }
    }

#if NET8_0_OR_GREATER
    public void Finally(Action<EndpointBuilder> finallyConvention)
    {
        foreach (var builder in builders)
        {
            builder.Finally(finallyConvention);
        }
    }
#endif
}
