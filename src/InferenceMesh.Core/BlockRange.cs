using System.Globalization;

namespace InferenceMesh.Core;

/// <summary>A half-open range <c>[Start, End)</c> of transformer blocks, by 0-based index.</summary>
public readonly record struct BlockRange
{
    [System.Text.Json.Serialization.JsonConstructor]
    public BlockRange(int start, int end)
    {
        if (start < 0 || end <= start)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"block range {start}:{end} is empty or negative");
        Start = start;
        End = end;
    }

    public int Start { get; }
    public int End { get; }
    [System.Text.Json.Serialization.JsonIgnore] public int Count => End - Start;

    public bool Contains(int block) => block >= Start && block < End;

    /// <summary>Parses <c>start:end</c> (the CLI form), e.g. <c>0:2</c>.</summary>
    public static BlockRange Parse(string text)
    {
        var parts = text.Split(':');
        if (parts.Length != 2
            || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var start)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var end))
            throw new MeshException(MeshErrorCode.InvalidArgument, $"'{text}' is not a block range; expected start:end such as 0:2");
        return new BlockRange(start, end);
    }

    /// <summary>Parses a comma-separated list such as <c>0:2,2:5</c> and checks that the ranges are contiguous from 0.</summary>
    public static IReadOnlyList<BlockRange> ParseContiguousList(string text, int blockCount)
    {
        var ranges = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(Parse).ToList();
        var expectedStart = 0;
        foreach (var range in ranges)
        {
            if (range.Start != expectedStart)
                throw new MeshException(MeshErrorCode.InvalidArgument, $"block ranges must be contiguous from 0: {range} does not start at {expectedStart}");
            expectedStart = range.End;
        }
        if (expectedStart != blockCount)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"block ranges cover 0:{expectedStart} but the model has {blockCount} blocks");
        return ranges;
    }

    /// <summary>Splits <c>[0, blockCount)</c> into <paramref name="parts"/> ranges as even as possible, larger ones first.</summary>
    public static IReadOnlyList<BlockRange> SplitEvenly(int blockCount, int parts)
    {
        if (parts < 1 || parts > blockCount)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"cannot split {blockCount} blocks into {parts} stages; choose 1 to {blockCount}");
        var ranges = new List<BlockRange>(parts);
        var start = 0;
        for (var i = 0; i < parts; i++)
        {
            var size = blockCount / parts + (i < blockCount % parts ? 1 : 0);
            ranges.Add(new BlockRange(start, start + size));
            start += size;
        }
        return ranges;
    }

    /// <summary><c>start:end</c>, the one way blocks are written in the CLI, JSON and tables (what <see cref="Parse"/> reads).</summary>
    public override string ToString() => $"{Start}:{End}";
}
