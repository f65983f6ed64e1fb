using System.Collections.Concurrent;
using InferenceMesh.Core;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Client.Tests;

/// <summary>
/// A fraud-report board shared by the clients of one test: it keeps each report as the bytes a DHT would carry
/// (<see cref="FraudEvidence.Encode"/>) and decodes them on reading, as <see cref="DhtFraudReportBoard"/> does.
/// </summary>
public sealed class MemoryFraudReportBoard : IFraudReportBoard
{
    private readonly ConcurrentDictionary<(string Model, string Accused), ConcurrentQueue<(string Reporter, byte[] Bytes)>> _reports = new();

    public int Published { get; private set; }

    public Task PublishAsync(FraudEvidence evidence, CancellationToken cancellation)
    {
        Published++;
        Add(evidence.ModelId, evidence.Server, "reporting-client", evidence.Encode());
        return Task.CompletedTask;
    }

    /// <summary>Puts raw report bytes on the board, as any peer could.</summary>
    public void Add(string model, string accused, string reporter, byte[] bytes) =>
        _reports.GetOrAdd((model, accused), _ => new()).Enqueue((reporter, bytes));

    /// <summary>The bytes of every report against <paramref name="accused"/>.</summary>
    public IReadOnlyList<byte[]> Bytes(string model, string accused) =>
        _reports.TryGetValue((model, accused), out var queue) ? [.. queue.Select(r => r.Bytes)] : [];

    public Task<IReadOnlyList<PublishedFraudReport>> ReadAsync(string modelId, PeerId accused, CancellationToken cancellation)
    {
        if (!_reports.TryGetValue((modelId, accused.ToString()), out var queue)) return Task.FromResult<IReadOnlyList<PublishedFraudReport>>([]);
        var reports = new List<PublishedFraudReport>();
        foreach (var (reporter, bytes) in queue)
        {
            try
            {
                reports.Add(new PublishedFraudReport(reporter, FraudEvidence.Decode(bytes, reporter), null));
            }
            catch (MeshException e)
            {
                reports.Add(new PublishedFraudReport(reporter, null, e.Message));
            }
        }
        return Task.FromResult<IReadOnlyList<PublishedFraudReport>>(reports);
    }
}
