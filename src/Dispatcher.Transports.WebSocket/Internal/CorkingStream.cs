using System.Buffers;

namespace Dispatcher.Transports.WebSocket.Internal;

/// <summary>
/// The server's side of an upgraded connection, with writes that can be held back ("corked") while the connection's send loop
/// has more frames queued and sent together when it runs dry: under a burst of events one transport write and one TCP send
/// carries many WebSocket frames, instead of one write, flush and send per frame.
/// </summary>
/// <remarks>
/// The WebSocket writes its frames (and its own keep-alive and close frames) through <see cref="WriteAsync(ReadOnlyMemory{byte}, CancellationToken)"/>;
/// the send loop sets <see cref="Corked"/> before each frame and calls <see cref="FlushPendingAsync"/> when its queue is empty,
/// so nothing stays held back. Every write to the transport is serialized by one lock.
/// </remarks>
internal sealed class CorkingStream(Stream inner) : Stream
{
    private const int MaxHeldBytes = 64 * 1024;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ArrayBufferWriter<byte> _held = new(16 * 1024);
    private volatile bool _corked;

    /// <summary>Gets or sets whether writes are held back (while more frames are about to follow).</summary>
    public bool Corked
    {
        get => _corked;
        set => _corked = value;
    }

    public override bool CanRead => inner.CanRead;

    public override bool CanSeek => false;

    public override bool CanWrite => inner.CanWrite;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        inner.ReadAsync(buffer, cancellationToken);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        inner.ReadAsync(buffer, offset, count, cancellationToken);

    public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_corked && _held.WrittenCount + buffer.Length <= MaxHeldBytes)
            {
                buffer.Span.CopyTo(_held.GetSpan(buffer.Length));
                _held.Advance(buffer.Length);
                return;
            }

            if (_held.WrittenCount > 0 && _held.WrittenCount + buffer.Length <= MaxHeldBytes)
            {
                // The last frame of a batch: everything held back and this frame in one write.
                buffer.Span.CopyTo(_held.GetSpan(buffer.Length));
                _held.Advance(buffer.Length);
                await WriteHeldAsync(cancellationToken).ConfigureAwait(false);
                return;
            }

            await WriteHeldAsync(cancellationToken).ConfigureAwait(false);
            await inner.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer, offset, count).GetAwaiter().GetResult();

    /// <summary>Stops holding writes back and writes whatever is held.</summary>
    public async ValueTask FlushPendingAsync(CancellationToken cancellationToken)
    {
        _corked = false;
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await WriteHeldAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    public override async Task FlushAsync(CancellationToken cancellationToken)
    {
        if (_corked)
        {
            // The WebSocket flushes after every frame; while corked, the send loop's FlushPendingAsync does it for the batch.
            return;
        }

        await FlushPendingAsync(cancellationToken).ConfigureAwait(false);
        await inner.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    public override void Flush() => FlushAsync(CancellationToken.None).GetAwaiter().GetResult();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
            _gate.Dispose();
        }

        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        await inner.DisposeAsync().ConfigureAwait(false);
        _gate.Dispose();
        await base.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Writes what is held back. Called under the lock.</summary>
    private async ValueTask WriteHeldAsync(CancellationToken cancellationToken)
    {
        if (_held.WrittenCount == 0)
        {
            return;
        }

        // Not cancellable, like the WebSocket's own writes: a connection that must give up is aborted (the stream is disposed),
        // and a cancelled write would leave the transport half-written.
        await inner.WriteAsync(_held.WrittenMemory, CancellationToken.None).ConfigureAwait(false);
        _held.ResetWrittenCount();
    }
}
