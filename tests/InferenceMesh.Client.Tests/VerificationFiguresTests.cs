using System.Globalization;
using System.Text;
using System.Text.Json;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Node;
using InferenceMesh.Onnx;
using InferenceMesh.Protocol;
using InferenceMesh.Tests.Shared;
using Xunit.Abstractions;

namespace InferenceMesh.Client.Tests;

/// <summary>
/// The figures of docs/VERIFICATION.md: detection per fault kind over seeded sessions, honest deviations, cost against
/// verification off. Sessions per fault come from INFERENCEMESH_VERIFY_SESSIONS (20 unless set); with
/// INFERENCEMESH_FIGURES_DIR set, the JSON and the SVG plot are written there.
/// </summary>
public sealed class VerificationFiguresTests(ITestOutputHelper output)
{
    private const int Window = 32;
    private const int Length = 128;
    private static readonly double[] Rates = [0.1, 0.25, 0.5, 1];

    static VerificationFiguresTests() => Environment.SetEnvironmentVariable(StageFault.AllowVariable, "1");

    private static int Sessions => int.TryParse(Environment.GetEnvironmentVariable("INFERENCEMESH_VERIFY_SESSIONS"), out var n) && n > 0 ? n : 20;

    private static string? FiguresDirectory => Environment.GetEnvironmentVariable("INFERENCEMESH_FIGURES_DIR") is { Length: > 0 } d ? Directory.CreateDirectory(d).FullName : null;

    private static InMemoryMesh Swarm(string split, StageFault? fault)
    {
        var mesh = new InMemoryMesh();
        var blocks = new BlockRange(0, Manifest.Load(split).BlockCount);
        mesh.AddNode(split, blocks, fault: fault);
        mesh.AddNode(split, blocks, threads: 2);
        mesh.AddNode(split, blocks);
        return mesh;
    }

    private static MeshClient Client(string split, InMemoryMesh mesh, MeshClientOptions options) =>
        MeshClient.Open(split, mesh.DialerFor("client"), new MeshDirectory(mesh, mesh.Nodes[0].PeerId), options);

    private static GenerationOptions Seeded(int seed) => new(MaxTokens: Length, Temperature: 1f, Seed: (ulong)seed + 1, MaxPositions: Length, StopAtEndOfText: false);

    [Fact]
    public async Task DetectionOfEveryFaultKindOverSeededSessionsIsMeasured()
    {
        var split = MeshModels.Stories260KPerBlock;
        var figures = new List<object>();
        var svg = new List<(string Fault, double[][] Curves)>();
        foreach (var fault in new[] { "noise=0.05", "skip-block=2", "weights=fp16", "weights=int8", "weights=other-seed", "noise=1,rate=0.01" })
        {
            await using var mesh = Swarm(split, StageFault.Parse([fault]));
            var firstDetections = new List<int?>();
            var smallest = double.PositiveInfinity;
            var sampled = 0;
            var sampledDetected = 0;
            for (var seed = 0; seed < Sessions; seed++)
            {
                await using var honest = Client(split, mesh, new MeshClientOptions { Verify = VerifyMode.Off });
                honest.Routes.Ban(InferenceMesh.P2P.Identity.PeerId.Parse(mesh.Nodes[0].PeerId), "the reference runs on honest servers");
                var reference = (await honest.CompleteAsync("", Seeded(seed))).Text;
                await using var client = Client(split, mesh, new MeshClientOptions { Verify = VerifyMode.Strict, CheckWindow = Window, CheckSeed = seed });
                var result = await client.CompleteAsync("", Seeded(seed));
                Assert.Equal(reference, result.Text);
                var report = result.Verification!;
                firstDetections.Add(report.FirstDetectionPosition);
                foreach (var check in report.Checks.Where(c => c.Verdict == CheckVerdict.Convicted)) smallest = Math.Min(smallest, check.Deviations.Min());
                if (report.FirstDetectionPosition is not null) Assert.Contains(mesh.Nodes[0].PeerId, report.Banned);
                // The same session at the default rate, for real: what the sampling law below predicts.
                await using var sampling = Client(split, mesh, new MeshClientOptions { CheckWindow = Window, CheckSeed = 1000 + seed });
                var sample = await sampling.CompleteAsync("", Seeded(seed));
                if (sample.Verification!.FirstDetectionPosition is not null) Assert.Equal(reference, sample.Text);
                if (report.FirstDetectionPosition is not null)
                {
                    sampled++;
                    if (sample.Verification.FirstDetectionPosition is not null) sampledDetected++;
                }
            }
            var affected = firstDetections.Where(d => d is not null).Select(d => d!.Value).ToList();
            // A check replays the whole history, so with rate q per window a lie first visible by window end e is caught by
            // position t with probability 1 - (1 - q)^(windows ending in [e, t]); the session's end is a window end too.
            var curves = Rates.Select(q => Enumerable.Range(1, Length).Select(t => affected.Count == 0 ? 0 : affected.Average(e => 1 - Math.Pow(1 - q, WindowEnds(e, t)))).ToArray()).ToArray();
            svg.Add((fault, curves));
            var line = new
            {
                fault,
                sessions = Sessions,
                affected = affected.Count,
                strictDetected = affected.Count,
                firstDetectionPositions = Histogram(affected),
                smallestConvictingDeviation = double.IsInfinity(smallest) ? (double?)null : smallest,
                withinSession = Rates.ToDictionary(q => q.ToString(CultureInfo.InvariantCulture), q => curves[Array.IndexOf(Rates, q)][^1]),
                sampledAtDefault = new { sessions = sampled, detected = sampledDetected },
            };
            figures.Add(line);
            output.WriteLine(JsonSerializer.Serialize(line));
            Assert.True(fault.Contains("rate") || affected.Count == Sessions, $"{fault}: strict caught {affected.Count} of {Sessions} sessions");
        }
        if (FiguresDirectory is { } directory)
        {
            await File.WriteAllTextAsync(Path.Combine(directory, "detection.json"), JsonSerializer.Serialize(figures, new JsonSerializerOptions { WriteIndented = true }));
            await File.WriteAllTextAsync(Path.Combine(directory, "detection.svg"), Plot(svg));
        }
    }

    private static int WindowEnds(int first, int upTo)
    {
        var count = 0;
        for (var end = first; end <= upTo; end++)
            if (end % Window == 0 || end == Length) count++;
        return count;
    }

    private static Dictionary<string, int> Histogram(List<int> positions) =>
        positions.GroupBy(p => p).OrderBy(g => g.Key).ToDictionary(g => g.Key.ToString(CultureInfo.InvariantCulture), g => g.Count());

    [Fact]
    public async Task HonestChecksAcrossExecutorsAndThreadCountsStayFarBelowTheTolerance()
    {
        var split = MeshModels.Stories260KPerBlock;
        await using var mesh = new InMemoryMesh();
        mesh.AddNode(split, new BlockRange(0, 5));
        mesh.AddNode(split, new BlockRange(0, 5), threads: 2);
        mesh.AddNode(split, new BlockRange(0, 5), executor: ExecutorKind.Ilgpu);
        mesh.AddNode(split, new BlockRange(0, 2), threads: 3);
        mesh.AddNode(split, new BlockRange(2, 5), executor: ExecutorKind.Ilgpu);
        var positionsChecked = 0L;
        var worst = 0.0;
        for (var seed = 0; seed < Sessions; seed++)
        {
            await using var client = MeshClient.Open(split, mesh.DialerFor("client"), new MeshDirectory(mesh, mesh.Nodes[seed % mesh.Nodes.Count].PeerId),
                new MeshClientOptions { Verify = VerifyMode.Strict, CheckWindow = 16, CheckSeed = seed, Mode = seed % 2 == 0 ? RouteMode.Chained : RouteMode.Relayed });
            var result = await client.CompleteAsync("", Seeded(seed));
            var report = result.Verification!;
            Assert.Empty(report.Banned);
            Assert.All(report.Checks, c => Assert.Equal(CheckVerdict.Passed, c.Verdict));
            positionsChecked += report.ReplayedPositions;
            worst = Math.Max(worst, report.Checks.SelectMany(c => c.Deviations).DefaultIfEmpty().Max());
        }
        output.WriteLine($"honest: {Sessions} sessions, {positionsChecked} replayed positions compared, largest deviation {worst:G4} × RMS, tolerance {new MeshClientOptions().CheckTolerance}");
        Assert.True(worst < new MeshClientOptions().CheckTolerance / 4, $"honest deviation {worst} is within a factor 4 of the tolerance");
    }

    public static TheoryData<string> CostModels() => ["stories260K", "synthetic-dim1024"];

    [Theory]
    [MemberData(nameof(CostModels))]
    public async Task CostOfVerificationAgainstOffIsMeasured(string model)
    {
        var split = model == "stories260K" ? MeshModels.Stories260KPerBlock : SyntheticDim1024.Value;
        var sessions = model == "stories260K" ? Math.Min(Sessions, 20) : Math.Max(6, Sessions / 8);
        var length = model == "stories260K" ? Length : 64;
        var compute = new Dictionary<VerifyMode, double>();
        var replayed = new Dictionary<VerifyMode, long>();
        GenerationOptions Options(int seed) => new(MaxTokens: length, Temperature: 1f, Seed: (ulong)seed + 1, MaxPositions: length, StopAtEndOfText: false);
        // One mesh per mode, sessions alternating between them, so drift in the machine's speed falls on every mode alike.
        VerifyMode[] modes = [VerifyMode.Off, VerifyMode.Sample, VerifyMode.Strict];
        var meshes = modes.ToDictionary(m => m, _ => Swarm(split, null));
        try
        {
            foreach (var mode in modes)
            {
                // One session first, not counted: every node's runtime warms up on it.
                await using var warm = Client(split, meshes[mode], new MeshClientOptions { Verify = VerifyMode.Strict });
                await warm.CompleteAsync("", Options(999));
                compute[mode] = -meshes[mode].Nodes.Sum(n => n.Server.ComputeTime.TotalMilliseconds);
                replayed[mode] = 0;
            }
            for (var seed = 0; seed < sessions; seed++)
            {
                foreach (var mode in modes)
                {
                    await using var client = Client(split, meshes[mode], new MeshClientOptions { Verify = mode, CheckSeed = seed });
                    var result = await client.CompleteAsync("", Options(seed));
                    replayed[mode] += result.Verification!.ReplayedPositions;
                }
            }
            foreach (var mode in modes) compute[mode] += meshes[mode].Nodes.Sum(n => n.Server.ComputeTime.TotalMilliseconds);
        }
        finally
        {
            foreach (var mesh in meshes.Values) await mesh.DisposeAsync();
        }
        // Sample mode replays few windows, so its measured time is noisy; the replay's cost per position, measured in strict
        // mode, times the replays sample mode makes on average (rate × the window ends' positions / length) is the steady figure.
        var windowEnds = Enumerable.Range(1, length).Where(t => t % 32 == 0 || t == length).Sum();
        var replayCostPerPosition = (compute[VerifyMode.Strict] / compute[VerifyMode.Off] - 1) / ((double)replayed[VerifyMode.Strict] / (sessions * length));
        var expectedSampleReplays = new MeshClientOptions().CheckRate * windowEnds / length;
        var dim = (int)Manifest.Load(split).Config!.Dim;
        var bare = Encoded(new StepResult(1, "0123456789abcdef0123456789abcdef.1", 5, TensorData.FromFloats([1, 1, dim], new float[dim])));
        var signed = Encoded(new StepResult(1, "0123456789abcdef0123456789abcdef.1", 5, TensorData.FromFloats([1, 1, dim], new float[dim]),
            new StepCommitment(0, 200, 1, new byte[32], new byte[32], new byte[64])));
        var line = new
        {
            model,
            sessions,
            positions = length,
            computeMs = compute.ToDictionary(p => p.Key.ToString(), p => Math.Round(p.Value, 1)),
            extraComputeSample = compute[VerifyMode.Sample] / compute[VerifyMode.Off] - 1,
            extraComputeStrict = compute[VerifyMode.Strict] / compute[VerifyMode.Off] - 1,
            replayedPerPosition = replayed.ToDictionary(p => p.Key.ToString(), p => (double)p.Value / (sessions * length)),
            replayCostPerPosition,
            expectedSampleReplaysPerPosition = expectedSampleReplays,
            modelledExtraComputeSample = replayCostPerPosition * expectedSampleReplays,
            commitmentBytesPerTokenPerHop = signed - bare,
            stepResultBytes = bare,
        };
        output.WriteLine(JsonSerializer.Serialize(line));
        if (FiguresDirectory is { } directory) await File.WriteAllTextAsync(Path.Combine(directory, $"cost-{model}.json"), JsonSerializer.Serialize(line));
        Assert.True(signed - bare <= 1024, $"a commitment costs {signed - bare} bytes a token a hop");
        Assert.Equal(0, replayed[VerifyMode.Off]);
    }

    private static long Encoded(StageMessage message)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        return StageCodec.Write(buffer, message);
    }

    /// <summary>A synthetic model of width 1024 (2 blocks, per-block stages): the cost of hashing and replaying wide activations.</summary>
    private static readonly Lazy<string> SyntheticDim1024 = new(() =>
    {
        var whole = TestModels.NewTempDirectory("synthetic-1024");
        ModelStore.Synthesize(new ModelConfig(1024, 2048, 2, 16, 16, 512, 256, 1e-5f, 10000f), 3, whole);
        var split = TestModels.NewTempDirectory("synthetic-1024-split");
        ModelStore.Split(Path.Combine(whole, ModelStore.ModelFile), n => BlockRange.SplitEvenly(n, n), split);
        return split;
    });

    /// <summary>Small multiples: one panel per fault kind, detection probability against position, one line per check rate.</summary>
    private static string Plot(List<(string Fault, double[][] Curves)> panels)
    {
        const int W = 300, H = 200, Pad = 40;
        string[] colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];
        var svg = new StringBuilder();
        var columns = 3;
        var rows = (panels.Count + columns - 1) / columns;
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{columns * (W + Pad)}\" height=\"{rows * (H + 2 * Pad) + 30}\" font-family=\"sans-serif\" font-size=\"11\">\n");
        for (var r = 0; r < Rates.Length; r++)
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{10 + r * 150}\" y=\"16\" fill=\"{colours[r]}\">check rate {Rates[r]}{(Rates[r] == 0.1 ? " (default)" : Rates[r] == 1 ? " (strict)" : "")}</text>\n");
        for (var i = 0; i < panels.Count; i++)
        {
            var (x0, y0) = (i % columns * (W + Pad) + Pad, i / columns * (H + 2 * Pad) + 30 + Pad);
            svg.Append(CultureInfo.InvariantCulture, $"<g transform=\"translate({x0},{y0})\"><rect width=\"{W}\" height=\"{H}\" fill=\"none\" stroke=\"#999\"/>");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"0\" y=\"-6\">{panels[i].Fault}</text><text x=\"{W / 2 - 30}\" y=\"{H + 28}\">position (tokens)</text>");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"-30\" y=\"4\">1</text><text x=\"-30\" y=\"{H}\">0</text><text x=\"0\" y=\"{H + 14}\">0</text><text x=\"{W - 20}\" y=\"{H + 14}\">{Length}</text>");
            for (var r = 0; r < panels[i].Curves.Length; r++)
            {
                var points = panels[i].Curves[r].Select((p, t) => $"{(t + 1) * (double)W / Length:F1},{H - p * H:F1}");
                svg.Append(CultureInfo.InvariantCulture, $"<polyline fill=\"none\" stroke=\"{colours[r]}\" stroke-width=\"1.5\" points=\"{string.Join(' ', points)}\"/>");
            }
            svg.Append("</g>\n");
        }
        return svg.Append("</svg>\n").ToString();
    }
}
