using InferenceMesh.Core;

namespace InferenceMesh.Node;

/// <summary>
/// Petals' rule for a joining server that was not told which blocks to serve: sum the announced throughput
/// per block, and take the window of <c>count</c> blocks whose per-block throughputs, sorted ascending, are
/// smallest (compared element by element), so the weakest blocks get help first; ties go to the first window.
/// </summary>
public static class SpanChooser
{
    public static BlockRange Choose(int blockCount, int count, IEnumerable<(BlockRange Span, double Throughput)> servers)
    {
        if (count < 1 || count > blockCount)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"cannot serve {count} of {blockCount} blocks; choose 1 to {blockCount}");
        var perBlock = new double[blockCount];
        foreach (var (span, throughput) in servers)
            for (var b = Math.Max(0, span.Start); b < Math.Min(blockCount, span.End); b++)
                perBlock[b] += throughput;
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
