using InferenceMesh.Core;

namespace InferenceMesh.Client;

/// <summary>One hop of a session's route as it was used: the server, its blocks and how long its steps took.</summary>
/// <param name="PeerId">The server.</param>
/// <param name="Blocks">The blocks it ran for the session.</param>
/// <param name="Steps">Steps it completed.</param>
/// <param name="MeanLatencyMs">Mean time per step from the hop's input being sent (or, chained, the last thing seen here of the step before: the step leaving, or an earlier hop's output arriving) to its output arriving here, in milliseconds; the link's round trip included.</param>
public sealed record HopReport(string PeerId, BlockRange Blocks, int Steps, double MeanLatencyMs)
{
    /// <summary>The connection the hop's stream ran over: <see cref="PeerConnection.Direct"/> or <see cref="PeerConnection.Relayed"/> (a stream stays on the connection it was opened on), <see cref="PeerConnection.Unknown"/> when the dialer does not say.</summary>
    public PeerConnection Connection { get; init; }
}
