using System.Buffers;
using System.Text;

namespace Dispatcher.Running;

/// <summary>Copies a command's output stream into its <see cref="IJobOutput"/>, decoding UTF-8 across read boundaries.</summary>
internal static class OutputCopier
{
    public static async Task CopyAsync(Stream stream, IJobOutput output, CancellationToken cancellationToken)
    {
        const int Size = 16 * 1024;
        var decoder = Encoding.UTF8.GetDecoder();
        var bytes = ArrayPool<byte>.Shared.Rent(Size);
        var chars = ArrayPool<char>.Shared.Rent(Encoding.UTF8.GetMaxCharCount(Size));
        try
        {
            int read;
            while ((read = await stream.ReadAsync(bytes.AsMemory(0, Size), cancellationToken).ConfigureAwait(false)) > 0)
            {
                var count = decoder.GetChars(bytes, 0, read, chars, 0, flush: false);
                if (count > 0)
                {
                    output.Write(chars.AsSpan(0, count));
                }
            }

            var tail = decoder.GetChars([], 0, 0, chars, 0, flush: true);
            if (tail > 0)
            {
                output.Write(chars.AsSpan(0, tail));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bytes);
            ArrayPool<char>.Shared.Return(chars);
        }
    }
}
