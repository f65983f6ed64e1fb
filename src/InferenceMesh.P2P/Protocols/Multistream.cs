using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using InferenceMesh.Core;

namespace InferenceMesh.P2P.Protocols;

/// <summary>
/// multistream-select 1.0 (<c>/multistream/1.0.0</c>): each message is an unsigned-varint length, then
/// UTF-8 text ending in '\n'. Both sides send the header; the dialer proposes protocols one at a
/// time and the listener echoes the one it accepts or answers <c>na</c>.
/// </summary>
public static class Multistream
{
    /// <summary>The protocol id both sides send first.</summary>
    public const string ProtocolId = "/multistream/1.0.0";

    /// <summary>The listener's refusal.</summary>
    public const string NotAvailable = "na";

    /// <summary>Largest message (length prefix value, newline included) accepted, in bytes.</summary>
    public const int MaxMessageLength = 1024;

    /// <summary>Most proposals a listener answers before giving up on the dialer.</summary>
    public const int MaxProposals = 64;

    /// <summary>
    /// Dialer side: proposes <paramref name="protocols"/> in order and returns the one accepted. The
    /// header and the first proposal go out in one write. Not safe to cancel midway: the pipe is then
    /// in an unknown state and must be closed.
    /// </summary>
    public static async Task<string> SelectAsync(IDuplexPipe pipe, IReadOnlyList<string> protocols, CancellationToken cancellationToken)
    {
        if (protocols.Count == 0)
            throw new ArgumentException("at least one protocol is needed", nameof(protocols));
        WriteMessage(pipe.Output, ProtocolId);
        WriteMessage(pipe.Output, protocols[0]);
        await FlushAsync(pipe.Output, cancellationToken).ConfigureAwait(false);
        var header = await ReadMessageAsync(pipe.Input, cancellationToken).ConfigureAwait(false);
        if (header != ProtocolId)
            throw new P2PException(P2PErrorCode.ProtocolViolation, $"multistream: expected header {ProtocolId}, got '{Clip(header)}'");
        for (var i = 0; ; )
        {
            var answer = await ReadMessageAsync(pipe.Input, cancellationToken).ConfigureAwait(false);
            if (answer == protocols[i])
                return answer;
            if (answer != NotAvailable)
                throw new P2PException(P2PErrorCode.ProtocolViolation, $"multistream: proposed {protocols[i]}, got '{Clip(answer)}'");
            if (++i == protocols.Count)
                throw new P2PException(P2PErrorCode.ProtocolNotSupported, $"remote supports none of {string.Join(", ", protocols)}");
            WriteMessage(pipe.Output, protocols[i]);
            await FlushAsync(pipe.Output, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Listener side: sends the header, answers proposals until one satisfies <paramref name="isSupported"/>,
    /// echoes it and returns it. Bytes after the accepted proposal stay unread in the pipe. Not safe to cancel
    /// midway (close the pipe instead).
    /// </summary>
    public static async Task<string> ListenAsync(IDuplexPipe pipe, Func<string, bool> isSupported, CancellationToken cancellationToken)
    {
        WriteMessage(pipe.Output, ProtocolId);
        await FlushAsync(pipe.Output, cancellationToken).ConfigureAwait(false);
        var header = await ReadMessageAsync(pipe.Input, cancellationToken).ConfigureAwait(false);
        if (header != ProtocolId)
            throw new P2PException(P2PErrorCode.ProtocolViolation, $"multistream: expected header {ProtocolId}, got '{Clip(header)}'");
        for (var n = 0; n < MaxProposals; n++)
        {
            var proposal = await ReadMessageAsync(pipe.Input, cancellationToken).ConfigureAwait(false);
            var ok = proposal.Length > 0 && proposal != NotAvailable && proposal != ProtocolId && isSupported(proposal);
            WriteMessage(pipe.Output, ok ? proposal : NotAvailable);
            await FlushAsync(pipe.Output, cancellationToken).ConfigureAwait(false);
            if (ok)
                return proposal;
        }
        throw new P2PException(P2PErrorCode.LimitExceeded, $"multistream: more than {MaxProposals} proposals refused");
    }

    /// <summary>Writes one message (length prefix, text, newline) without flushing.</summary>
    public static void WriteMessage(PipeWriter writer, string message)
    {
        var count = System.Text.Encoding.UTF8.GetByteCount(message) + 1;
        if (count > MaxMessageLength)
            throw new P2PException(P2PErrorCode.LimitExceeded, $"multistream message of {count} bytes exceeds {MaxMessageLength}");
        var span = writer.GetSpan(UnsignedVarint.MaxBytes + count);
        var n = UnsignedVarint.Write(span, (ulong)count);
        n += System.Text.Encoding.UTF8.GetBytes(message, span[n..]);
        span[n++] = (byte)'\n';
        writer.Advance(n);
    }

    /// <summary>
    /// Parses one message from the front of <paramref name="buffer"/>, slicing it off. False when more
    /// bytes are needed; throws <see cref="P2PException"/> when the length is over the limit or the
    /// message lacks its newline or is not UTF-8.
    /// </summary>
    public static bool TryParseMessage(ref ReadOnlySequence<byte> buffer, out string message)
    {
        message = "";
        var reader = new SequenceReader<byte>(buffer);
        if (!UnsignedVarint.TryRead(ref reader, out var len, why => new P2PException(P2PErrorCode.ProtocolViolation, $"multistream: {why}")))
            return false;
        if (len > MaxMessageLength)
            throw new P2PException(P2PErrorCode.LimitExceeded, $"multistream message of {len} bytes exceeds {MaxMessageLength}");
        if (len == 0)
            throw new P2PException(P2PErrorCode.ProtocolViolation, "multistream: empty message");
        if (reader.Remaining < (long)len)
            return false;
        Span<byte> bytes = stackalloc byte[(int)len];
        reader.TryCopyTo(bytes);
        reader.Advance((long)len);
        if (bytes[^1] != (byte)'\n')
            throw new P2PException(P2PErrorCode.ProtocolViolation, "multistream: message does not end with a newline");
        try
        {
            message = new UTF8Encoding(false, true).GetString(bytes[..^1]);
        }
        catch (ArgumentException e)
        {
            throw new P2PException(P2PErrorCode.ProtocolViolation, "multistream: message is not UTF-8", e);
        }
        buffer = buffer.Slice(reader.Position);
        return true;
    }

    internal static async ValueTask<string> ReadMessageAsync(PipeReader reader, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var consumed = buffer.Start;
            var examined = buffer.End;
            try
            {
                if (TryParseMessage(ref buffer, out var message))
                {
                    consumed = examined = buffer.Start;
                    return message;
                }
                if (result.IsCompleted || result.IsCanceled)
                    throw new P2PException(P2PErrorCode.ConnectionClosed, "multistream: stream ended during negotiation");
            }
            finally
            {
                reader.AdvanceTo(consumed, examined);
            }
        }
    }

    private static async ValueTask FlushAsync(PipeWriter writer, CancellationToken ct)
    {
        var r = await writer.FlushAsync(ct).ConfigureAwait(false);
        if (r.IsCompleted || r.IsCanceled)
            throw new P2PException(P2PErrorCode.ConnectionClosed, "multistream: stream closed during negotiation");
    }

    private static string Clip(string s) => s.Length > 80 ? s[..80] + "…" : s;
}
