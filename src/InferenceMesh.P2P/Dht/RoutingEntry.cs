using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

/// <summary>One routing-table entry; a snapshot, safe to keep.</summary>
/// <param name="Peer">The peer.</param>
/// <param name="Id">Its Kademlia id.</param>
/// <param name="Addresses">Its known addresses.</param>
/// <param name="AddedAt">When it entered the table.</param>
/// <param name="LastSeen">When it last answered or contacted us.</param>
public sealed record RoutingEntry(PeerId Peer, KadId Id, IReadOnlyList<Multiaddr> Addresses, DateTimeOffset AddedAt, DateTimeOffset LastSeen);
