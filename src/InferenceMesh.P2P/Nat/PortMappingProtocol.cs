namespace InferenceMesh.P2P.Nat;

/// <summary>A way of asking a home router to forward a port.</summary>
public enum PortMappingProtocol
{
    /// <summary>UPnP Internet Gateway Device v1/v2: SSDP discovery, then SOAP <c>AddPortMapping</c> on WANIPConnection or WANPPPConnection.</summary>
    Upnp,
    /// <summary>NAT-PMP (RFC 6886), UDP port 5351 of the default gateway.</summary>
    NatPmp,
    /// <summary>PCP (RFC 6887) <c>MAP</c>, UDP port 5351 of the default gateway.</summary>
    Pcp,
}
