using System.Globalization;
using System.Text.RegularExpressions;

namespace InferenceMesh.Tests.Shared;

/// <summary>Reads Prometheus text exposition strictly: every line is a HELP/TYPE comment or <c>name{labels} value</c>.</summary>
public static partial class PrometheusText
{
    /// <summary>The samples by name with labels (as written), failing the test on any line that is not valid exposition text.</summary>
    public static Dictionary<string, double> Parse(string text)
    {
        var samples = new Dictionary<string, double>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith('#'))
            {
                Assert.Matches(Comment(), line);
                continue;
            }
            var match = Sample().Match(line);
            Assert.True(match.Success, $"not a Prometheus sample line: {line}");
            samples[match.Groups[1].Value] = double.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture);
        }
        Assert.NotEmpty(samples);
        return samples;
    }

    [GeneratedRegex(@"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$")]
    private static partial Regex Comment();

    [GeneratedRegex(@"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$")]
    private static partial Regex Sample();
}
