using System.Xml.Linq;
using InferenceMesh.Cli.Swarm;

namespace InferenceMesh.Cli.Tests;

public sealed class SoakPlotTests
{
    [Fact]
    public void ThePlotIsValidSvgWithALinePerProcessLifeAndEveryKillMarked()
    {
        var samples = new List<SoakResult.Sample>();
        for (var t = 0; t <= 120; t += 5)
        {
            samples.Add(new(t, "client", 1, t, 140, 140, 17));
            samples.Add(new(t, "node-1", t < 60 ? 10 : 11, t % 60, 110, 124, 16));
        }
        var kills = new List<SoakResult.Kill> { new(60, "node-1", 10, 11, 3.5, null) };
        var result = new SoakResult(DateTimeOffset.UnixEpoch, "2 cores", 5, 2, 32, 120, 60, 1, 256, 30, 120, 10, 10, 0, [], [], kills, samples, []);

        var svg = XDocument.Parse(SoakPlot.Render(result));
        XNamespace ns = "http://www.w3.org/2000/svg";
        // Three panels; the client lives throughout (1 line each), node-1 twice (2 lines each).
        Assert.Equal(3 * 3, svg.Descendants(ns + "polyline").Count());
        Assert.Equal(3 + 1, svg.Descendants(ns + "line").Count(l => (string?)l.Attribute("stroke-dasharray") == "4,3"));
        Assert.Contains(svg.Descendants(ns + "text"), t => t.Value == "n1");
        Assert.Contains(svg.Descendants(ns + "text"), t => t.Value.Contains("10/10 exact"));
    }
}
