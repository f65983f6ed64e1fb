using System.Diagnostics;
using Xunit.Abstractions;

namespace InferenceMesh.P2P.Tests.DhtSim;

public sealed class DhtSimTests(ITestOutputHelper output)
{
    [Fact]
    public void Simulation_is_deterministic_for_a_seed()
    {
        List<SimFigures> Run() => new DhtSimulation(new SimOptions { Nodes = 150, PeerLookups = 60, ValueKeys = 10, ValueLookups = 30, Seed = 7, Network = new SimNetworkOptions { RoundTripCodec = true } }).RunScenario();
        var a = Run();
        var b = Run();
        Assert.Equal(a, b);
    }

    [Fact]
    public void Dht_of_400_nodes_finds_peers_and_values_before_and_after_churn()
    {
        // 1,000 and 10,000 nodes run in Figures_at_scale (opt-in): about 20 s for 1,000 in a Debug build.
        var sw = Stopwatch.StartNew();
        var sim = new DhtSimulation(new SimOptions { Nodes = 400, PeerLookups = 300, ValueKeys = 50, ValueLookups = 200 });
        var figures = sim.RunScenario();
        foreach (var f in figures) output.WriteLine(f.ToString());
        output.WriteLine($"build {sim.BuildTime.TotalSeconds:F1} s, total {sw.Elapsed.TotalSeconds:F1} s, events {sim.Scheduler.EventsRun}");
        foreach (var f in figures)
        {
            Assert.True(f.SuccessRate >= (f.Phase == "before churn" ? 0.99 : 0.97), f.ToString());
            Assert.True(f.HopsMedian <= 4, f.ToString());
        }
    }
}

/// <summary>
/// The figures of docs/DHT.md. Opt-in: INFERENCEMESH_DHT_SIM=full (sizes 250, 1000, 3000, 10000) or a
/// comma-separated list of sizes; INFERENCEMESH_DHT_SIM_OUT names the folder for dht-sim.md and dht-hops.svg.
/// </summary>
public sealed class DhtSimFullRun(ITestOutputHelper output)
{
    [SkippableFact]
    public void Figures_at_scale()
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
