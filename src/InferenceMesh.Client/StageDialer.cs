using InferenceMesh.P2P;
using InferenceMesh.P2P.Identity;
using InferenceMesh.Protocol;

namespace InferenceMesh.Client;

/// <summary>Opens a stage stream to a server at one of its addresses (a libp2p stream in a real mesh, an in-memory pipe in tests). Safe to cancel.</summary>
public delegate ValueTask<StageChannel> StageDialer(PeerId peer, IReadOnlyList<Multiaddr> addresses, CancellationToken cancellation);
