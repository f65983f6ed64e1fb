using InferenceMesh.Core;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

public sealed partial class KadDht
{
    private sealed class Candidate(KadPeer peer, KadId id, int depth)
    {
        public readonly KadPeer Peer = peer;
        public readonly KadId Id = id;
        public readonly int Depth = depth;
        public int State; // 0 new, 1 waiting, 2 answered, 3 failed
        public bool Retried;
    }

    private sealed class LookupRun
    {
        public required List<Candidate> Order;
        public required Dictionary<PeerId, Candidate> ByPeer;
        public int Messages, Failures;
    }

    private async Task<LookupRun> LookupAsync(byte[] key, KadMessage request, Func<Candidate, KadMessage, bool>? onResponse, CancellationToken cancellationToken)
    {
        Metrics.LookupStarted();
        var target = KadId.FromKey(key);
        var run = new LookupRun { Order = [], ByPeer = [] };
        foreach (var p in RoutingTable.NearestKadPeers(target, Options.K))
            AddCandidate(run, target, p, 0);
        using var lookupCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var inflight = new List<Task<(Candidate C, KadMessage? Response)>>(Options.Alpha);
        var stop = false;
        try
        {
            while (true)
            {
                if (!stop)
                {
                    var seen = 0;
                    foreach (var c in run.Order)
                    {
                        if (c.State == 3) continue;
                        if (++seen > Options.K || inflight.Count >= Options.Alpha) break;
                        if (c.State != 0) continue;
                        c.State = 1;
                        run.Messages++;
                        inflight.Add(QueryAsync(c, request, lookupCts.Token));
                    }
                }
                if (inflight.Count == 0 || stop)
                    break;
                var done = await Task.WhenAny(inflight);
                inflight.Remove(done);
                var (cand, response) = await done;
                if (response is null)
                {
                    run.Failures++;
                    // One retry absorbs a lost packet; a peer that fails twice is out of this lookup.
                    cand.State = cand.Retried ? 3 : 0;
                    cand.Retried = true;
                    continue;
                }
                cand.State = 2;
                foreach (var p in response.CloserPeers)
                    if (p.Id != Self && !run.ByPeer.ContainsKey(p.Id))
                        AddCandidate(run, target, p, cand.Depth + 1);
                if (onResponse?.Invoke(cand, response) == true)
                    stop = true;
            }
        }
        finally
        {
            if (inflight.Count > 0)
                lookupCts.Cancel();
        }
        cancellationToken.ThrowIfCancellationRequested();
        return run;
    }

    private static void AddCandidate(LookupRun run, KadId target, KadPeer peer, int depth)
    {
        var c = new Candidate(peer, KadId.FromPeer(peer.Id), depth);
        run.ByPeer[peer.Id] = c;
        var lo = 0;
        var hi = run.Order.Count;
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (target.CompareDistance(run.Order[mid].Id, c.Id) < 0) lo = mid + 1; else hi = mid;
        }
        run.Order.Insert(lo, c);
    }

    private async Task<(Candidate, KadMessage?)> QueryAsync(Candidate c, KadMessage request, CancellationToken ct)
    {
        Metrics.RequestSent();
        try
        {
            var r = await _network.SendRequestAsync(c.Peer, request, Options.RequestTimeout, ct);
            if (r.Type != request.Type)
                throw new DhtException(DhtErrorCode.InvalidMessage, $"{request.Type} answered with {r.Type}");
            // It answered, so it is a DHT server: it may enter the table (refreshing it if present).
            ConsiderPeer(c.Peer, Now);
            return (c, r);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            return (c, null);
        }
        catch (MeshException)
        {
            Metrics.RequestFailed();
            RoutingTable.MarkFailed(c.Peer.Id, Now);
            return (c, null);
        }
    }

    private List<KadPeer> Answered(LookupRun run, out int hops)
    {
        var list = new List<KadPeer>(Options.K);
        hops = -1;
        foreach (var c in run.Order)
        {
            if (c.State != 2) continue;
            if (list.Count == 0) hops = c.Depth;
            list.Add(c.Peer);
            if (list.Count == Options.K) break;
        }
        return list;
    }

    /// <summary>The k peers closest to <paramref name="key"/> (by sha256) that answered a FIND_NODE lookup. Safe to cancel.</summary>
    public async Task<ClosestPeersResult> GetClosestPeersAsync(byte[] key, CancellationToken cancellationToken = default)
    {
        var run = await LookupAsync(key, new KadMessage { Type = KadMessageType.FindNode, Key = key }, null, cancellationToken);
        var peers = Answered(run, out var hops);
        return new ClosestPeersResult(peers, new LookupStats(run.Messages, run.Failures, hops));
    }

    /// <summary>
    /// Finds <paramref name="peer"/>'s addresses: from the routing table when there (0 hops), else by a
    /// FIND_NODE lookup that stops once the peer itself has answered. Safe to cancel.
    /// </summary>
    public async Task<FindPeerResult> FindPeerAsync(PeerId peer, CancellationToken cancellationToken = default)
    {
        if (RoutingTable.Find(peer) is { } e)
            return new FindPeerResult(new KadPeer(e.Peer, e.Addresses), new LookupStats(0, 0, 0));
        var key = peer.ToBytes();
        var run = await LookupAsync(key, new KadMessage { Type = KadMessageType.FindNode, Key = key },
            (c, _) => c.Peer.Id == peer, cancellationToken);
        if (run.ByPeer.TryGetValue(peer, out var found) && found.State == 2)
            return new FindPeerResult(found.Peer, new LookupStats(run.Messages, run.Failures, found.Depth));
        return new FindPeerResult(null, new LookupStats(run.Messages, run.Failures, -1));
    }
}
