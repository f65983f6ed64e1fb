using InferenceMesh.Core;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Client;

/// <summary>Fraud reports in the DHT (<see cref="FraudReportDirectory"/>): evidence in content-addressed chunks, the report signed by the reporting client.</summary>
public sealed class DhtFraudReportBoard(FraudReportDirectory directory) : IFraudReportBoard
{
    public Task PublishAsync(FraudEvidence evidence, CancellationToken cancellation) =>
        directory.PublishAsync(evidence.ModelId, PeerId.Parse(evidence.Server), evidence.Encode(), cancellation);

    public async Task<IReadOnlyList<PublishedFraudReport>> ReadAsync(string modelId, PeerId accused, CancellationToken cancellation)
    {
        var reports = new List<PublishedFraudReport>();
        foreach (var (report, bytes) in await directory.ReadAsync(modelId, accused, cancellation).ConfigureAwait(false))
        {
            var reporter = report.Reporter.ToString();
            if (bytes is null)
            {
                reports.Add(new PublishedFraudReport(reporter, null, "its evidence could not be fetched whole (a chunk is missing or does not hash to the report)"));
                continue;
            }
            try
            {
                reports.Add(new PublishedFraudReport(reporter, FraudEvidence.Decode(bytes, reporter), null));
            }
            catch (MeshException e)
            {
                reports.Add(new PublishedFraudReport(reporter, null, e.Message));
            }
        }
        return reports;
    }
}
