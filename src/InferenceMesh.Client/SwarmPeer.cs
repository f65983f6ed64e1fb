using InferenceMesh.Core;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Client;

/// <summary>One server of a model as a client sees it now: its latest unexpired announcement, and how far away and how connected it is.</summary>
/// <param name="Span">The blocks it announces.</param>
/// <param name="Throughput">Announced decode speed through the whole span, tokens per second.</param>
/// <param name="FreeCacheTokens">Announced KV-cache room, in positions it can still accept across sessions.</param>
/// <param name="ExpiresAt">When the announcement lapses; the server leaves listings then unless it announces again.</param>
/// <param name="RoundTripMs">The round trip measured for this snapshot, in milliseconds; null when the server did not answer (or, offline, was not asked).</param>
/// <param name="Connection">Whether this client's host holds a direct or relayed connection to it.</param>
public sealed record SwarmPeer(PeerId Peer, IReadOnlyList<Multiaddr> Addresses, BlockRange Span, ServerState State, double Throughput, long FreeCacheTokens,
    DateTimeOffset ExpiresAt, double? RoundTripMs, PeerConnection Connection);
