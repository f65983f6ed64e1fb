using System.Buffers;
using System.IO.Pipelines;
using InferenceMesh.Core;

namespace InferenceMesh.P2P.Protocols;

/// <summary>Unsigned-varint length-prefixed messages, as Identify and other libp2p protocols frame protobufs.</summary>
public static class LengthPrefixed
{
    /// <summary>Writes the varint length then the bytes, without flushing.</summary>
    public static void Write(PipeWriter writer, ReadOnlySpan<byte> message)
    {
        UnsignedVarint.Write(writer, (ulong)message.Length);
        writer.Write(message);
    }

    /// <summary>
    /// Reads one message of at most <paramref name="maxLength"/> bytes; null on a clean EOF before any byte.
    /// Safe to cancel (the reader is left at a message boundary only if nothing was consumed).
    /// </summary>
    public static async ValueTask<byte[]?> ReadAsync(PipeReader reader, int maxLength, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var consumed = buffer.Start;
            var examined = buffer.End;
            try
            {
                var sr = new SequenceReader<byte>(buffer);
                if (UnsignedVarint.TryRead(ref sr, out var len, why => new P2PException(P2PErrorCode.InvalidEncoding, $"length prefix: {why}")))
                {
                    if (len > (ulong)maxLength)
                        throw new P2PException(P2PErrorCode.LimitExceeded, $"message of {len} bytes exceeds {maxLength}");
                    if (sr.Remaining >= (long)len)
                    {
                        var bytes = new byte[len];
                        sr.TryCopyTo(bytes);
                        sr.Advance((long)len);
                        consumed = examined = sr.Position;
                        return bytes;
                    }
                }
                if (result.IsCompleted || result.IsCanceled)
                {
                    if (buffer.IsEmpty)
                        return null;
                    throw new P2PException(P2PErrorCode.ProtocolViolation, "stream ended inside a length-prefixed message");
                }
            }
            finally
            {
                reader.AdvanceTo(consumed, examined);
            }
        }
    }
}
