using System.Xml;
using System.Xml.Linq;

namespace InferenceMesh.P2P.Nat;

/// <summary>Bounded, DTD-free XML parsing of an IGD's device description and SOAP answers.</summary>
internal static class UpnpXml
{
    private static readonly string[] WanServices =
    [
        "urn:schemas-upnp-org:service:WANIPConnection:2",
        "urn:schemas-upnp-org:service:WANIPConnection:1",
        "urn:schemas-upnp-org:service:WANPPPConnection:1",
    ];

    public static XDocument Load(ReadOnlySpan<byte> bytes, string what)
    {
        var settings = new XmlReaderSettings
        {
            DtdProcessing = DtdProcessing.Prohibit,
            XmlResolver = null,
            MaxCharactersInDocument = bytes.Length + 1L,
            MaxCharactersFromEntities = 0,
        };
        try
        {
            using var stream = new MemoryStream(bytes.ToArray(), writable: false);
            using var reader = XmlReader.Create(stream, settings);
            return XDocument.Load(reader);
        }
        catch (XmlException e)
        {
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"{what}: not well-formed XML ({e.Message})", inner: e);
        }
    }

    /// <summary>
    /// The preferred WAN connection service (WANIPConnection:2, then :1, then WANPPPConnection:1) of a device description fetched from
    /// <paramref name="location"/>, its control URL resolved against <c>URLBase</c> or the location and required to stay on the location's host.
    /// </summary>
    public static UpnpService FindWanService(ReadOnlySpan<byte> description, Uri location)
    {
        var doc = Load(description, "IGD description");
        var services = doc.Descendants().Where(e => e.Name.LocalName == "service")
            .Select(s => (Type: Child(s, "serviceType"), Control: Child(s, "controlURL")))
            .Where(s => s.Type is not null && s.Control is not null)
            .ToList();
        foreach (var wanted in WanServices)
        {
            var found = services.FirstOrDefault(s => s.Type == wanted);
            if (found.Type is null)
                continue;
            var baseText = doc.Root is null ? null : Child(doc.Root, "URLBase");
            var baseUri = baseText is not null && Uri.TryCreate(baseText, UriKind.Absolute, out var b) ? b : location;
            if (!Uri.TryCreate(baseUri, found.Control, out var control) || control.Scheme != Uri.UriSchemeHttp)
                throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"IGD description: control URL '{found.Control}' is not an http URL");
            if (!string.Equals(control.Host, location.Host, StringComparison.OrdinalIgnoreCase))
                throw new PortMappingException(PortMappingErrorCode.UnexpectedSource, $"IGD description: control URL {control} is not on the gateway {location.Host}");
            return new UpnpService(control, wanted);
        }
        throw new PortMappingException(PortMappingErrorCode.InvalidReply, "IGD description: no WANIPConnection or WANPPPConnection service");
    }

    /// <summary>The output arguments of a SOAP response to <paramref name="action"/>, by name; a SOAP fault becomes <see cref="PortMappingErrorCode.Refused"/> with the UPnP error code.</summary>
    public static IReadOnlyDictionary<string, string> ParseResponse(ReadOnlySpan<byte> body, string action, bool httpOk)
    {
        var doc = Load(body, $"SOAP {action}");
        var fault = doc.Descendants().FirstOrDefault(e => e.Name.LocalName == "UPnPError");
        if (fault is not null || !httpOk)
        {
            var code = fault is null ? null : Child(fault, "errorCode");
            var text = fault is null ? null : Child(fault, "errorDescription");
            if (code is null || !int.TryParse(code, out var number))
                throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"SOAP {action}: an error without a UPnP error code");
            throw new PortMappingException(PortMappingErrorCode.Refused, $"SOAP {action}: UPnP error {number} ({Trim(text)})", number);
        }
        var response = doc.Descendants().FirstOrDefault(e => e.Name.LocalName == action + "Response")
            ?? throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"SOAP {action}: no {action}Response element");
        return response.Elements().GroupBy(e => e.Name.LocalName).ToDictionary(g => g.Key, g => g.First().Value.Trim(), StringComparer.Ordinal);
    }

    private static string? Child(XElement parent, string name) =>
        parent.Elements().FirstOrDefault(e => e.Name.LocalName == name)?.Value.Trim();

    private static string Trim(string? s) => s is null ? "no description" : s.Length <= 120 ? s : s[..120] + "…";
}
