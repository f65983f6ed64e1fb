using InferenceMesh.Core;

namespace InferenceMesh.Node;

/// <summary>
/// Petals' rule for a joining server that was not told which blocks to serve: sum the announced throughput
/// per block, and take the window of <c>count</c> blocks whose per-block throughputs, sorted ascending, are
/// smallest (compared element by element), so the weakest blocks get help first; ties go to the first window.
/// For a swarm started at once, <see cref="Stripe"/> gives every block a set number of servers instead.
/// </summary>
public static class SpanChooser
{
    public static BlockRange Choose(int blockCount, int count, IEnumerable<(BlockRange Span, double Throughput)> servers) =>
        Choose(blockCount, count, PerBlockThroughput(blockCount, servers));

    /// <summary>Petals' rule with its reason in words (the per-block throughput it saw), as a node logs it.</summary>
    public static SpanChoice ChooseWithReason(int blockCount, int count, IEnumerable<(BlockRange Span, double Throughput)> servers)
    {
        var perBlock = PerBlockThroughput(blockCount, servers);
        var blocks = Choose(blockCount, count, perBlock);
        return new SpanChoice(blocks, $"Petals' rule: of every window of {count} blocks, the one whose announced throughput is weakest "
            + $"(tokens/s per block now: {string.Join(" ", perBlock.Select(t => t.ToString("F0", System.Globalization.CultureInfo.InvariantCulture)))})");
    }

    /// <summary>
    /// Spans for <paramref name="nodes"/> servers started together so that every block has at least
    /// <paramref name="replicas"/> of them: the blocks repeated <paramref name="replicas"/> times are cut into
    /// <paramref name="nodes"/> consecutive runs of near-equal length, and a run that wraps past the last block
    /// serves every block. Killing any <paramref name="replicas"/> − 1 nodes leaves every block served.
    /// </summary>
    public static IReadOnlyList<BlockRange> Stripe(int blockCount, int nodes, int replicas)
    {
        if (blockCount < 1) throw new MeshException(MeshErrorCode.InvalidArgument, "the model has no blocks");
        if (replicas < 1) throw new MeshException(MeshErrorCode.InvalidArgument, $"replicas must be at least 1, not {replicas}");
        if (nodes < replicas)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"{replicas} servers per block need at least {replicas} nodes, not {nodes}; start more nodes or ask for fewer replicas");
        var total = (long)blockCount * replicas;
        var spans = new List<BlockRange>(nodes);
        for (var i = 0; i < nodes; i++)
        {
            var from = total * i / nodes;
            var to = total * (i + 1) / nodes;
            var start = (int)(from % blockCount);
            var length = (int)(to - from);
            spans.Add(length == 0 ? new BlockRange(start, start + 1)
                : start + length <= blockCount ? new BlockRange(start, start + length)
                : new BlockRange(0, blockCount));
        }
        return spans;
    }

    private static double[] PerBlockThroughput(int blockCount, IEnumerable<(BlockRange Span, double Throughput)> servers)
    {
        var perBlock = new double[blockCount];
        foreach (var (span, throughput) in servers)
            for (var b = Math.Max(0, span.Start); b < Math.Min(blockCount, span.End); b++)
                perBlock[b] += throughput;
        return perBlock;
    }

    private static BlockRange Choose(int blockCount, int count, double[] perBlock)
    {
        if (count < 1 || count > blockCount)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"cannot serve {count} of {blockCount} blocks; choose 1 to {blockCount}");
        var best = 0;
        double[]? bestKey = null;
        for (var start = 0; start + count <= blockCount; start++)
        {
            var key = perBlock[start..(start + count)];
            Array.Sort(key);
            if (bestKey is null || Compare(key, bestKey) < 0)
            {
                best = start;
                bestKey = key;
            }
        }
        return new BlockRange(best, best + count);
    }

    private static int Compare(double[] a, double[] b)
    {
        for (var i = 0; i < a.Length; i++)
        {
            var c = a[i].CompareTo(b[i]);
            if (c != 0) return c;
        }
        return 0;
    }
}
