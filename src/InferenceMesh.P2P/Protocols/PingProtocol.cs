using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Security.Cryptography;
using InferenceMesh.P2P.Hosting;

namespace InferenceMesh.P2P.Protocols;

/// <summary>
/// Ping (<c>/ipfs/ping/1.0.0</c>): 32 random bytes, echoed back. <see cref="ServeAsync"/> is the handler every
/// <see cref="Libp2pHost"/> registers; <see cref="PingAsync"/> is the dialer's side.
/// </summary>
public static class PingProtocol
{
    /// <summary>The protocol id.</summary>
    public const string ProtocolId = "/ipfs/ping/1.0.0";

    /// <summary>Payload size in bytes.</summary>
    public const int PayloadSize = 32;

    /// <summary>
    /// Runs <paramref name="count"/> pings on one new stream of <paramref name="connection"/>, one after another;
    /// returns each round-trip time. Throws <see cref="P2PException"/> (ProtocolViolation) if an echo differs,
    /// (ConnectionClosed) if the stream ends early. Safe to cancel.
    /// </summary>
    public static async Task<IReadOnlyList<TimeSpan>> PingAsync(Libp2pConnection connection, int count = 1, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        await using var s = await connection.OpenStreamAsync(ProtocolId, cancellationToken).ConfigureAwait(false);
        var rtts = new List<TimeSpan>(count);
        var payload = new byte[PayloadSize];
        var echo = new byte[PayloadSize];
        for (var i = 0; i < count; i++)
        {
            RandomNumberGenerator.Fill(payload);
            var start = Stopwatch.GetTimestamp();
            await s.Output.WriteAsync(payload, cancellationToken).ConfigureAwait(false);
            if (!await ReadExactlyAsync(s.Input, echo, cancellationToken).ConfigureAwait(false))
                throw new P2PException(P2PErrorCode.ConnectionClosed, $"ping stream to {connection.RemotePeer} closed early");
            rtts.Add(Stopwatch.GetElapsedTime(start));
            if (!echo.AsSpan().SequenceEqual(payload))
                throw new P2PException(P2PErrorCode.ProtocolViolation, $"ping echo from {connection.RemotePeer} differs from what was sent");
        }
        return rtts;
    }

    /// <summary>Echoes every 32-byte payload until the remote closes its side. Safe to cancel.</summary>
    public static async Task ServeAsync(Libp2pStream stream, CancellationToken cancellationToken)
    {
        var buf = new byte[PayloadSize];
        while (await ReadExactlyAsync(stream.Input, buf, cancellationToken).ConfigureAwait(false))
        {
            var r = await stream.Output.WriteAsync(buf, cancellationToken).ConfigureAwait(false);
            if (r.IsCompleted)
                return;
        }
    }

    private static async ValueTask<bool> ReadExactlyAsync(PipeReader reader, Memory<byte> dest, CancellationToken ct)
    {
        var got = 0;
        while (got < dest.Length)
        {
            var r = await reader.ReadAsync(ct).ConfigureAwait(false);
            var buf = r.Buffer;
            var n = (int)Math.Min(buf.Length, dest.Length - got);
            buf.Slice(0, n).CopyTo(dest.Span[got..]);
            got += n;
            reader.AdvanceTo(buf.GetPosition(n), buf.End);
            if (got < dest.Length && r.IsCompleted)
                return false;
        }
        return true;
    }
}
