namespace InferenceMesh.P2P.Nat;

/// <summary>A WAN connection service found in an IGD's device description: where to send SOAP actions and as which service type.</summary>
/// <param name="ControlUrl">Absolute http URL of the service's control point, on the host that answered SSDP.</param>
/// <param name="ServiceType">For example <c>urn:schemas-upnp-org:service:WANIPConnection:2</c>.</param>
public sealed record UpnpService(Uri ControlUrl, string ServiceType)
{
    /// <summary>True for WANIPConnection:2, which has <c>AddAnyPortMapping</c> and refuses permanent leases.</summary>
    public bool IsVersion2 => ServiceType.EndsWith(":2", StringComparison.Ordinal);
}
