using System.Diagnostics;
using Xunit.Abstractions;

namespace InferenceMesh.P2P.Tests.DhtSim;

/// <summary>
/// The figures of docs/DHT.md. Opt-in: INFERENCEMESH_DHT_SIM=full (sizes 250, 1000, 3000, 10000) or a
/// comma-separated list of sizes; INFERENCEMESH_DHT_SIM_OUT names the folder for dht-sim.md and dht-hops.svg.
/// </summary>
public sealed class DhtSimScaleTests(ITestOutputHelper output)
{
    [SkippableFact]
    public void FiguresAtScale()
    {
        var spec = Environment.GetEnvironmentVariable("INFERENCEMESH_DHT_SIM");
        Skip.If(string.IsNullOrEmpty(spec), "the 1,000–10,000-node simulation runs for minutes: set INFERENCEMESH_DHT_SIM=full to run it");
        var sizes = spec == "full" ? [250, 1000, 3000, 10000] : spec.Split(',').Select(int.Parse).ToArray();
        var outDir = Environment.GetEnvironmentVariable("INFERENCEMESH_DHT_SIM_OUT") ?? Path.Combine(Path.GetTempPath(), "dht-sim");
        Directory.CreateDirectory(outDir);
        var rows = new List<(int, SimFigures, double)>();
        foreach (var n in sizes)
        {
            var sw = Stopwatch.StartNew();
            var sim = new DhtSimulation(new SimOptions { Nodes = n, PeerLookups = 1000, ValueKeys = 200, ValueLookups = 500 });
            var figures = sim.RunScenario();
            var secs = sw.Elapsed.TotalSeconds;
            foreach (var f in figures)
            {
                rows.Add((n, f, secs));
                output.WriteLine($"{n}: {f} ({secs:F0} s)");
            }
            File.WriteAllText(Path.Combine(outDir, "dht-sim.md"), DhtSimReport.Markdown(rows));
            File.WriteAllText(Path.Combine(outDir, "dht-hops.svg"), DhtSimReport.Svg(rows));
            // issue 4's goals (stated for 10,000 nodes) hold at every size
            foreach (var f in figures)
            {
                Assert.True(f.HopsMedian <= 4, f.ToString());
                Assert.True(f.SuccessRate >= (f.Phase == "before churn" ? 0.99 : 0.97), f.ToString());
            }
        }
    }
}
