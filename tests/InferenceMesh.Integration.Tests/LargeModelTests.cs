using System.Diagnostics;
using System.Text.RegularExpressions;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Tests.Shared;
using Xunit.Abstractions;

namespace InferenceMesh.Integration.Tests;

/// <summary>A model past protobuf's 2 GiB limit, generated on the fly and deleted after: import, split and serve.</summary>
public sealed partial class LargeModelTests(ITestOutputHelper output)
{
    private const int Layers = 4, Dim = 3072, Hidden = 12288, Heads = 24, KvHeads = 8, Vocab = 512;

    [Fact]
    public async Task ModelOverTwoGibImportsInBoundedMemorySplitsIntoFourStagesAndServesThroughASwarm()
    {
        var root = TestModels.NewTempDirectory("large");
        try
        {
            var source = Path.Combine(root, "source");
            var weightBytes = HuggingFaceFixtures.Large(source, Layers, Dim, Hidden, Heads, KvHeads, Vocab, shards: 3);
            HuggingFaceFixtures.WriteTokenizer(source);
            Assert.True(weightBytes > int.MaxValue, $"the fixture has {weightBytes} bytes of float32 weights; it must exceed 2 GiB");

            var imported = Path.Combine(root, "imported");
            var started = Stopwatch.GetTimestamp();
            var (code, stdout, stderr) = await RunCliProcessAsync("model", "import", "--hf", source, "--out", imported);
            Assert.True(code == 0, stderr);
            output.WriteLine(stdout.Trim());
            output.WriteLine($"import took {Stopwatch.GetElapsedTime(started).TotalSeconds:F1} s");
            var figures = ImportFigures().Match(stdout);
            Assert.True(figures.Success, stdout);
            var largest = long.Parse(figures.Groups["largest"].Value);
            var peak = long.Parse(figures.Groups["peak"].Value);
            var stage = weightBytes / Layers;
            Assert.Equal((long)Hidden * Dim * sizeof(float), largest);
            Assert.True(peak < 1.5 * largest + stage, $"import peaked at {peak} bytes; the bound is 1.5 × {largest} + one stage ({stage})");
            var graphBytes = new FileInfo(Path.Combine(imported, ModelStore.ModelFile)).Length;
            Assert.True(graphBytes < 1 << 20, $"the graph must stay small, its weights outside; it has {graphBytes} bytes");
            var dataBytes = new FileInfo(Path.Combine(imported, ModelStore.ModelDataFile)).Length;
            Assert.True(dataBytes > int.MaxValue, $"the external data has {dataBytes} bytes; the point is to pass protobuf's 2 GiB");
            Directory.Delete(source, recursive: true);

            await using var swarm = await LocalSwarmHandle.StartAsync(2, replicas: 1, model: imported);
            var manifest = Manifest.Load(swarm.Swarm.Model, verifyFiles: false);
            Assert.Equal(4, manifest.BlockStages.Count());
            Assert.All(manifest.Stages, s => Assert.NotNull(s.DataFile));
            var served = await swarm.RunAsync("prompt", "Once upon a time", "--max-tokens", "6");
            Assert.True(served.Code == 0, served.Error);
            var local = await LocalSwarmHandle.RunCliAsync(["generate", "--model", swarm.Swarm.Model, "--prompt", "Once upon a time", "--max-tokens", "6"]);
            Assert.True(local.Code == 0, local.Error);
            output.WriteLine($"through the swarm: {served.Out.Trim()}");
            Assert.Equal(local.Out, served.Out);
            Assert.StartsWith("Once upon a time", served.Out);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static async Task<(int Code, string Out, string Error)> RunCliProcessAsync(params string[] args)
    {
        var cli = Path.Combine(AppContext.BaseDirectory, "inferencemesh.dll");
        var start = new ProcessStartInfo("dotnet", [cli, .. args]) { RedirectStandardError = true, RedirectStandardOutput = true };
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromMinutes(5)).Token);
        return (process.ExitCode, await stdout, await stderr);
    }

    [GeneratedRegex(@"largest tensor (?<largest>\d+) bytes as float32; peak memory (?<peak>\d+) bytes")]
    private static partial Regex ImportFigures();
}
