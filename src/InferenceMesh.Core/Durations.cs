using System.Globalization;

namespace InferenceMesh.Core;

/// <summary>Parses durations as the CLI and swarm files write them: <c>20ms</c>, <c>1.5s</c>, <c>2m</c>, <c>1h</c>, or <c>0</c>.</summary>
public static class Durations
{
    public static TimeSpan Parse(string text)
    {
        var trimmed = text.Trim();
        (string Suffix, double Milliseconds)[] units = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)];
        foreach (var (suffix, scale) in units)
            if (trimmed.EndsWith(suffix, StringComparison.Ordinal)
                && double.TryParse(trimmed[..^suffix.Length], NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value >= 0)
                return TimeSpan.FromMilliseconds(value * scale);
        if (trimmed == "0") return TimeSpan.Zero;
        throw new MeshException(MeshErrorCode.InvalidArgument, $"'{text}' is not a duration; write it like 20ms, 1.5s, 2m or 1h");
    }
}
