using InferenceMesh.Core;
using InferenceMesh.Onnx.Import;
using InferenceMesh.Onnx.Split;
using InferenceMesh.Tests.Shared;
using Onnx;

namespace InferenceMesh.Onnx.Tests;

public sealed class SplitTests
{
    private static ModelProto Stories => OnnxModelFile.Load(Path.Combine(TestModels.Stories260K, ModelStore.ModelFile));

    [Fact]
    public void FindsTheBlocksFromTheGraph()
    {
        var analysis = new GraphAnalysis(Stories);
        Assert.Equal("input_ids", analysis.TokenInput);
        Assert.Equal("logits", analysis.FinalOutput);
        Assert.Equal(5, analysis.BlockCount);
        Assert.Equal("inputs_embeds", analysis.BlockBoundaries[0]);
        Assert.Equal("layers.4.ffn_residual", analysis.BlockBoundaries[^1]);
    }

    [Fact]
    public void FindsTheSameCutsAfterRenamingAndShuffling()
    {
        var original = new GraphAnalysis(Stories);
        var mutated = new GraphAnalysis(GraphMutations.RenameAndShuffle(Stories, 11));
        Assert.Equal(original.BlockCount, mutated.BlockCount);
        Assert.Equal(original.Cuts.Count, mutated.Cuts.Count);
        Assert.DoesNotContain(mutated.BlockBoundaries, b => b.Contains("layers"));
    }

    [Fact]
    public void OnlyTheResidualStreamCrossesACut()
    {
        var stages = GraphSplitter.Split(Stories, BlockRange.SplitEvenly(5, 2));
        Assert.Equal([StageKind.Head, StageKind.Blocks, StageKind.Blocks, StageKind.Tail], stages.Select(s => s.Descriptor.Kind));
        var second = stages[2].Descriptor;
        Assert.Equal(new BlockRange(3, 5), second.Blocks);
        Assert.Equal(["attention_mask", "position_ids"], second.ContextInputs.Order());
        Assert.Equal(4, second.State.Count);
        Assert.Equal("past_key_values.3.key", second.State[0].Past);
        Assert.Equal("present.3.key", second.State[0].Present);
        // Side tensors are recomputed inside the stage, from its own context inputs.
        var graph = stages[2].Model.Graph;
        Assert.Contains(graph.Node, n => n.OpType == "Cos");
        Assert.Contains(graph.Node, n => n.OpType == "Range");
        Assert.Equal(1 + 2 + 4, graph.Input.Count);
        Assert.Equal(1 + 4, graph.Output.Count);
    }

    [Fact]
    public void HeadAndTailHoldNoBlocks()
    {
        var stages = GraphSplitter.Split(Stories, [new BlockRange(0, 5)]);
        Assert.DoesNotContain(stages[0].Model.Graph.Node, n => n.OpType == "MatMul");
        Assert.Single(stages[0].Model.Graph.Input);
        Assert.Equal(["layers.4.ffn_residual"], stages[^1].Model.Graph.Input.Select(i => i.Name));
        Assert.Equal(["logits"], stages[^1].Model.Graph.Output.Select(i => i.Name));
    }

    [Fact]
    public void SplitsSyntheticModels()
    {
        var model = OnnxModelFile.Load(Path.Combine(TestModels.SmallSynthetic, ModelStore.ModelFile));
        var stages = GraphSplitter.Split(model, BlockRange.SplitEvenly(4, 4));
        Assert.Equal(6, stages.Count);
    }

    [Fact]
    public void SplitDirectoryHasAManifestWithEveryFileHash()
    {
        var output = TestModels.NewTempDirectory("split");
        var manifest = ModelStore.Split(Path.Combine(TestModels.Stories260K, ModelStore.ModelFile), n => BlockRange.SplitEvenly(n, 3), output);
        var loaded = Manifest.Load(output);
        Assert.Equal(manifest.ModelId, loaded.ModelId);
        Assert.Equal(5, loaded.Stages.Count);
        Assert.All(loaded.Stages, s => Assert.Equal(Manifest.Sha256Hex(Path.Combine(output, s.File)), s.Sha256));
        Assert.True(File.Exists(Path.Combine(output, ModelStore.TokenizerFile)));
    }

    [Fact]
    public void GraphWithoutKvCacheHasNoBlocksToCut()
    {
        var g = new OnnxGraphBuilder("mlp");
        g.Input("x", DType.Float32, "n", "4");
        var w = g.Floats("w", new float[16], 4, 4);
        var h = g.Node("MatMul", "h", ["x", w]);
        var r = g.Node("Add", "r", ["x", h]);
        g.NodeNamed("Relu", "y", [r]);
        g.Output("y", DType.Float32, "n", "4");
        var error = Assert.Throws<MeshException>(() => new GraphAnalysis(g.ToModel(17, "test")));
        Assert.Equal(MeshErrorCode.NoCutPoint, error.Code);
    }

    [Fact]
    public void SkipConnectionAcrossEveryBlockFusesThemIntoOne()
    {
        // Feed the embedding straight into the final norm's input: no tensor between two blocks carries
        // everything any more, so the five blocks can only travel together.
        var model = Stories.Clone();
        var graph = model.Graph;
        var last = graph.Node.Single(n => n.Output.Contains("layers.4.ffn_residual"));
        last.Output[0] = "layers.4.ffn_residual_inner";
        var skip = new NodeProto { OpType = "Add", Name = "long_skip" };
        skip.Input.AddRange(["layers.4.ffn_residual_inner", "inputs_embeds"]);
        skip.Output.Add("layers.4.ffn_residual");
        graph.Node.Add(skip);
        Assert.Equal(1, new GraphAnalysis(model).BlockCount);
        var error = Assert.Throws<MeshException>(() => GraphSplitter.Split(model, BlockRange.SplitEvenly(5, 2)));
        Assert.Contains("the model has 1 blocks", error.Message);
    }

    [Fact]
    public void RangesMustCoverTheModel()
    {
        var error = Assert.Throws<MeshException>(() => GraphSplitter.Split(Stories, [new BlockRange(0, 2), new BlockRange(2, 4)]));
        Assert.Equal(MeshErrorCode.InvalidArgument, error.Code);
    }
}
