namespace InferenceMesh.Core;

/// <summary>Order statistics for benchmark and simulation figures, so every report computes its median the same way.</summary>
public static class Statistics
{
    /// <summary>
    /// The nearest-rank percentile: the smallest value with at least <paramref name="p"/> (0 to 1) of the values at or
    /// below it. The values need not be sorted; NaN when there are none.
    /// </summary>
    public static double Percentile(IEnumerable<double> values, double p)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentOutOfRangeException.ThrowIfLessThan(p, 0.0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(p, 1.0);
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0) return double.NaN;
        var index = (int)Math.Ceiling(p * sorted.Length) - 1;
        return sorted[Math.Clamp(index, 0, sorted.Length - 1)];
    }

    /// <summary>The nearest-rank median (<see cref="Percentile"/> at 0.5): the middle value, the lower middle one for an even count.</summary>
    public static double Median(IEnumerable<double> values) => Percentile(values, 0.5);
}
