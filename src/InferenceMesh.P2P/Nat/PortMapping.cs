using System.Net;

namespace InferenceMesh.P2P.Nat;

/// <summary>
/// A TCP port forwarded by a gateway: <see cref="ExternalAddress"/>:<see cref="ExternalPort"/> on the gateway's
/// outside reaches <see cref="InternalPort"/> on this host, until <see cref="Lifetime"/> after it was granted.
/// </summary>
public sealed record PortMapping
{
    /// <summary>How the mapping was made (and how it is renewed and deleted).</summary>
    public required PortMappingProtocol Protocol { get; init; }

    /// <summary>The gateway that granted it (its LAN address).</summary>
    public required IPAddress Gateway { get; init; }

    /// <summary>This host's LAN address the mapping forwards to.</summary>
    public required IPAddress InternalAddress { get; init; }

    /// <summary>The local TCP port.</summary>
    public required int InternalPort { get; init; }

    /// <summary>The gateway's outside address, as the gateway reports it.</summary>
    public required IPAddress ExternalAddress { get; init; }

    /// <summary>The outside TCP port.</summary>
    public required int ExternalPort { get; init; }

    /// <summary>How long the gateway keeps it without a renewal; <see cref="TimeSpan.Zero"/> for a permanent UPnP lease.</summary>
    public required TimeSpan Lifetime { get; init; }

    /// <summary>The PCP mapping nonce (RFC 6887 §11.1), kept so renewals and the delete name the same mapping; empty otherwise.</summary>
    public ReadOnlyMemory<byte> Nonce { get; init; }

    /// <summary>The UPnP control URL and service type the mapping was made on; null for NAT-PMP and PCP.</summary>
    public UpnpService? Service { get; init; }

    /// <summary>The external address as a dialable multiaddr, <c>/ip4/…/tcp/…</c>.</summary>
    public Multiaddr ExternalMultiaddr => Multiaddr.FromTcpEndPoint(new IPEndPoint(ExternalAddress, ExternalPort));

    public override string ToString() => $"{Protocol} {ExternalAddress}:{ExternalPort} → {InternalAddress}:{InternalPort} ({Lifetime.TotalSeconds:F0} s)";
}
