using InferenceMesh.Core;

namespace InferenceMesh.P2P.Dht;

/// <summary>What a server announces about the span it serves (the DHT adds identity, block and times).</summary>
/// <param name="ModelId">Manifest.ModelId.</param>
/// <param name="Span">Blocks served.</param>
/// <param name="Throughput">Tokens per second through the span.</param>
/// <param name="State">Lifecycle state.</param>
/// <param name="FreeCacheTokens">Free KV-cache room, in tokens.</param>
public sealed record SpanAnnouncement(string ModelId, BlockRange Span, double Throughput, ServerState State, long FreeCacheTokens);
