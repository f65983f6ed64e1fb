using System.Net;
using System.Text;

namespace InferenceMesh.P2P.Nat;

/// <summary>An SSDP M-SEARCH answer: the search target and the device description's location.</summary>
internal sealed record SsdpReply(string SearchTarget, Uri Location)
{
    /// <summary>Longest datagram read; real answers are a few hundred bytes.</summary>
    public const int MaxBytes = 2048;

    private const int MaxHeaders = 32;

    /// <summary>
    /// Parses an answer from <paramref name="sender"/>: <c>HTTP/1.1 200 OK</c>, at most 32 header lines, an <c>ST</c> and an absolute
    /// http <c>LOCATION</c> on the sender's own address (anything else could send the description fetch elsewhere).
    /// </summary>
    public static SsdpReply Parse(ReadOnlySpan<byte> datagram, IPAddress sender)
    {
        if (datagram.Length > MaxBytes)
            throw new PortMappingException(PortMappingErrorCode.ReplyTooLarge, $"SSDP: answer of {datagram.Length} bytes exceeds {MaxBytes}");
        string text;
        try
        {
            text = new UTF8Encoding(false, true).GetString(datagram);
        }
        catch (DecoderFallbackException e)
        {
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, "SSDP: answer is not UTF-8 text", inner: e);
        }
        var lines = text.Split("\r\n");
        var status = lines[0].Split(' ', 3);
        if (status.Length < 2 || !status[0].StartsWith("HTTP/1.", StringComparison.Ordinal) || status[1] != "200")
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"SSDP: status line '{Truncate(lines[0])}' is not HTTP/1.x 200");
        string? st = null, location = null;
        var count = 0;
        foreach (var line in lines.Skip(1))
        {
            if (line.Length == 0)
                break;
            if (++count > MaxHeaders)
                throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"SSDP: more than {MaxHeaders} header lines");
            var colon = line.IndexOf(':');
            if (colon <= 0)
                throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"SSDP: header line '{Truncate(line)}' has no name");
            var name = line[..colon].Trim();
            var value = line[(colon + 1)..].Trim();
            if (name.Equals("ST", StringComparison.OrdinalIgnoreCase)) st = value;
            else if (name.Equals("LOCATION", StringComparison.OrdinalIgnoreCase)) location = value;
        }
        if (st is null || location is null)
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, "SSDP: answer lacks ST or LOCATION");
        if (!Uri.TryCreate(location, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttp)
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"SSDP: LOCATION '{Truncate(location)}' is not an absolute http URL");
        if (!IPAddress.TryParse(uri.Host, out var host) || !host.Equals(sender))
            throw new PortMappingException(PortMappingErrorCode.UnexpectedSource, $"SSDP: LOCATION {uri} is not on the answering host {sender}");
        return new SsdpReply(st, uri);
    }

    private static string Truncate(string s) => s.Length <= 80 ? s : s[..80] + "…";
}
