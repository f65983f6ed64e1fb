using InferenceMesh.Core;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Client;

/// <summary>
/// Plans routes as Petals does (min-latency Dijkstra): nodes are block boundaries, and a server whose span
/// holds block b offers an edge from b to the end of its span costing its round trip plus its compute time
/// (announced throughput is tokens/s through the whole span, so k of its n blocks take k / n of a token's time).
/// A server reached through a relay (<see cref="ServerInfo.UsingRelay"/>) is charged what was measured on the connection
/// the client uses to it, which for a relayed connection includes both legs through the relay: the penalty is measured,
/// not guessed, and vanishes once DCUtR makes the connection direct. Between equal costs a direct server of the same
/// span wins over a relayed one.
/// </summary>
public static class RoutePlanner
{
    /// <param name="roundTripMs">The measured round trip to each server, in milliseconds.</param>
    public static IReadOnlyList<PlannedHop> Plan(IReadOnlyList<ServerInfo> servers, BlockRange blocks, Func<PeerId, double> roundTripMs, Func<PeerId, bool>? isBanned = null)
    {
        var usable = servers.Where(s => isBanned is null || !isBanned(s.Peer)).ToList();
        var boundaries = blocks.Count + 1;
        var cost = Enumerable.Repeat(double.PositiveInfinity, boundaries).ToArray();
        var via = new PlannedHop?[boundaries];
        var previous = new int[boundaries];
        var done = new bool[boundaries];
        cost[0] = 0;
        for (var round = 0; round < boundaries; round++)
        {
            var current = -1;
            for (var i = 0; i < boundaries; i++)
                if (!done[i] && !double.IsPositiveInfinity(cost[i]) && (current < 0 || cost[i] < cost[current])) current = i;
            if (current < 0) break;
            done[current] = true;
            var block = blocks.Start + current;
            if (block == blocks.End) break;
            foreach (var server in usable)
            {
                if (!server.Span.Contains(block)) continue;
                var end = Math.Min(server.Span.End, blocks.End);
                var computeMs = (end - block) * 1000.0 / (Math.Max(server.Throughput, 1e-3) * server.Span.Count);
                var next = end - blocks.Start;
                var candidate = cost[current] + roundTripMs(server.Peer) + computeMs;
                var directOverRelayedTie = candidate == cost[next] && via[next] is { Server.UsingRelay: true } && !server.UsingRelay && previous[next] == current;
                if (candidate < cost[next] || directOverRelayedTie)
                {
                    cost[next] = candidate;
                    previous[next] = current;
                    via[next] = new PlannedHop(server, new BlockRange(block, end));
                }
            }
        }
        if (double.IsPositiveInfinity(cost[^1]))
        {
            var reached = Enumerable.Range(0, boundaries).Where(i => !double.IsPositiveInfinity(cost[i])).Max() + blocks.Start;
            var uncovered = Enumerable.Range(reached, blocks.End - reached).Where(b => !usable.Any(s => s.Span.Contains(b))).ToList();
            var detail = uncovered.Count > 0 ? $"no reachable server serves block{(uncovered.Count > 1 ? "s" : "")} {string.Join(", ", uncovered)}" : $"no route from block {reached}";
            throw new MeshException(MeshErrorCode.RouteUnavailable, $"cannot cover blocks {blocks}: {detail}");
        }
        var hops = new List<PlannedHop>();
        for (var at = boundaries - 1; at > 0; at = previous[at]) hops.Add(via[at]!);
        hops.Reverse();
        return hops;
    }
}
