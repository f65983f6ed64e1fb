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

    [Fact]
    public void ASteadyLeakOfOneFilePerTenSecondsIsGrowth()
    {
        var checks = SoakRunner.CheckGrowth(Series("node-1", t => (120, 120 + (int)(t / 10), 16)), 600, Options);
        Assert.True(checks.Single(c => c.Resource == "fds").Grew);
        Assert.False(checks.Single(c => c.Resource == "rssMiB").Grew);
        Assert.False(checks.Single(c => c.Resource == "threads").Grew);
    }

    [Fact]
    public void GcSawtoothAndAFewInjectedThreadsAreFlat()
    {
        var checks = SoakRunner.CheckGrowth(Series("client", t => (140 + 20 * (t % 50) / 50, 140 + (int)(t / 100) % 2, 17 + (int)(t / 60) % 3)), 600, Options);
        Assert.All(checks, c => Assert.True(c.Judged && !c.Grew, $"{c.Resource}: {c.SecondThirdMedian} -> {c.LastThirdMedian}"));
    }

    [Fact]
    public void ARestartedNodesWarmUpIsLeftOutOfTheCheck()
    {
        // Killed at 300 s and restarted: the new process starts small and climbs for its first 30 s, then holds.
        var before = Series("node-2", _ => (115, 124, 16), pid: 1, to: 295);
        var after = Series("node-2", t => (t < 330 ? 60 + (t - 300) * 2 : 120, 124, 16), pid: 2, startedAt: 300, from: 300);
        var checks = SoakRunner.CheckGrowth([.. before, .. after], 600, Options);
        Assert.All(checks, c => Assert.True(c.Judged && !c.Grew, $"{c.Resource}: {c.SecondThirdMedian} -> {c.LastThirdMedian}"));
    }

    [Fact]
    public void AProcessWithTooFewWarmSamplesIsNotJudged()
    {
        var checks = SoakRunner.CheckGrowth(Series("node-3", t => (100, 100, 10 + (int)t), from: 580), 600, Options);
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
}
