namespace Dispatcher.Client;

/// <summary>
/// A request failed: the server answered with an error (<see cref="Code"/> is its code, such as <c>"400"</c>, <c>"401"</c>,
/// <c>"403"</c>, and <see cref="Exception.Message"/> its message), or the connection failed or broke before an answer came
/// (<see cref="Code"/> is <see langword="null"/> and <see cref="Exception.InnerException"/> says why).
/// </summary>
public sealed class DispatcherClientException : Exception
{
    /// <summary>Initializes a new instance with a message.</summary>
    /// <param name="message">What went wrong.</param>
    public DispatcherClientException(string message)
        : base(message)
    {
    }

    /// <summary>Initializes a new instance with a message and the exception that caused it.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The cause.</param>
    public DispatcherClientException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Initializes a new instance for an error the server answered.</summary>
    /// <param name="code">The server's error code (an HTTP status number as a string).</param>
    /// <param name="message">The server's message.</param>
    public DispatcherClientException(string? code, string message)
        : base(message) => Code = code;

    /// <summary>Initializes a new instance.</summary>
    public DispatcherClientException()
    {
    }

    /// <summary>Gets the server's error code (<c>"400"</c>, <c>"401"</c>, <c>"403"</c>, <c>"404"</c>, <c>"500"</c>…), or <see langword="null"/> when no server answer caused the failure.</summary>
    public string? Code { get; }
}
