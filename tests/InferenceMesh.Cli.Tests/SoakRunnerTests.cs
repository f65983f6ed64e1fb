using InferenceMesh.Cli.Swarm;
using InferenceMesh.Core;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Cli.Tests;

/// <summary>The soak's growth rule and its refusals; the soak itself runs in the Integration tests' SoakTests.</summary>
public sealed class SoakRunnerTests
{
    private static readonly SoakOptions Options = new("unused", "unused") { WarmUp = TimeSpan.FromSeconds(30) };

    /// <summary>A sample every 5 s for 600 s of one process whose values are given by time.</summary>
    private static List<SoakResult.Sample> Series(string process, Func<double, (double Rss, int Fds, int Threads)> at, int pid = 100, double startedAt = 0, double from = 0, double to = 600) =>
        Enumerable.Range(0, 121).Select(i => i * 5.0).Where(t => t >= from && t <= to)
            .Select(t => { var v = at(t); return new SoakResult.Sample(t, process, pid, t - startedAt, v.Rss, v.Fds, v.Threads); }).ToList();

    /// <summary>A sample every 5 s of each successive process of one node (restarted at each life's end), valued by the process's age.</summary>
    private static List<SoakResult.Sample> Lives(string process, (double Start, double End)[] lives, Func<double, (double Rss, int Fds, int Threads)> atAge) =>
        lives.SelectMany((life, i) => Enumerable.Range(0, (int)((life.End - life.Start) / 5)).Select(k => life.Start + k * 5.0)
            .Select(t => { var v = atAge(t - life.Start); return new SoakResult.Sample(t, process, i + 1, t - life.Start, v.Rss, v.Fds, v.Threads); })).ToList();

    /// <summary>
    /// The first 1-hour soak's node-5: each process steps from 120 to 170 MiB about 4.5 minutes into its life and holds;
    /// most are killed before that, and the one that lived longest happened to fill the run's last third.
    /// </summary>
    private static List<SoakResult.Sample> StepOnceThenLevelOff() =>
        Lives("node-5", [(0, 200), (200, 500), (500, 700), (700, 900), (900, 1000), (1000, 1900), (1900, 2000)], age => (age < 270 ? 120 : 170, 132, 16));

    [Fact]
    public void ASteadyLeakOfOneFilePerTenSecondsIsGrowth()
    {
        var checks = SoakRunner.CheckGrowth(Series("node-1", t => (120, 120 + (int)(t / 10), 16)), Options);
        Assert.True(checks.Single(c => c.Resource == "fds").Grew);
        Assert.False(checks.Single(c => c.Resource == "rssMiB").Grew);
        Assert.False(checks.Single(c => c.Resource == "threads").Grew);
    }

    [Fact]
    public void GcSawtoothAndAFewInjectedThreadsAreFlat()
    {
        var checks = SoakRunner.CheckGrowth(Series("client", t => (140 + 20 * (t % 50) / 50, 140 + (int)(t / 100) % 2, 17 + (int)(t / 60) % 3)), Options);
        Assert.All(checks, c => Assert.True(c.Judged && !c.Grew, $"{c.Resource}: {c.SecondThirdMedian} -> {c.LastThirdMedian}"));
    }

    [Fact]
    public void ARestartedNodesWarmUpIsLeftOutOfTheCheck()
    {
        // Killed at 300 s and restarted: the new process starts small and climbs for its first 30 s, then holds.
        var before = Series("node-2", _ => (115, 124, 16), pid: 1, to: 295);
        var after = Series("node-2", t => (t < 330 ? 60 + (t - 300) * 2 : 120, 124, 16), pid: 2, startedAt: 300, from: 300);
        var checks = SoakRunner.CheckGrowth([.. before, .. after], Options);
        Assert.All(checks, c => Assert.True(c.Judged && !c.Grew, $"{c.Resource}: {c.SecondThirdMedian} -> {c.LastThirdMedian}"));
    }

    [Fact]
    public void NodesRestartedOftenThatStepUpOnceAndLevelOffAreFlat()
    {
        var checks = SoakRunner.CheckGrowth(StepOnceThenLevelOff(), Options);
        Assert.All(checks, c => Assert.True(c.Judged && !c.Grew, $"{c.Resource}: {c.SecondThirdMedian} -> {c.LastThirdMedian}"));
    }

    [Fact]
    public void MemoryThatGrowsWithTheAgeOfEachRestartedProcessIsGrowth()
    {
        // Every process of the node leaks half a MiB a second for as long as it lives, whatever its pid.
        var samples = Lives("node-4", [(0, 150), (150, 400), (400, 500), (500, 900), (900, 1000)], age => (120 + 0.5 * age, 132, 16));
        var checks = SoakRunner.CheckGrowth(samples, Options);
        Assert.True(checks.Single(c => c.Resource == "rssMiB").Grew);
        Assert.False(checks.Single(c => c.Resource == "fds").Grew);
    }

    [Fact]
    public void ANodeWhoseConnectionsGrowWithItsAgeIsGrowthAndProcessesWithoutCountersAreNotCheckedForThem()
    {
        var node = Lives("node-1", [(0, 300), (300, 900)], _ => (120, 132, 16))
            .Select(s => s with { Counters = new SoakResult.NodeCounters(4, 1.5, 256, 6 + (int)(s.AgeSeconds / 20)) }).ToList();
        var checks = SoakRunner.CheckGrowth([.. node, .. Series("client", _ => (140, 140, 17))], Options);
        Assert.True(checks.Single(c => c.Process == "node-1" && c.Resource == "connections").Grew);
        Assert.DoesNotContain(checks, c => c.Process == "client" && c.Resource == "connections");
    }

    [Fact]
    public void ReadsTheNodesOwnGaugesFromItsPrometheusText()
    {
        var counters = SoakRunner.ParseNodeCounters("""
            # HELP inferencemesh_node_sessions_open Sessions holding KV state on this node.
            # TYPE inferencemesh_node_sessions_open gauge
            inferencemesh_node_sessions_open 7
            inferencemesh_node_kv_reserved_bytes 3145728
            inferencemesh_node_kv_budget_bytes 2.68435456E+08
            inferencemesh_node_connections{path="direct"} 9
            inferencemesh_node_connections{path="relayed"} 2
            inferencemesh_node_steps_total 12345
            not a metric line
            """);
        Assert.Equal(new SoakResult.NodeCounters(7, 3, 256, 11), counters);
    }

    [Fact]
    public void AClientStartedLongBeforeTheSoakIsStillJudged()
    {
        // The CI soak's client is the test process, minutes old when the soak starts: its ages begin far past the warm-up.
        var checks = SoakRunner.CheckGrowth(Series("client", _ => (140, 140, 17), startedAt: -500), Options);
        Assert.All(checks, c => Assert.True(c.Judged && !c.Grew, $"{c.Resource}: judged {c.Judged}, {c.SecondThirdMedian} -> {c.LastThirdMedian}"));
    }

    [Fact]
    public void AProcessWithTooFewWarmSamplesIsNotJudged()
    {
        var checks = SoakRunner.CheckGrowth(Series("node-3", t => (100, 100, 10 + (int)t), from: 580), Options);
        Assert.All(checks, c => Assert.False(c.Judged || c.Grew));
    }

    [Fact]
    public void ReadsItsOwnProcessesResourcesAndAgeFromProc()
    {
        var own = SoakRunner.ReadResources(Environment.ProcessId);
        Assert.NotNull(own);
        Assert.True(own.Value.RssMiB > 10 && own.Value.Fds > 3 && own.Value.Threads > 1, own.ToString());
        Assert.Null(SoakRunner.ReadResources(int.MaxValue));
        var age = SoakRunner.ProcessAge(Environment.ProcessId);
        var sinceStart = DateTime.Now - System.Diagnostics.Process.GetCurrentProcess().StartTime;
        Assert.True(age is { } a && Math.Abs((a - sinceStart).TotalSeconds) < 2, $"age {age} against {sinceStart}");
    }

    [Fact]
    public async Task ASoakWithoutSparesIsRefusedBeforeAnythingStarts()
    {
        var error = await Assert.ThrowsAsync<MeshException>(() => SoakRunner.RunAsync(Options with { Nodes = 3, Replicas = 1 }, TextWriter.Null));
        Assert.Equal(MeshErrorCode.InvalidArgument, error.Code);
        Assert.Contains("needs spares", error.Message);
    }

    [Fact]
    public async Task BenchSoakWithoutSparesExitsBadInputWithOneLine()
    {
        var result = await CliTests.Run("bench", "soak", "--model", "no-such-model", "--replicas", "1", "--out", TestModels.NewTempDirectory("soak"));
        CliTests.AssertOneLineError(result, "the soak needs spares");
    }

    [Fact]
    public async Task BenchSoakVerdictJudgesARecordedSoakAgainFromItsSamples()
    {
        var samples = StepOnceThenLevelOff();
        var recorded = new SoakResult(DateTimeOffset.UnixEpoch, "test", 5, 2, 32, 2000, 60, 1, 256, 30, 2000, 10, 10, 0, [], [], [], samples,
            [new SoakResult.Growth("node-5", "rssMiB", true, 120, 170, 160, true)]);
        var input = Path.Combine(TestModels.NewTempDirectory("soak-recorded"), "soak.json");
        await File.WriteAllTextAsync(input, System.Text.Json.JsonSerializer.Serialize(recorded, CliJson.Options));
        var output = TestModels.NewTempDirectory("soak-verdict");

        var result = await CliTests.Run("bench", "soak-verdict", "--from", input, "--out", output);

        Assert.True(result.Code == 0, $"{result.Out}\n{result.Error}");
        Assert.Contains("| node-5 | rssMiB |", result.Out);
        Assert.Contains("PASSED", result.Out);
        var written = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "soak.json"))).RootElement;
        Assert.Equal(samples.Count, written.GetProperty("samples").GetArrayLength());
        Assert.All(written.GetProperty("growthChecks").EnumerateArray(), c => Assert.False(c.GetProperty("grew").GetBoolean()));
        Assert.True(File.Exists(Path.Combine(output, "soak.svg")));
    }

    [Fact]
    public async Task BenchSoakVerdictOfAFileThatIsNotASoakExitsBadInputWithOneLine()
    {
        var input = Path.Combine(TestModels.NewTempDirectory("soak-bad"), "soak.json");
        await File.WriteAllTextAsync(input, "{\"completed\": \"many\"");
        var result = await CliTests.Run("bench", "soak-verdict", "--from", input, "--out", TestModels.NewTempDirectory("soak-verdict"));
        CliTests.AssertOneLineError(result, "is not a soak.json");
    }
}
