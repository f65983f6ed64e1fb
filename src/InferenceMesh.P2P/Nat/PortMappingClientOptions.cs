using System.Net;

namespace InferenceMesh.P2P.Nat;

/// <summary>Where the port-mapping clients look for the gateway and how long they wait for it. Times in <see cref="TimeSpan"/>; sizes in bytes.</summary>
public sealed record PortMappingClientOptions
{
    /// <summary>The gateway's LAN address for NAT-PMP and PCP; the default IPv4 gateway when null.</summary>
    public IPAddress? Gateway { get; init; }

    /// <summary>NAT-PMP/PCP server port (RFC 6886/6887: 5351).</summary>
    public int GatewayPort { get; init; } = 5351;

    /// <summary>Where UPnP M-SEARCH requests go: the SSDP multicast group 239.255.255.250:1900, or a unicast address.</summary>
    public IPEndPoint SsdpEndpoint { get; init; } = new(IPAddress.Parse("239.255.255.250"), 1900);

    /// <summary>How long SSDP discovery waits for an IGD to answer.</summary>
    public TimeSpan DiscoveryTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Limit on each HTTP exchange with the IGD (description fetch, one SOAP action).</summary>
    public TimeSpan HttpTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>First NAT-PMP/PCP wait before resending; doubles each attempt (RFC 6886 starts at 250 ms).</summary>
    public TimeSpan InitialTimeout { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>NAT-PMP/PCP sends before giving up (4: 250 + 500 + 1,000 + 2,000 ms).</summary>
    public int Attempts { get; init; } = 4;

    /// <summary>Largest IGD device description read, in bytes.</summary>
    public int MaxDescriptionBytes { get; init; } = 64 * 1024;

    /// <summary>Largest SOAP response read, in bytes.</summary>
    public int MaxSoapBytes { get; init; } = 16 * 1024;

    /// <summary>The description each UPnP mapping carries (shown in the router's table).</summary>
    public string Description { get; init; } = "inferencemesh";

    /// <summary>Clock of every timeout.</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    internal IPAddress RequireGateway() =>
        Gateway ?? NatNetwork.DefaultGateway()
        ?? throw new PortMappingException(PortMappingErrorCode.NoGateway, "no IPv4 default gateway to ask for a port mapping");
}
