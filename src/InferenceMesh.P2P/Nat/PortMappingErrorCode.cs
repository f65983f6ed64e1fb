namespace InferenceMesh.P2P.Nat;

/// <summary>Why a port-mapping request (UPnP IGD, NAT-PMP or PCP) failed; stable across releases.</summary>
public enum PortMappingErrorCode
{
    /// <summary>No gateway or IGD answered in time (none on this network, or the protocol is off there).</summary>
    NoGateway,
    /// <summary>A reply did not come within the configured time.</summary>
    Timeout,
    /// <summary>A reply was malformed: bad version or opcode, wrong length, unparseable XML or HTTP, an address that is not one.</summary>
    InvalidReply,
    /// <summary>A reply was larger than its configured cap; it was not read further.</summary>
    ReplyTooLarge,
    /// <summary>The gateway understood and refused (a NAT-PMP/PCP result code or a UPnP error code, in <see cref="PortMappingException.GatewayCode"/>).</summary>
    Refused,
    /// <summary>The gateway answered on another protocol version than ours (e.g. a NAT-PMP-only gateway asked by PCP).</summary>
    UnsupportedVersion,
    /// <summary>A reply pointed somewhere it must not (a description or control URL on another host than the gateway that answered).</summary>
    UnexpectedSource,
}
