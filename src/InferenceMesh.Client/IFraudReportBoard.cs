using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Client;

/// <summary>
/// Where clients publish the evidence that convicted a server, and read what others published against a server before
/// they route through it: the DHT in a real mesh (<see cref="DhtFraudReportBoard"/>). A board only carries reports;
/// each reader judges them itself.
/// </summary>
public interface IFraudReportBoard
{
    /// <summary>Publishes <paramref name="evidence"/> as a report signed by this client. Safe to cancel.</summary>
    Task PublishAsync(FraudEvidence evidence, CancellationToken cancellation);

    /// <summary>The reports against <paramref name="accused"/> for <paramref name="modelId"/>, newest first, each decoded or with the reason it could not be. Safe to cancel.</summary>
    Task<IReadOnlyList<PublishedFraudReport>> ReadAsync(string modelId, PeerId accused, CancellationToken cancellation);
}
