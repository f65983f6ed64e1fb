using InferenceMesh.Core;

namespace InferenceMesh.Client;

/// <summary>A server's announced span with what the client measured or was told about it.</summary>
/// <param name="Throughput">Announced decode speed in tokens per second through the server's whole span (the one unit of throughput in the mesh).</param>
/// <param name="RoundTripMs">Measured round-trip time to the server, in milliseconds.</param>
public sealed record ServerSpan(string PeerId, IReadOnlyList<string> Addresses, BlockRange Blocks, double Throughput, double RoundTripMs);
