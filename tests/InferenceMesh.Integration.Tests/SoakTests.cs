using System.Text.Json;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Integration.Tests;

/// <summary>
/// The churn soak at CI scale, run alone (its growth check samples this test process as the client). The long run
/// is offline: <c>inferencemesh bench soak</c>, figures in docs/RELIABILITY.md.
/// </summary>
[Collection(nameof(SoakTests))]
[CollectionDefinition(nameof(SoakTests), DisableParallelization = true)]
public sealed class SoakTests
{
    [Fact]
    public async Task TwoMinutesWithANodeKilledEveryTwentyFiveSecondsLosesNothingAndStaysFlat()
    {
        // CI scale, the 2 minutes: its 5 nodes with spares, 8 sessions instead of 32 and a kill every 25 s instead
        // of 60 s: four kills, several hundred generations, ~150 s in all on 2 cores. A node loads more code 60 s after it
        // starts (11 more open files), so the growth check needs a 70 s warm-up and samples after it.
        var output = TestModels.NewTempDirectory("soak-out");
        var result = await LocalSwarmHandle.RunCliAsync(["bench", "soak", "--model", TestModels.Stories260K, "--duration", "120s", "--sessions", "8", "--kill-period", "25s",
            "--sample-interval", "2s", "--warm-up", "70s", "--session-timeout", "60s", "--seed", "3", "--out", output]);
        Assert.True(result.Code == 0, $"{result.Out}\n{result.Error}");

        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "soak.json"))).RootElement;
        var completed = json.GetProperty("completed").GetInt32();
        Assert.True(completed >= 20, $"only {completed} generations completed");
        Assert.Equal(completed, json.GetProperty("exact").GetInt32());
        Assert.Empty(json.GetProperty("mismatches").EnumerateArray());
        Assert.Equal(0, json.GetProperty("lostWithoutTypedError").GetInt32());
        var kills = json.GetProperty("kills").EnumerateArray().ToList();
        Assert.Equal(4, kills.Count);
        Assert.All(kills, k => Assert.Equal(JsonValueKind.Null, k.GetProperty("error").ValueKind));
        var samples = json.GetProperty("samples").EnumerateArray().ToList();
        Assert.Equal(["bootstrap", "client", "node-1", "node-2", "node-3", "node-4", "node-5"], samples.Select(s => s.GetProperty("process").GetString()).Distinct().Order());
        var scraped = samples.Where(s => s.GetProperty("process").GetString()!.StartsWith("node-", StringComparison.Ordinal) && s.GetProperty("counters").ValueKind == JsonValueKind.Object).ToList();
        Assert.True(scraped.Count > samples.Count / 2, $"only {scraped.Count} node samples carry the node's own counters");
        Assert.Contains(scraped, s => s.GetProperty("counters").GetProperty("sessionsOpen").GetInt32() > 0);
        Assert.All(scraped, s => Assert.True(s.GetProperty("counters").GetProperty("kvReservedMiB").GetDouble() <= s.GetProperty("counters").GetProperty("kvBudgetMiB").GetDouble()));
        var checks = json.GetProperty("growthChecks").EnumerateArray().ToList();
        Assert.Contains(checks, c => c.GetProperty("process").GetString() == "client" && c.GetProperty("judged").GetBoolean());
        Assert.Contains(checks, c => c.GetProperty("process").GetString() == "bootstrap" && c.GetProperty("judged").GetBoolean());
        Assert.All(checks, c => Assert.False(c.GetProperty("grew").GetBoolean(), c.ToString()));
        Assert.Contains("PASSED", result.Out);
        Assert.StartsWith("<svg", File.ReadAllText(Path.Combine(output, "soak.svg")));
    }
}
