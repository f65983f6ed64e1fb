using Google.Protobuf;
using InferenceMesh.Compute.Ilgpu;
using InferenceMesh.Core;
using InferenceMesh.Onnx.Import;
using InferenceMesh.Onnx.Split;
using Onnx;
using Xunit.Abstractions;

namespace InferenceMesh.Compute.Tests.Ilgpu;

/// <summary>The recognizer finds the blocks and weights from structure alone, and refuses graphs that depart from the pattern.</summary>
[Collection(IlgpuCollection.Name)]
public sealed class LlamaGraphRecognizerTests(IlgpuBackends backends, ITestOutputHelper output)
{
    private static SplitStage BlockStage(int start, int end, out LlamaWeights weights)
    {
        var model = IlgpuStageExecutorTests.SyntheticModel(out weights);
        var ranges = new List<BlockRange>();
        if (start > 0) ranges.Add(new BlockRange(0, start));
        ranges.Add(new BlockRange(start, end));
        if (end < IlgpuStageExecutorTests.SyntheticConfig.Layers) ranges.Add(new BlockRange(end, IlgpuStageExecutorTests.SyntheticConfig.Layers));
        return GraphSplitter.Split(model, ranges).Single(s => s.Descriptor.Blocks == new BlockRange(start, end));
    }

    private static LlamaStagePlan Recognize(SplitStage stage) =>
        LlamaGraphRecognizer.Recognize(stage.Model, stage.Descriptor.ActivationInput, stage.Descriptor.ActivationOutput);

    [Fact]
    public void RecognizesDimensionsAndReadsEveryWeightOfEachBlock()
    {
        var stage = BlockStage(1, 3, out var weights);
        var plan = Recognize(stage);
        var c = IlgpuStageExecutorTests.SyntheticConfig;
        Assert.Equal((c.Dim, c.Heads, c.KvHeads, c.HeadSize, c.HiddenDim), (plan.Dim, plan.Heads, plan.KvHeads, plan.HeadSize, plan.HiddenDim));
        Assert.Equal(2, plan.Blocks.Count);
        for (var i = 0; i < 2; i++)
        {
            var w = weights.Blocks[1 + i];
            var b = plan.Blocks[i];
            Assert.Equal(w.AttentionNorm, b.AttentionNorm);
            Assert.Equal(w.FfnNorm, b.FfnNorm);
            Assert.Equal(Transpose(w.Wq, c.Dim, c.Dim), b.Wq);
            Assert.Equal(Transpose(w.Wk, c.KvDim, c.Dim), b.Wk);
            Assert.Equal(Transpose(w.Wv, c.KvDim, c.Dim), b.Wv);
            Assert.Equal(Transpose(w.Wo, c.Dim, c.Dim), b.Wo);
            Assert.Equal(Transpose(w.W1, c.HiddenDim, c.Dim), b.W1);
            Assert.Equal(Transpose(w.W2, c.Dim, c.HiddenDim), b.W2);
            Assert.Equal(Transpose(w.W3, c.HiddenDim, c.Dim), b.W3);
            Assert.Equal(c.NormEpsilon, b.AttentionEpsilon);
            Assert.Equal(c.NormEpsilon, b.FfnEpsilon);
            Assert.Equal(MathF.Sqrt(c.HeadSize), b.ScoreDivisor);
        }
        for (var j = 0; j < c.HeadSize / 2; j++)
            Assert.Equal(1f / MathF.Pow(10000f, 2 * j / (float)c.HeadSize), plan.InverseFrequencies[j]);
    }

    [SkippableTheory]
    [MemberData(nameof(IlgpuBackends.All), MemberType = typeof(IlgpuBackends))]
    public void RenamedAndShuffledGraphIsRecognisedAndGivesTheSameActivations(IlgpuBackend backend)
    {
        var device = backends.Get(backend, output);
        var stage = BlockStage(1, 3, out _);
        var scrambled = Scramble(stage, seed: 11);
        Assert.NotEqual(stage.Descriptor.ActivationInput, scrambled.Descriptor.ActivationInput);
        using var original = new IlgpuStageExecutor(stage.Descriptor, stage.Model.ToByteArray(), device: device);
        using var renamed = new IlgpuStageExecutor(scrambled.Descriptor, scrambled.Model.ToByteArray(), device: device);
        var random = new Random(3);
        var position = 0;
        foreach (var steps in new[] { 4, 1, 1 })
        {
            var x = TensorData.FromFloats([1, steps, 32], ReferenceLlama.Random(random, steps * 32));
            var a = original.Run("s", x, position).AsFloats().ToArray();
            var b = renamed.Run("s", x, position).AsFloats().ToArray();
            Assert.Equal(a, b);
            position += steps;
        }
    }

    public static TheoryData<string> Mutations => new() { "rope sign", "tanh for sigmoid", "softmax axis", "residual sub", "repeat kv by tile", "rotate half" };

    [Theory]
    [MemberData(nameof(Mutations))]
    public void GraphThatDepartsFromThePatternIsRefusedWithAClearMessage(string mutation)
    {
        var stage = BlockStage(0, 2, out _);
        var graph = stage.Model.Graph;
        switch (mutation)
        {
            case "rope sign":
                // The rotation's Sub takes two products (the mask's Subs take lengths and indices).
                var sub = graph.Node.First(n => n.OpType == "Sub" && n.Input.All(i => graph.Node.Any(m => m.OpType == "Mul" && m.Output.Contains(i))));
                (sub.Input[0], sub.Input[1]) = (sub.Input[1], sub.Input[0]);
                break;
            case "tanh for sigmoid":
                graph.Node.First(n => n.OpType == "Sigmoid").OpType = "Tanh";
                break;
            case "softmax axis":
                graph.Node.First(n => n.OpType == "Softmax").Attribute.Single(a => a.Name == "axis").I = 2;
                break;
            case "residual sub":
                var residual = graph.Node.First(n => n.OpType == "Add" && n.Input.Contains(stage.Descriptor.ActivationInput));
                residual.OpType = "Sub";
                break;
            case "repeat kv by tile":
                graph.Node.First(n => n.OpType == "Expand").OpType = "Tile";
                break;
            case "rotate half":
                // Pairs (j, j + headSize/2) instead of adjacent pairs: reshape to [.., 2, headSize/2] and split on axis 3.
                var pairs = graph.Node.First(n => n.OpType == "Reshape" && graph.Initializer.Any(t => t.Name == n.Input[1] && t.Dims[0] == 5));
                var shape = graph.Initializer.Single(t => t.Name == pairs.Input[1]);
                shape.RawData = ByteString.CopyFrom(new long[] { 0, 0, 0, 2, 4 }.SelectMany(BitConverter.GetBytes).ToArray());
                break;
        }
        var e = Assert.Throws<MeshException>(() => new IlgpuStageExecutor(stage.Descriptor, stage.Model.ToByteArray(), device: null));
        output.WriteLine(e.Message);
        Assert.Equal(MeshErrorCode.InvalidOnnx, e.Code);
        Assert.Contains("ONNX Runtime", e.Message);
    }

    [SkippableTheory]
    [MemberData(nameof(IlgpuBackends.All), MemberType = typeof(IlgpuBackends))]
    public void ADifferentAttentionScaleIsReadFromTheGraph(IlgpuBackend backend)
    {
        var device = backends.Get(backend, output);
        var stage = BlockStage(0, 1, out _);
        var div = stage.Model.Graph.Node.First(n => n.OpType == "Div");
        stage.Model.Graph.Initializer.Single(t => t.Name == div.Input[1]).RawData = ByteString.CopyFrom(BitConverter.GetBytes(3f));
        using var executor = new IlgpuStageExecutor(stage.Descriptor, stage.Model.ToByteArray(), device: device);
        Assert.Equal(3f, executor.Plan.Blocks[0].ScoreDivisor);
        using var ort = new OrtStageExecutor(stage.Descriptor, stage.Model.ToByteArray());
        var x = TensorData.FromFloats([1, 5, 32], ReferenceLlama.Random(new Random(9), 5 * 32));
        Assert.True(ReferenceLlama.MaxAbsDiff(ort.Run("s", x, 0).AsFloats(), executor.Run("s", x, 0).AsFloats()) <= 1e-4f);
    }

    [Fact]
    public void HeadAndTailStagesAreRefused()
    {
        var model = IlgpuStageExecutorTests.SyntheticModel(out _);
        var stages = GraphSplitter.Split(model, [new BlockRange(0, 4)]);
        foreach (var stage in new[] { stages[0], stages[^1] })
        {
            var e = Assert.Throws<MeshException>(() => new IlgpuStageExecutor(stage.Descriptor, stage.Model.ToByteArray()));
            Assert.Equal(MeshErrorCode.InvalidOnnx, e.Code);
            output.WriteLine(e.Message);
        }
        // The recognizer itself also refuses a head graph given as if it were blocks.
        var head = stages[0];
        var refused = Assert.Throws<MeshException>(() => LlamaGraphRecognizer.Recognize(head.Model, head.Descriptor.ActivationInput, head.Descriptor.ActivationOutput));
        Assert.Equal(MeshErrorCode.InvalidOnnx, refused.Code);
        output.WriteLine(refused.Message);
    }

    /// <summary>Renames every tensor and node (keeping the context inputs' names) and shuffles the node order.</summary>
    internal static SplitStage Scramble(SplitStage stage, int seed)
    {
        var random = new Random(seed);
        var model = stage.Model.Clone();
        var graph = model.Graph;
        var keep = stage.Descriptor.ContextInputs.ToHashSet();
        var names = graph.Node.SelectMany(n => n.Input.Concat(n.Output)).Concat(graph.Initializer.Select(t => t.Name))
            .Concat(graph.Input.Select(i => i.Name)).Concat(graph.Output.Select(o => o.Name))
            .Where(n => n.Length > 0 && !keep.Contains(n)).Distinct().OrderBy(_ => random.Next()).ToList();
        var map = names.Select((n, i) => (n, $"t{i}")).ToDictionary(p => p.n, p => p.Item2);
        string Map(string n) => map.GetValueOrDefault(n, n);
        foreach (var node in graph.Node)
        {
            for (var i = 0; i < node.Input.Count; i++) node.Input[i] = Map(node.Input[i]);
            for (var i = 0; i < node.Output.Count; i++) node.Output[i] = Map(node.Output[i]);
            node.Name = $"n{random.Next()}";
        }
        foreach (var t in graph.Initializer) t.Name = Map(t.Name);
        foreach (var v in graph.Input) v.Name = Map(v.Name);
        foreach (var v in graph.Output) v.Name = Map(v.Name);
        foreach (var v in graph.ValueInfo) v.Name = Map(v.Name);
        var nodes = graph.Node.OrderBy(_ => random.Next()).ToList();
        graph.Node.Clear();
        graph.Node.AddRange(nodes);
        var d = stage.Descriptor;
        var descriptor = d with
        {
            ActivationInput = Map(d.ActivationInput),
            ActivationOutput = Map(d.ActivationOutput),
            Inputs = d.Inputs.Select(i => i with { Name = Map(i.Name) }).ToList(),
            Outputs = d.Outputs.Select(o => o with { Name = Map(o.Name) }).ToList(),
            State = d.State.Select(s => new StateBinding(Map(s.Past), Map(s.Present))).ToList(),
        };
        return new SplitStage(descriptor, model);
    }

    /// <summary>Row-major [rows, cols] → [cols, rows].</summary>
    private static float[] Transpose(float[] matrix, int rows, int cols)
    {
        var result = new float[matrix.Length];
        for (var r = 0; r < rows; r++)
            for (var col = 0; col < cols; col++)
                result[col * rows + r] = matrix[r * cols + col];
        return result;
    }
}
