namespace InferenceMesh.P2P.Hosting;

/// <summary>Serves one inbound stream. The host disposes the stream when the returned task ends, and resets it if the task faults.</summary>
/// <param name="stream">The negotiated stream.</param>
/// <param name="cancellationToken">Cancelled when the host stops.</param>
public delegate Task Libp2pStreamHandler(Libp2pStream stream, CancellationToken cancellationToken);
