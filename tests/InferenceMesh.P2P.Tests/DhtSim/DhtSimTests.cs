using System.Diagnostics;
using Xunit.Abstractions;

namespace InferenceMesh.P2P.Tests.DhtSim;

public sealed class DhtSimTests(ITestOutputHelper output)
{
    [Fact]
    public void SimulationIsDeterministicForASeed()
    {
        List<SimFigures> Run() => new DhtSimulation(new SimOptions { Nodes = 150, PeerLookups = 60, ValueKeys = 10, ValueLookups = 30, Seed = 7, Network = new SimNetworkOptions { RoundTripCodec = true } }).RunScenario();
        var a = Run();
        var b = Run();
        Assert.Equal(a, b);
    }

    [Fact]
    public void DhtOf400NodesFindsPeersAndValuesBeforeAndAfterChurn()
    {
        // 1,000 and 10,000 nodes run in FiguresAtScale (opt-in): about 20 s for 1,000 in a Debug build.
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
