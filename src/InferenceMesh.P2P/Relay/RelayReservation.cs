using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Relay;

/// <summary>A slot held on a relay: peers may reach this node through <see cref="CircuitAddresses"/> until <see cref="Expires"/>.</summary>
/// <param name="Relay">The relay's PeerId.</param>
/// <param name="Expires">When the relay drops the slot unless it is renewed (the spec's <c>expire</c>, Unix seconds).</param>
/// <param name="CircuitAddresses">This node's relayed addresses: each relay address, then <c>/p2p-circuit/p2p/&lt;self&gt;</c>.</param>
/// <param name="Voucher">The relay's signed voucher (already verified), or null when the relay sent none.</param>
/// <param name="Limit">The limit of each relayed connection, or null when the relay gave none.</param>
public sealed record RelayReservation(PeerId Relay, DateTimeOffset Expires, IReadOnlyList<Multiaddr> CircuitAddresses, RelayVoucher? Voucher, RelayLimit? Limit);
