namespace InferenceMesh.P2P.Nat;

/// <summary>What a <see cref="PortMapper"/> asks for and how often. Defaults follow go-libp2p: 1-minute leases renewed every 20 s.</summary>
public sealed record PortMapperOptions
{
    /// <summary>Protocols tried, in parallel; when several succeed, the earlier in this list is kept.</summary>
    public IReadOnlyList<PortMappingProtocol> Protocols { get; init; } = [PortMappingProtocol.Upnp, PortMappingProtocol.Pcp, PortMappingProtocol.NatPmp];

    /// <summary>Lease asked for (gateways may grant another; PCP servers often impose a minimum of 120 s).</summary>
    public TimeSpan Lifetime { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>Time between renewals; also between new attempts while no protocol works. Must be shorter than <see cref="Lifetime"/>.</summary>
    public TimeSpan RenewInterval { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>Where to find the gateway and how long to wait for it.</summary>
    public PortMappingClientOptions Client { get; init; } = new();

    /// <summary>Receives one line per mapping made, changed, lost or failed; null for none.</summary>
    public Action<string>? Log { get; init; }

    /// <summary>Clock of the renewal timer (and of the clients' timeouts via <see cref="PortMappingClientOptions.Time"/>).</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;
}
